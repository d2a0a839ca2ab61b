"""ML-DSA (FIPS 204): key generation, pure and pre-hash (HashML-DSA) signatures.

`cryptography` offers ML-DSA-44/65/87 with private keys in seed form only (the 32-byte xi of
FIPS 204 Algorithm 1), hedged signing with a context, and `sign_mu`/`verify_mu` over the 64-byte
message representative. HashML-DSA (FIPS 204 Algorithm 4) is pure ML-DSA's mu computed over
M' = 1 || len(ctx) || ctx || OID(PH) || PH(M), so it is built here from the hash and SHAKE256 of
`cryptography`: no primitive of our own. Deterministic signing (rnd = 0) is not offered by
`cryptography`, so callers must refuse it.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mldsa

from ..errors import CryptoFailure
from .material import PrivateMaterial, PublicMaterial
from .seeded import ParameterSets, SeededScheme

KIND = "ML-DSA"
#: Parameter set name -> (private class, public class, public key length, signature length).
PARAMETER_SETS: ParameterSets = {
    "ML-DSA-44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey, 1312, 2420),
    "ML-DSA-65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey, 1952, 3309),
    "ML-DSA-87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey, 2592, 4627),
}
SEED_LEN = 32
MAX_CONTEXT_LEN = 255  # FIPS 204 §5.2: ctx is at most 255 bytes

#: Pre-hash functions of HashML-DSA (FIPS 204 §5.4.1): name -> (OID DER, hash algorithm).
PREHASHES = {
    "SHA224": (bytes.fromhex("0609608648016503040204"), hashes.SHA224()),
    "SHA256": (bytes.fromhex("0609608648016503040201"), hashes.SHA256()),
    "SHA384": (bytes.fromhex("0609608648016503040202"), hashes.SHA384()),
    "SHA512": (bytes.fromhex("0609608648016503040203"), hashes.SHA512()),
    "SHA3-224": (bytes.fromhex("0609608648016503040207"), hashes.SHA3_224()),
    "SHA3-256": (bytes.fromhex("0609608648016503040208"), hashes.SHA3_256()),
    "SHA3-384": (bytes.fromhex("0609608648016503040209"), hashes.SHA3_384()),
    "SHA3-512": (bytes.fromhex("060960864801650304020A"), hashes.SHA3_512()),
    # FIPS 204 §5.4.1: SHAKE128 with 256-bit output, SHAKE256 with 512-bit output.
    "SHAKE128": (bytes.fromhex("060960864801650304020B"), hashes.SHAKE128(32)),
    "SHAKE256": (bytes.fromhex("060960864801650304020C"), hashes.SHAKE256(64)),
}


_SCHEME = SeededScheme(KIND, PARAMETER_SETS, SEED_LEN)
parameter_set_of = _SCHEME.parameter_set_of
signature_len = _SCHEME.output_len
generate = _SCHEME.generate
from_seed = _SCHEME.from_seed
from_public_bytes = _SCHEME.from_public_bytes
seed_of = _SCHEME.seed_of
public_bytes = _SCHEME.public_bytes
_public_key = _SCHEME.public_key


def _check_context(context: bytes) -> None:
    if len(context) > MAX_CONTEXT_LEN:
        raise ValueError(f"ML-DSA context of {len(context)} bytes (at most {MAX_CONTEXT_LEN})")


def sign(material: PrivateMaterial, data: bytes, context: bytes = b"") -> bytes:
    """Pure ML-DSA (FIPS 204 Algorithm 2), hedged."""
    _check_context(context)
    return material.key.sign(data, context)


def verify(material: PrivateMaterial | PublicMaterial, data: bytes, signature: bytes,
           context: bytes = b"") -> None:
    _check_context(context)
    try:
        _public_key(material).verify(signature, data, context)
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


def _prehash_mu(material: PrivateMaterial | PublicMaterial, hash_name: str, prehashed: bytes,
                context: bytes) -> bytes:
    """mu = H(tr || M', 64) with tr = H(pk, 64) and M' = 1 || |ctx| || ctx || OID || PH(M)
    (FIPS 204 Algorithm 4 step 23 and Algorithm 7 step 6)."""
    _check_context(context)
    oid, _ = PREHASHES[hash_name]
    tr = _shake256(public_bytes(material), 64)
    return _shake256(tr + bytes([1, len(context)]) + context + oid + prehashed, 64)


def _shake256(data: bytes, length: int) -> bytes:
    h = hashes.Hash(hashes.SHAKE256(length))
    h.update(data)
    return h.finalize()


def prehash(hash_name: str) -> hashes.Hash:
    """A running hash context for HashML-DSA's PH."""
    return hashes.Hash(PREHASHES[hash_name][1])


def digest_len(hash_name: str) -> int:
    return PREHASHES[hash_name][1].digest_size


def sign_prehashed(material: PrivateMaterial, hash_name: str, prehashed: bytes, context: bytes = b"") -> bytes:
    """HashML-DSA (FIPS 204 Algorithm 4), hedged, over PH(M) computed by the caller."""
    return material.key.sign_mu(_prehash_mu(material, hash_name, prehashed, context))


def verify_prehashed(material: PrivateMaterial | PublicMaterial, hash_name: str, prehashed: bytes,
                     signature: bytes, context: bytes = b"") -> None:
    try:
        _public_key(material).verify_mu(signature, _prehash_mu(material, hash_name, prehashed, context))
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None
