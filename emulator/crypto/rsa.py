"""RSA: key generation, PKCS#1 v1.5 and OAEP encryption, PKCS#1 v1.5 and PSS signatures, raw RSA.

Every padded operation is `cryptography`'s. Two pieces are written here because no library offers
them, and each says so where it is: raw (unpadded) RSA for CKM_RSA_X_509, and prime generation for
public exponents other than 3 and 65537 (`cryptography` generates only those two).

Failures of the primitive (bad padding, signature mismatch) raise `CryptoFailure`; the caller checks
lengths first so it can name the PKCS#11 error.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from ..errors import CryptoFailure, InvalidKeyMaterial
from . import digest
from .material import PrivateMaterial, PublicMaterial


#: Concrete classes seen to be RSA private / public keys: `isinstance` against `cryptography`'s
#: ABCs costs ~0.5-1 us a time, and every operation asks it several times.
_PRIVATE_CLASSES: set[type] = set()
_PUBLIC_CLASSES: set[type] = set()


def _is_a(key: Any, abc: type, seen: set[type], other: set[type]) -> bool:
    cls = type(key)
    if cls in seen:
        return True
    if cls in other or not isinstance(key, abc):
        return False
    seen.add(cls)
    return True


def _is_private(key: Any) -> bool:
    return _is_a(key, rsa.RSAPrivateKey, _PRIVATE_CLASSES, _PUBLIC_CLASSES)


def _is_public(key: Any) -> bool:
    return _is_a(key, rsa.RSAPublicKey, _PUBLIC_CLASSES, _PRIVATE_CLASSES)


def public_key(material: PrivateMaterial | PublicMaterial) -> rsa.RSAPublicKey:
    key = material.key
    if _is_public(key):
        return key
    if _is_private(key):
        # Cached on the material: `public_key()` builds a new object (and an EVP_PKEY) per call.
        return material.public_key_object()
    raise InvalidKeyMaterial("not an RSA key")


def private_key(material: PrivateMaterial | PublicMaterial) -> rsa.RSAPrivateKey:
    if not _is_private(material.key):
        raise InvalidKeyMaterial("not an RSA private key")
    return material.key


def modulus_bits(material: PrivateMaterial | PublicMaterial) -> int:
    key = material.key
    if not (_is_public(key) or _is_private(key)):
        raise InvalidKeyMaterial("not an RSA key")
    return key.key_size  # both halves know it: no public key object is built for it


def modulus_len(material: PrivateMaterial | PublicMaterial) -> int:
    """k, the length in bytes of the modulus (RFC 8017 §2)."""
    return (modulus_bits(material) + 7) // 8


# --- key generation ----------------------------------------------------------------------------

def generate(bits: int, public_exponent: int) -> PrivateMaterial:
    if public_exponent < 3 or public_exponent % 2 == 0 or public_exponent.bit_length() > 256:
        raise InvalidKeyMaterial(f"public exponent {public_exponent} is not an odd number in 3..2^256")
    if public_exponent in (3, 65537):
        return PrivateMaterial(rsa.generate_private_key(public_exponent, bits))
    return PrivateMaterial(_generate_with_exponent(bits, public_exponent))


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p ** 0.5) + 1, 2))]


def _is_probable_prime(n: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random bases (FIPS 186-4 C.3.1)."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, e: int) -> int:
    while True:
        # Top two bits set so that p*q has exactly 2*bits bits (FIPS 186-4 B.3.3 step 4.4 bound).
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if any(candidate % p == 0 for p in _SMALL_PRIMES):
            continue
        if math.gcd(e, candidate - 1) != 1:
            continue
        if _is_probable_prime(candidate):
            return candidate


def _generate_with_exponent(bits: int, e: int) -> rsa.RSAPrivateKey:
    """Primes for an exponent `cryptography` will not generate with (hand-written, FIPS 186-4 B.3.3).

    The resulting numbers are handed to `cryptography`, which validates the key.
    """
    half = bits // 2
    while True:
        p = _random_prime(bits - half, e)
        q = _random_prime(half, e)
        if abs(p - q) <= 1 << (half - 100):
            continue
        n = p * q
        if n.bit_length() != bits:
            continue
        d = pow(e, -1, math.lcm(p - 1, q - 1))
        if d <= 1 << half:
            continue
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, n))
        return numbers.private_key()


# --- PKCS#1 v1.5 and OAEP encryption ------------------------------------------------------------

#: OAEP padding objects by (hash, MGF1 hash, label): immutable, and building one per call (two hash
#: objects, an MGF1, the OAEP checks) costs as much as a fifth of an RSA-2048 public operation.
_OAEP_CACHE: dict[tuple[str, str, bytes], padding.OAEP] = {}
_OAEP_CACHE_MAX = 64  # labels are caller data: bound the cache


def _oaep(hash_name: str, mgf_hash_name: str, label: bytes) -> padding.OAEP:
    cache_key = (hash_name, mgf_hash_name, bytes(label or b""))
    made = _OAEP_CACHE.get(cache_key)
    if made is None:
        made = padding.OAEP(mgf=padding.MGF1(digest.algorithm(mgf_hash_name)),
                            algorithm=digest.algorithm(hash_name), label=label or None)
        if len(_OAEP_CACHE) >= _OAEP_CACHE_MAX:
            _OAEP_CACHE.clear()
        _OAEP_CACHE[cache_key] = made
    return made


def _plain(data: bytes | bytearray) -> bytes:
    # RSA encryption takes only `bytes`: a secret key's SecretBuffer (a wrapped key's value) gets
    # an immutable copy here, one THREAT_MODEL.md lists as not wiped.
    return data if type(data) is bytes else bytes(data)


def pkcs1v15_encrypt(material: Any, data: bytes) -> bytes:
    return public_key(material).encrypt(_plain(data), padding.PKCS1v15())


def pkcs1v15_decrypt(material: PrivateMaterial, data: bytes) -> bytes:
    """PKCS#1 v1.5 decryption with implicit rejection: `cryptography`'s OpenSSL answers a malformed
    block with a synthetic message derived from the key and the ciphertext (deterministic), in the
    same time as a valid one, instead of an error (the Marvin/Bleichenbacher countermeasure,
    draft-irtf-cfrg-rsa-guidance). No padding check is made here: a second code path for bad
    padding would be the timing oracle. ValueError remains for what is not a padding question."""
    try:
        return private_key(material).decrypt(data, padding.PKCS1v15())
    except ValueError:
        raise CryptoFailure("PKCS#1 v1.5 decryption failed") from None


def oaep_supported(hash_name: str, mgf_hash_name: str) -> bool:
    """Whether `cryptography` (its OpenSSL) does OAEP with this hash and MGF1 hash: it does SHA-1 and
    SHA-2 (224..512) for both, and refuses SHA-3 and SHA-512/t at the first encryption."""
    known = _OAEP_SUPPORTED.get((hash_name, mgf_hash_name))
    if known is None:
        # Imported here: only an OAEP parameter needs it (~10 ms of start-up otherwise).
        from cryptography.hazmat.backends.openssl.backend import backend as _backend

        try:
            known = bool(_backend.rsa_padding_supported(_oaep(hash_name, mgf_hash_name, b"")))
        except (UnsupportedAlgorithm, ValueError):
            known = False
        _OAEP_SUPPORTED[(hash_name, mgf_hash_name)] = known  # a handful of names: no bound needed
    return known


_OAEP_SUPPORTED: dict[tuple[str, str], bool] = {}


def oaep_encrypt(material: Any, data: bytes, hash_name: str, mgf_hash_name: str, label: bytes) -> bytes:
    return public_key(material).encrypt(_plain(data), _oaep(hash_name, mgf_hash_name, label))


def oaep_encryptor(material: Any, hash_name: str, mgf_hash_name: str, label: bytes) -> Callable[[bytes], bytes]:
    """`oaep_encrypt` with the key and padding resolved once, for a caller that encrypts many times
    under one key (the RSA-AES wrap hot path); takes `bytes` only."""
    key, oaep = public_key(material), _oaep(hash_name, mgf_hash_name, label)
    return lambda data: key.encrypt(data, oaep)


def oaep_decrypt(material: PrivateMaterial, data: bytes, hash_name: str, mgf_hash_name: str,
                 label: bytes) -> bytes:
    try:
        return private_key(material).decrypt(data, _oaep(hash_name, mgf_hash_name, label))
    except ValueError:
        raise CryptoFailure("OAEP decryption failed") from None


def oaep_max_input(material: Any, hash_name: str) -> int:
    """k - 2hLen - 2 (RFC 8017 §7.1.1)."""
    return modulus_len(material) - 2 * digest.digest_size(hash_name) - 2


# --- signatures ---------------------------------------------------------------------------------

def pkcs1v15_sign_raw(material: PrivateMaterial, data: bytes) -> bytes:
    """EMSA-PKCS1-v1_5 over caller-supplied bytes (usually a DigestInfo): CKM_RSA_PKCS signing."""
    return private_key(material).sign(data, padding.PKCS1v15(), utils.NoDigestInfo())


def pkcs1v15_verify_raw(material: Any, signature: bytes, data: bytes) -> None:
    try:
        public_key(material).verify(signature, data, padding.PKCS1v15(), utils.NoDigestInfo())
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


def pkcs1v15_recover(material: Any, signature: bytes) -> bytes:
    """The data under a PKCS#1 v1.5 signature (C_VerifyRecover with CKM_RSA_PKCS)."""
    try:
        return public_key(material).recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


