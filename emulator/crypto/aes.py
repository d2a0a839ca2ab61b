"""AES in the modes PKCS#11 names (ECB, CBC, CBC with PKCS#7 padding, CTR, GCM), over `cryptography`.

Contexts stream: `update` returns what can be produced so far and `finalize` the rest. Length rules
(whole blocks, ciphertext sizes) are the caller's to check first, so that it can name the PKCS#11
error; a failed padding or tag check raises `CryptoFailure`. The block-mode helpers take the block
cipher as a parameter so that `des3` shares them.
"""

from __future__ import annotations

import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import CryptoFailure, InvalidKeyMaterial

BLOCK_SIZE = 16
KEY_SIZES = (16, 24, 32)
#: `cryptography`'s GCM accepts IVs of 8..128 bytes and tags of 4..16 bytes.
GCM_IV_RANGE = (8, 128)
GCM_TAG_RANGE = (4, 16)


def check_key(key: bytes) -> None:
    if len(key) not in KEY_SIZES:
        raise InvalidKeyMaterial(f"AES key of {len(key)} bytes")


def generate_key(length: int) -> bytes:
    if length not in KEY_SIZES:
        raise InvalidKeyMaterial(f"AES key of {length} bytes")
    return secrets.token_bytes(length)


class CipherContext:
    """A streaming cipher: `update(data) -> bytes`, `finalize() -> bytes`."""

    __slots__ = ("_steps",)

    def __init__(self, *steps: Any) -> None:
        # Each step has update/finalize; the output of one feeds the next (padder -> cipher,
        # cipher -> unpadder).
        self._steps = steps

    def update(self, data: bytes) -> bytes:
        for step in self._steps:
            data = step.update(data)
        return data

    def finalize(self) -> bytes:
        out = b""
        for step in self._steps:
            out = step.update(out) + step.finalize() if out else step.finalize()
        return out


class _Unpadder:
    """PKCS#7 removal that reports a bad pad as CryptoFailure."""

    __slots__ = ("_ctx",)

    def __init__(self, block_bits: int) -> None:
        self._ctx = padding.PKCS7(block_bits).unpadder()

    def update(self, data: bytes) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        try:
            return self._ctx.finalize()
        except ValueError:
            raise CryptoFailure("bad PKCS#7 padding") from None


def block_mode(algorithm: Any, block_size: int, mode: Any, encrypt: bool, pad: bool) -> CipherContext:
    """ECB/CBC over any block cipher, with optional PKCS#7 (RFC 5652 §6.3) padding."""
    cipher = Cipher(algorithm, mode)
    if encrypt:
        ctx = cipher.encryptor()
        return CipherContext(padding.PKCS7(block_size * 8).padder(), ctx) if pad else CipherContext(ctx)
    ctx = cipher.decryptor()
    return CipherContext(ctx, _Unpadder(block_size * 8)) if pad else CipherContext(ctx)


def ecb(key: bytes, encrypt: bool) -> CipherContext:
    check_key(key)
    return block_mode(algorithms.AES(key), BLOCK_SIZE, modes.ECB(), encrypt, pad=False)


def cbc(key: bytes, iv: bytes, encrypt: bool, pad: bool = False) -> CipherContext:
    check_key(key)
    return block_mode(algorithms.AES(key), BLOCK_SIZE, modes.CBC(iv), encrypt, pad)


def ctr(key: bytes, counter_block: bytes) -> CipherContext:
    """CTR with the whole 16-byte block as a big-endian counter (the caller bounds the count)."""
    check_key(key)
    return CipherContext(Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor())


#: ECB has no state of its own: one mode object serves every call.
_ECB = modes.ECB()


def ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """One-shot ECB (whole blocks, checked by the caller); every new secret key's CKA_CHECK_VALUE
    comes through here, so it skips the streaming wrapper."""
    check_key(key)
    ctx = Cipher(algorithms.AES(key), _ECB).encryptor()
    return ctx.update(data) + ctx.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes, pad: bool = False) -> bytes:
    ctx = cbc(key, iv, True, pad)
    return ctx.update(data) + ctx.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes, pad: bool = False) -> bytes:
    ctx = cbc(key, iv, False, pad)
    return ctx.update(data) + ctx.finalize()


class GcmEncryptor:
    """GCM encryption; `finalize` returns the tag truncated to `tag_len` bytes (SP 800-38D §5.2.1.2)."""

    __slots__ = ("_ctx", "_tag_len")

    def __init__(self, key: bytes, iv: bytes, aad: bytes, tag_len: int) -> None:
        check_key(key)
        self._ctx = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        if aad:
            self._ctx.authenticate_additional_data(aad)
        self._tag_len = tag_len

    def update(self, data: bytes) -> bytes:
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        return self._ctx.finalize() + self._ctx.tag[: self._tag_len]


def gcm_decrypt(key: bytes, iv: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    """Decrypt `ciphertext || tag`; the plaintext is released only after the tag verified."""
    check_key(key)
    if len(data) < tag_len:
        raise CryptoFailure("GCM input shorter than the tag")
    body, tag = data[: len(data) - tag_len], data[len(data) - tag_len:]
    ctx = Cipher(algorithms.AES(key), modes.GCM(iv, tag, min_tag_length=tag_len)).decryptor()
    if aad:
        ctx.authenticate_additional_data(aad)
    plain = ctx.update(body)
    try:
        return plain + ctx.finalize()
    except InvalidTag:
        raise CryptoFailure("GCM tag mismatch") from None


def gcm_encrypt(key: bytes, iv: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    ctx = GcmEncryptor(key, iv, aad, tag_len)
    return ctx.update(data) + ctx.finalize()

