"""Key derivation functions: the ANSI X9.63 KDF used by ECDH (CKD_SHA*_KDF), derivation by
encrypting data under a base key (CKM_AES_ECB_ENCRYPT_DATA / CKM_AES_CBC_ENCRYPT_DATA), HKDF,
SP 800-108 counter mode and PBKDF2."""

from __future__ import annotations

from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
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


# --- HKDF (RFC 5869), SP 800-108 counter mode, PBKDF2 (RFC 8018) ------------------------------

def hkdf_extract(hash_name: str, salt: bytes | None, ikm: bytes) -> bytes:
    """RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); a missing salt is HashLen zero bytes."""
    algorithm = digest.algorithm(hash_name)
    ctx = hmac.HMAC(salt if salt else bytes(algorithm.digest_size), algorithm)
    ctx.update(ikm)
    return ctx.finalize()


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(digest.algorithm(hash_name), length, info or None).derive(prk)


def sp800_108_counter(prf: object, length: int, build_input: object) -> bytes:
    """SP 800-108 §4.1 KDF in counter mode: K(i) = PRF(K_I, input(i)) for i = 1, 2, ... until
    `length` bytes. `prf(data) -> bytes` is keyed already; `build_input(i) -> bytes` lays out the
    PKCS#11 data parameters (counter, DKM length, byte arrays in the caller's order). Assembled here
    because `cryptography`'s KBKDF fixes the layout that PKCS#11 lets the caller choose."""
    out = bytearray()
    i = 1
    while len(out) < length:
        out += prf(build_input(i))  # type: ignore[operator]
        i += 1
    return bytes(out[:length])


def pbkdf2(hash_name: str, password: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    return PBKDF2HMAC(digest.algorithm(hash_name), length, salt, iterations).derive(password)
