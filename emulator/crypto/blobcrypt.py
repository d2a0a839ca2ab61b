"""The authenticated encryption behind every kmdata file: AES-256-GCM, HKDF sub-keys, MACs.

One root secret (the world key, or a token's logical key) never encrypts anything directly: each
use gets its own sub-key through HKDF with a label, so a key that seals blobs is never also the key
that MACs token files or hashes secret keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import BlobInvalid
from .material import SecretBuffer

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: Smallest sealed value: a nonce and a tag around an empty plaintext.
MIN_SEALED = NONCE_BYTES + TAG_BYTES


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


def derive_subkey(root: bytes, label: bytes, context: bytes = b"") -> bytes:
    """A 32-byte key for one purpose (`label`), optionally bound to `context` (a token hash...)."""
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=label + b"\x00" + context).derive(root)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || ciphertext || tag. A random 96-bit nonce per seal: keys here seal few messages."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes, *, what: str) -> bytes:
    """Inverse of `seal`; any edit of key, nonce, ciphertext, tag or AAD raises BlobInvalid."""
    if len(sealed) < MIN_SEALED:
        raise BlobInvalid(f"{what}: truncated ({len(sealed)} bytes of sealed data, need at least {MIN_SEALED})")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise BlobInvalid(f"{what}: authentication failed (edited, or sealed under another key)") from None


def unseal_buffer(key: bytes, sealed: bytes, aad: bytes, *, what: str) -> SecretBuffer:
    """`unseal` into a SecretBuffer the caller wipes (material.wipe) when done, zeroed anyway when
    dropped: the plaintext never exists as an immutable bytes object (AESGCM.decrypt_into)."""
    if len(sealed) < MIN_SEALED:
        raise BlobInvalid(f"{what}: truncated ({len(sealed)} bytes of sealed data, need at least {MIN_SEALED})")
    out = SecretBuffer(len(sealed) - MIN_SEALED)
    try:
        AESGCM(key).decrypt_into(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad, out)
    except InvalidTag:
        raise BlobInvalid(f"{what}: authentication failed (edited, or sealed under another key)") from None
    return out


def try_unseal_buffer(key: bytes, sealed: bytes, aad: bytes) -> SecretBuffer | None:
    """`try_unseal` into a SecretBuffer (card shares)."""
    if len(sealed) < MIN_SEALED:
        return None
    out = SecretBuffer(len(sealed) - MIN_SEALED)
    try:
        AESGCM(key).decrypt_into(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad, out)
    except InvalidTag:
        return None
    return out


def try_unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """`unseal` for PIN checks: a wrong PIN is an expected outcome, not a damaged file."""
    if len(sealed) < MIN_SEALED:
        return None
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        return None


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def mac_matches(key: bytes, data: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(mac(key, data), tag)


def keyed_hash40(key: bytes, data: bytes) -> str:
    """40 hex digits (SHA-1 size, as nShield's key hashes) of a keyed MAC: does not reveal `data`."""
    return hashlib.sha1(mac(key, data)).hexdigest()


def fingerprint(secret: bytes) -> str:
    """A public check value for a random 256-bit secret (tells a stale login from a current one)."""
    return hashlib.sha256(b"softshield fingerprint\x00" + secret).hexdigest()[:32]
