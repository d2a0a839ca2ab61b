"""Triple-DES (three-key EDE) in ECB and CBC, over `cryptography.hazmat.decrepit` (its home since v43)."""

from __future__ import annotations

import secrets

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import modes

from ..errors import InvalidKeyMaterial
from .aes import CipherContext, block_mode

BLOCK_SIZE = 8
KEY_SIZE = 24


def check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise InvalidKeyMaterial(f"DES3 key of {len(key)} bytes")


def with_odd_parity(key: bytes) -> bytes:
    """Set each byte's low bit so the byte has odd parity (FIPS 46-3 §3).

    Written here because `cryptography` ignores DES parity bits and offers no helper; PKCS#11
    (§2.x "General block cipher key generation") requires generated DES keys to have them set.
    """
    return bytes((b & 0xFE) | ((bin(b >> 1).count("1") + 1) & 1) for b in key)


def generate_key() -> bytes:
    return with_odd_parity(secrets.token_bytes(KEY_SIZE))


def ecb(key: bytes, encrypt: bool) -> CipherContext:
    check_key(key)
    return block_mode(TripleDES(key), BLOCK_SIZE, modes.ECB(), encrypt, pad=False)


def cbc(key: bytes, iv: bytes, encrypt: bool, pad: bool = False) -> CipherContext:
    check_key(key)
    return block_mode(TripleDES(key), BLOCK_SIZE, modes.CBC(iv), encrypt, pad)
