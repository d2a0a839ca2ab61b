"""Message digest mechanisms: SHA-1, SHA-2 (incl. SHA-512/224, SHA-512/256), SHA-3 (PKCS#11 3.0 §2.20+),
and CKM_MD5 for legacy applications (not a hash OAEP, PSS or the KDFs accept: `LEGACY_DIGESTS`)."""

from __future__ import annotations

from typing import Any

from ..constants import MechanismFlag
from .hashes import DIGEST_MECHANISMS, LEGACY_DIGESTS
from .ops import DigestOp
from .registry import MechanismSpec, Registry


def _factory(hash_name: str) -> Any:
    def digest(param: Any) -> DigestOp:
        return DigestOp(hash_name)

    return digest


def register(registry: Registry) -> None:
    for mechanism, hash_name in {**DIGEST_MECHANISMS, **LEGACY_DIGESTS}.items():
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=MechanismFlag.DIGEST,
            digest=_factory(hash_name)))
