"""Single DES (FIPS 46-3) in ECB and CBC, for the legacy mechanisms nShield offers behind its weak-
algorithm assurances (CKM_DES_KEY_GEN, CKM_DES_ECB/CBC/CBC_PAD).

`cryptography` has no DES class: its `hazmat.decrepit` TripleDES (three-key EDE) with k1 = k2 = k3 is
single DES, since E_k(D_k(E_k(x))) = E_k(x). The 8-byte key is repeated to 24 bytes rather than
passed alone (the 8-byte form is deprecated there and does the same repetition).
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import modes

from ..errors import InvalidKeyMaterial
from .aes import CipherContext, block_mode
from .des3 import with_odd_parity

BLOCK_SIZE = 8
KEY_SIZE = 8


def _ede(key: bytes) -> TripleDES:
    if len(key) != KEY_SIZE:
        raise InvalidKeyMaterial(f"DES key of {len(key)} bytes")
    return TripleDES(bytes(key) * 3)


def generate_key() -> bytes:
    return with_odd_parity(secrets.token_bytes(KEY_SIZE))


def ecb(key: bytes, encrypt: bool) -> CipherContext:
    return block_mode(_ede(key), BLOCK_SIZE, modes.ECB(), encrypt, pad=False)


def cbc(key: bytes, iv: bytes, encrypt: bool, pad: bool = False) -> CipherContext:
    return block_mode(_ede(key), BLOCK_SIZE, modes.CBC(iv), encrypt, pad)


def zero_block(key: bytes) -> bytes:
    """E_k(0^64): the key check value's source (PKCS#11 3.0 §4.10)."""
    ctx = ecb(key, True)
    return ctx.update(bytes(BLOCK_SIZE)) + ctx.finalize()
