"""Message digests over `cryptography`'s hash objects.

Hash algorithms are named by the strings below everywhere outside this package, so that callers never
import `cryptography` themselves. `HashContext` keeps the running hash; `cryptography` hash objects can
be copied but not serialised, so a caller that must export an operation's state (C_GetOperationState)
keeps the input itself (see `pkcs11_shim.mechanisms.ops.DigestOp`).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

#: name -> hash class; the names are the ones the rest of softshield uses.
_ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "MD5": hashes.MD5,  # CKM_MD5 and HMAC-MD5 only (legacy applications); never an OAEP/PSS/KDF hash
    "SHA1": hashes.SHA1,
    "SHA224": hashes.SHA224,
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
    "SHA512_224": hashes.SHA512_224,
    "SHA512_256": hashes.SHA512_256,
    "SHA3_224": hashes.SHA3_224,
    "SHA3_256": hashes.SHA3_256,
    "SHA3_384": hashes.SHA3_384,
    "SHA3_512": hashes.SHA3_512,
}

HASH_NAMES = frozenset(_ALGORITHMS)


def algorithm(name: str) -> hashes.HashAlgorithm:
    """The `cryptography` algorithm object for a hash name (used by the other crypto modules)."""
    try:
        return _ALGORITHMS[name]()
    except KeyError:
        raise ValueError(f"unknown hash {name!r}") from None


#: name -> output size: a class attribute of every hash, read per RSA operation (OAEP/PSS limits).
_DIGEST_SIZES: dict[str, int] = {name: cls.digest_size for name, cls in _ALGORITHMS.items()}


def digest_size(name: str) -> int:
    size = _DIGEST_SIZES.get(name)
    return size if size is not None else algorithm(name).digest_size


class HashContext:
    """A running hash: update, finalize (once), copy."""

    __slots__ = ("name", "_ctx")

    def __init__(self, name: str, _ctx: hashes.Hash | None = None) -> None:
        self.name = name
        self._ctx = _ctx if _ctx is not None else hashes.Hash(algorithm(name))

    def update(self, data: bytes) -> None:
        self._ctx.update(data)

    def finalize(self) -> bytes:
        return self._ctx.finalize()

    def copy(self) -> "HashContext":
        return HashContext(self.name, self._ctx.copy())


def digest(name: str, data: bytes) -> bytes:
    ctx = HashContext(name)
    ctx.update(data)
    return ctx.finalize()
