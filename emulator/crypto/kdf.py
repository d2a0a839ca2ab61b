"""Key derivation functions: the ANSI X9.63 KDF used by ECDH (CKD_SHA*_KDF), and derivation by
encrypting data under a base key (CKM_AES_ECB_ENCRYPT_DATA / CKM_AES_CBC_ENCRYPT_DATA)."""

from __future__ import annotations

from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from . import aes, digest


def x963(hash_name: str, secret: bytes, length: int, shared_info: bytes) -> bytes:
    """ANSI X9.63 §3.6.1 (SEC 1 §3.6.1), as PKCS#11 3.0 §2.3.8 names for CKD_SHA*_KDF."""
    return X963KDF(digest.algorithm(hash_name), length, shared_info or None).derive(secret)


def aes_ecb_encrypt_data(key: bytes, data: bytes) -> bytes:
    """PKCS#11 3.0 §2.14.x: the derived value is the encryption of `data` (a multiple of 16 bytes)."""
    return aes.ecb_encrypt(key, data)


def aes_cbc_encrypt_data(key: bytes, iv: bytes, data: bytes) -> bytes:
    return aes.cbc_encrypt(key, iv, data)