def pkcs1v15_sign_digest(material: PrivateMaterial, hash_name: str, hashed: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 over a digest; `cryptography` builds the DigestInfo."""
    return private_key(material).sign(hashed, padding.PKCS1v15(), utils.Prehashed(digest.algorithm(hash_name)))


def pkcs1v15_verify_digest(material: Any, hash_name: str, hashed: bytes, signature: bytes) -> None:
    try:
        public_key(material).verify(signature, hashed, padding.PKCS1v15(),
                                    utils.Prehashed(digest.algorithm(hash_name)))
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


def pss_max_salt(material: Any, hash_name: str) -> int:
    """emLen - hLen - 2 with emLen = ceil((modBits - 1) / 8) (RFC 8017 §9.1.1)."""
    em_len = (modulus_bits(material) - 1 + 7) // 8
    return em_len - digest.digest_size(hash_name) - 2


def _pss(mgf_hash_name: str, salt_len: int) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(digest.algorithm(mgf_hash_name)), salt_length=salt_len)


def pss_sign_digest(material: PrivateMaterial, hash_name: str, mgf_hash_name: str, salt_len: int,
                    hashed: bytes) -> bytes:
    return private_key(material).sign(hashed, _pss(mgf_hash_name, salt_len),
                                      utils.Prehashed(digest.algorithm(hash_name)))


def pss_verify_digest(material: Any, hash_name: str, mgf_hash_name: str, salt_len: int, hashed: bytes,
                      signature: bytes) -> None:
    try:
        public_key(material).verify(signature, hashed, _pss(mgf_hash_name, salt_len),
                                    utils.Prehashed(digest.algorithm(hash_name)))
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


# --- raw RSA (CKM_RSA_X_509) --------------------------------------------------------------------

def raw_public(material: Any, data: bytes) -> bytes:
    """m^e mod n, output k bytes (hand-written: `cryptography` has no unpadded RSA)."""
    numbers = public_key(material).public_numbers()
    value = int.from_bytes(data, "big")
    if value >= numbers.n:
        raise CryptoFailure("input is not smaller than the modulus")
    return pow(value, numbers.e, numbers.n).to_bytes(modulus_len(material), "big")


def raw_private(material: PrivateMaterial, data: bytes) -> bytes:
    """c^d mod n with CRT and base blinding, output k bytes (hand-written: `cryptography` has no
    unpadded RSA). Python integers are not constant-time; the blinding keeps the timing independent
    of the input."""
    numbers = private_key(material).private_numbers()
    pub = numbers.public_numbers
    n = pub.n
    value = int.from_bytes(data, "big")
    if value >= n:
        raise CryptoFailure("input is not smaller than the modulus")
    while True:
        r = secrets.randbelow(n - 2) + 2
        if math.gcd(r, n) == 1:
            break
    blinded = (value * pow(r, pub.e, n)) % n
    m1 = pow(blinded, numbers.dmp1, numbers.p)
    m2 = pow(blinded, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (m1 - m2)) % numbers.p
    result = (m2 + h * numbers.q) * pow(r, -1, n) % n
    return result.to_bytes(modulus_len(material), "big")
