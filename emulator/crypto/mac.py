"""Message authentication codes: HMAC (RFC 2104) and CMAC (SP 800-38B) over `cryptography`."""

from __future__ import annotations

import hmac as _stdlib_hmac
import secrets

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac, hmac
from cryptography.hazmat.primitives.ciphers import algorithms

from ..errors import InvalidKeyMaterial
from . import digest


class _StreamingMac:
    """A `cryptography` MAC context fed as the data comes: HMAC and CMAC alike."""

    __slots__ = ("_ctx",)

    def update(self, data: bytes) -> None:
        self._ctx.update(data)

    def finalize(self) -> bytes:
        return self._ctx.finalize()


class HmacContext(_StreamingMac):
    """HMAC with one of the hashes named in `digest`."""

    __slots__ = ("hash_name",)

    def __init__(self, hash_name: str, key: bytes, _ctx: hmac.HMAC | None = None) -> None:
        self.hash_name = hash_name
        self._ctx = _ctx if _ctx is not None else hmac.HMAC(key, digest.algorithm(hash_name))

    @property
    def size(self) -> int:
        return digest.digest_size(self.hash_name)

    def copy(self) -> HmacContext:
        return HmacContext(self.hash_name, b"", self._ctx.copy())


#: Block ciphers CMAC runs over: name -> (algorithm class, valid key lengths, block size).
_CMAC_CIPHERS = {
    "AES": (algorithms.AES, (16, 24, 32), 16),
    "DES3": (TripleDES, (24,), 8),
}


class CmacContext(_StreamingMac):
    """CMAC over AES (or 3DES)."""

    __slots__ = ("cipher",)

    def __init__(self, cipher: str, key: bytes, _ctx: cmac.CMAC | None = None) -> None:
        self.cipher = cipher
        if _ctx is None:
            algorithm, lengths, _ = _CMAC_CIPHERS[cipher]
            if len(key) not in lengths:
                raise InvalidKeyMaterial(f"{cipher} key of {len(key)} bytes")
            _ctx = cmac.CMAC(algorithm(key))
        self._ctx = _ctx

    @property
    def size(self) -> int:
        return _CMAC_CIPHERS[self.cipher][2]

    def copy(self) -> CmacContext:
        return CmacContext(self.cipher, b"", self._ctx.copy())


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two MACs."""
    return _stdlib_hmac.compare_digest(a, b)


def generate_secret(length: int) -> bytes:
    """Random bytes for a generic secret or HMAC key (the kernel's CSPRNG, as `cryptography` uses)."""
    return secrets.token_bytes(length)


class CbcMacContext:
    """AES CBC-MAC (CKM_AES_MAC): buffered, computed by `aesmodes.cbc_mac` at the end."""

    __slots__ = ("_data", "_key")

    def __init__(self, key: bytes) -> None:
        from .aes import check_key

        check_key(key)
        self._key = key
        self._data = bytearray()

    size = 16

    def update(self, data: bytes) -> None:
        self._data += data

    def finalize(self) -> bytes:
        from .aesmodes import cbc_mac

        return cbc_mac(self._key, bytes(self._data))


def hmac_sha256_of_parts(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over length-prefixed parts, so that ("ab", "c") and ("a", "bc") differ."""
    ctx = hmac.HMAC(key, digest.algorithm("SHA256"))
    for part in parts:
        ctx.update(len(part).to_bytes(8, "little") + part)
    return ctx.finalize()
