"""PIN -> key-encryption key for a token's logical key.

scrypt makes each guess cost memory and ~30 ms; HKDF then mixes in a secret of the world, so a copy
of the token file alone cannot be attacked offline, and the world secret alone does not open it
without the PIN (nShield also combines card passphrases with a module key, nshield-workflow §1.3).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

#: n = 2**13, r = 8 (8 MiB): ~28 ms per derivation on the reference machine (2 cores).
SCRYPT_N = 2**13
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_pin_key(pin: bytes, salt: bytes, world_secret: bytes, context: bytes) -> bytes:
    """The key that wraps a token's logical key for one role; `context` names token and role."""
    stretched = Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(pin)
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=world_secret,
                info=b"softshield pin key v1\x00" + context).derive(stretched)
