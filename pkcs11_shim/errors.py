"""Errors that carry their PKCS#11 return code.

Raise `PKCS11Error(CKR.X)` anywhere in the shim; `pkcs11_shim.abi.entry` turns it into the CK_RV in
exactly one place. Emulator errors are mapped onto return codes by the table in `abi.entry`; where the
same emulator error means another code in one context (a primitive's failure in C_Verify is
CKR_SIGNATURE_INVALID), that context declares a table of its own (`mechanisms.failures.BY_OPERATION`,
a registry row's `failure_codes`, `attributes.keyparts.COMPONENT_CODES`) and `translating` applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .constants import CKR

#: Exception class -> the return code it means in one context; the first class that matches wins.
FailureCodes = Mapping[type[Exception], int]


class PKCS11Error(Exception):
    """A PKCS#11 failure with the return value the specification names for it."""

    def __init__(self, rv: int, message: str = "") -> None:
        self.rv = CKR(rv) if rv in CKR._value2member_map_ else rv
        super().__init__(message or getattr(self.rv, "name", hex(rv)))


class BufferTooSmall(PKCS11Error):
    """CKR_BUFFER_TOO_SMALL, carrying the length the caller needs (§5.2)."""

    def __init__(self, needed: int) -> None:
        super().__init__(CKR.BUFFER_TOO_SMALL, f"buffer too small: {needed} bytes needed")
        self.needed = needed


def translating(fn: Callable[..., Any], codes: FailureCodes) -> Callable[..., Any]:
    """`fn`, raising PKCS11Error for the exceptions `codes` names (any other passes unchanged)."""
    if not codes:
        return fn
    caught = tuple(codes)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except caught as exc:
            code = next(code for cls, code in codes.items() if isinstance(exc, cls))
            raise PKCS11Error(code, str(exc)) from None

    call.__name__ = getattr(fn, "__name__", "call")
    call.__doc__ = fn.__doc__
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call
