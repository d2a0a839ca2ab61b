"""AES key wrap (RFC 3394 / SP 800-38F KW), with padding (RFC 5649 / KWP), and the RSA-AES composite.

KW and KWP are `cryptography`'s (in its Rust core since v44). They use the default initial values
only (A6A6A6A6A6A6A6A6 for KW, A65959A6 for KWP): `cryptography` takes no other IV, so callers refuse
a different one. The RSA-AES composite (PKCS#11 3.0 §2.1.21, CKM_RSA_AES_KEY_WRAP) is assembled here
from OAEP and KWP: the two-part layout and the split at the modulus length are written by hand,
because no library implements the PKCS#11 composite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cryptography.hazmat.primitives import keywrap, padding

from ..errors import CryptoFailure
from . import aes, rsa
from .randpool import random_bytes
from .material import PrivateMaterial, PublicMaterial

KW_DEFAULT_IV = bytes.fromhex("A6A6A6A6A6A6A6A6")
KWP_DEFAULT_IV = bytes.fromhex("A65959A6")
SEMIBLOCK = 8


def _unwrap(unwrap: Callable[[bytes, bytes], bytes], kek: bytes, wrapped: bytes, what: str) -> bytes:
    """One of `cryptography`'s unwraps, its integrity failure said as a CryptoFailure."""
    aes.check_key(kek)
    try:
        return unwrap(kek, wrapped)
    except keywrap.InvalidUnwrap:
        raise CryptoFailure(f"{what} integrity check failed") from None


def kw_wrap(kek: bytes, data: bytes) -> bytes:
    """RFC 3394; `data` must be a multiple of 8 bytes and at least 16 (the caller checks)."""
    aes.check_key(kek)
    return keywrap.aes_key_wrap(kek, data)


def kw_wrapper(kek: bytes) -> Callable[[bytes], bytes]:
    """`kw_wrap` under one key, its size checked once (a wrap's data calls repeat the key)."""
    aes.check_key(kek)
    return functools.partial(keywrap.aes_key_wrap, kek)


def kw_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    return _unwrap(keywrap.aes_key_unwrap, kek, wrapped, "AES key unwrap")


def kwp_wrap(kek: bytes, data: bytes) -> bytes:
    """RFC 5649; any non-empty `data`."""
    aes.check_key(kek)
    return keywrap.aes_key_wrap_with_padding(kek, data)


def kwp_wrapper(kek: bytes) -> Callable[[bytes], bytes]:
    """`kwp_wrap` under one key, its size checked once."""
    aes.check_key(kek)
    return functools.partial(keywrap.aes_key_wrap_with_padding, kek)


def kwp_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    return _unwrap(keywrap.aes_key_unwrap_with_padding, kek, wrapped, "AES key unwrap (with padding)")


def kw_pkcs7_wrap(kek: bytes, data: bytes) -> bytes:
    """CKM_AES_KEY_WRAP_PKCS7 (PKCS#11 3.0 §2.14.x): PKCS#7 padding (RFC 5652 §6.3) to the KW
    semiblock (8 bytes, as opencryptoki pads), then RFC 3394 KW. `data` must be >= 8 bytes."""
    padder = padding.PKCS7(SEMIBLOCK * 8).padder()
    return kw_wrap(kek, padder.update(data) + padder.finalize())


def kw_pkcs7_wrapper(kek: bytes) -> Callable[[bytes], bytes]:
    """`kw_pkcs7_wrap` under one key, its size checked once."""
    aes.check_key(kek)
    return functools.partial(kw_pkcs7_wrap, kek)


def kw_pkcs7_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    padded = kw_unwrap(kek, wrapped)
    unpadder = padding.PKCS7(SEMIBLOCK * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CryptoFailure("bad PKCS#7 padding inside the wrapped key") from None


def kwp_wrapped_len(data_len: int) -> int:
    """Length of the KWP output for `data_len` bytes (RFC 5649 §4.1)."""
    return SEMIBLOCK + -(-data_len // SEMIBLOCK) * SEMIBLOCK


def rsa_aes_wrap(rsa_public: PublicMaterial | PrivateMaterial, aes_key_bits: int, hash_name: str,
                 mgf_hash_name: str, label: bytes, target: bytes) -> bytes:
    """PKCS#11 3.0 §2.1.21: a fresh AES key, OAEP-encrypted under the RSA key, followed by the target
    wrapped with KWP under that AES key."""
    return rsa_aes_wrapper(rsa_public, aes_key_bits, hash_name, mgf_hash_name, label)(target)


def rsa_aes_wrapper(rsa_public: PublicMaterial | PrivateMaterial, aes_key_bits: int, hash_name: str,
                    mgf_hash_name: str, label: bytes) -> Callable[[bytes], bytes]:
    """`rsa_aes_wrap` under one RSA key and parameter, resolved once: each call makes its own
    temporary key. The temporary key never gets a handle; Python cannot promise to erase it, so
    the buffer is overwritten as soon as it is no longer needed. Its bytes come from the pool
    (`randpool`), not a system call per wrap that would hand the GIL to another thread."""
    encrypt = rsa.oaep_encryptor(rsa_public, hash_name, mgf_hash_name, label)
    size = aes_key_bits // 8
    aes.check_key(bytes(size))  # the AES key size, once: kwp_wrap's own check per call

    def wrap(target: bytes) -> bytes:
        temporary = bytearray(random_bytes(size))
        try:
            key = bytes(temporary)
            return encrypt(key) + keywrap.aes_key_wrap_with_padding(key, target)
        finally:
            temporary[:] = bytes(size)

    return wrap


def rsa_aes_unwrap(rsa_private: PrivateMaterial, hash_name: str, mgf_hash_name: str, label: bytes,
                   wrapped: bytes) -> bytes:
    """The inverse: split at the modulus length (the caller checks that both parts exist)."""
    k = rsa.modulus_len(rsa_private)
    temporary = bytearray(rsa.oaep_decrypt(rsa_private, wrapped[:k], hash_name, mgf_hash_name, label))
    try:
        if len(temporary) not in aes.KEY_SIZES:
            raise CryptoFailure("the RSA part does not hold an AES key")
        return kwp_unwrap(bytes(temporary), wrapped[k:])
    finally:
        temporary[:] = bytes(len(temporary))
