"""PIN -> key-encryption key for a token's logical key.

scrypt makes each guess cost memory and ~30 ms; HKDF then mixes in a secret of the world, so a copy
of the token file alone cannot be attacked offline, and the world secret alone does not open it
without the PIN (nShield also combines card passphrases with a module key, nshield-workflow §1.3).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .material import SecretBuffer, wipe

#: n = 2**13, r = 8 (8 MiB): ~28 ms per derivation on the reference machine (2 cores).
SCRYPT_N = 2**13
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_pin_key(pin: bytes | bytearray, salt: bytes, world_secret: bytes, context: bytes) -> SecretBuffer:
    """The key that wraps a token's logical key for one role; `context` names token and role.
    `pin` may be any bytes-like (the C boundary passes a SecretBuffer); the
    scrypt output never leaves a bytearray wiped here, the result zeroes itself when dropped."""
    stretched = SecretBuffer(KEY_BYTES)
    out = SecretBuffer(KEY_BYTES)
    try:
        Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive_into(pin, stretched)
        HKDF(hashes.SHA256(), KEY_BYTES, salt=world_secret,
             info=b"softshield pin key v1\x00" + context).derive_into(stretched, out)
    finally:
        wipe(stretched)
    return out


@contextlib.contextmanager
def pin_key(pin: bytes | bytearray, salt: bytes, world_secret: bytes, context: bytes) -> Iterator[SecretBuffer]:
    """`derive_pin_key`, wiped when the block ends."""
    key = derive_pin_key(pin, salt, world_secret, context)
    try:
        yield key
    finally:
        wipe(key)
