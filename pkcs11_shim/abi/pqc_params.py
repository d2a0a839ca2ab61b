"""C readers of the PKCS#11 3.2 signature parameters: CK_SIGN_ADDITIONAL_CONTEXT (optional, for
CKM_ML_DSA and CKM_HASH_ML_DSA_<hash>) and CK_HASH_SIGN_ADDITIONAL_CONTEXT (CKM_HASH_ML_DSA).
`mechanism_params` adds `READERS` to its own table; the checks are its checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..mechanisms.params import SignAdditionalContext
from . import mechanism_params as mp


def _sign_additional_context(ffi: Any, ptr: Any, length: int) -> SignAdditionalContext | None:
    """Absent (length 0) is hedge-preferred with an empty context (3.2 CKM_ML_DSA)."""
    if length == 0:
        return None
    s = mp._struct(ffi, "CK_SIGN_ADDITIONAL_CONTEXT", ptr, length)
    return SignAdditionalContext(int(s.hedgeVariant), mp._octets(ffi, s.pContext, s.ulContextLen, "context"))


def _hash_sign_additional_context(ffi: Any, ptr: Any, length: int) -> SignAdditionalContext:
    s = mp._struct(ffi, "CK_HASH_SIGN_ADDITIONAL_CONTEXT", ptr, length)
    return SignAdditionalContext(int(s.hedgeVariant), mp._octets(ffi, s.pContext, s.ulContextLen, "context"),
                                 int(s.hash))


READERS: dict[str, Callable[[Any, Any, int], object]] = {
    "sign_additional_context": _sign_additional_context,
    "hash_sign_additional_context": _hash_sign_additional_context,
}
