"""Security World cipher suites mapped onto the primitives the emulator really uses.

nShield names a suite by its world-key algorithms: `DLf3072s256mAEScSP800131Ar1` reads "discrete-log
(DSA) field of 3072 bits, SHA-256 signatures, module key AES, SP800-131A rev. 1 compliant". KNSO, the
world's root signing key, is generated with exactly that algorithm; every blob and card share is
sealed with AES-256-GCM (Rijndael with 256-bit keys is AES-256), and the SP800-131A suites derive
sub-keys with HKDF-SHA256 (an SP800-56C two-step KDF) instead of the older suites' plain use.
"""

from __future__ import annotations

from dataclasses import dataclass

# The KNSO functions import `cryptography`'s DSA/EC and serialization modules themselves: every
# process reads the suite table, only world administration and certificates use KNSO (~15 ms of a
# process's start otherwise).


@dataclass(frozen=True)
class CipherSuite:
    name: str
    knso: str  # KNSO algorithm, e.g. "DSA-1024"
    signature_hash: str  # hash KNSO signs with
    module_cipher: str  # what seals blobs and card shares
    kdf: str
    description: str


SUITES: dict[str, CipherSuite] = {s.name: s for s in (
    CipherSuite("DLf1024s160mRijndael", "DSA-1024", "SHA-1", "AES-256-GCM", "HKDF-SHA256",
                "original (legacy) suite: DSA-1024 world key, SHA-1, Rijndael module key"),
    CipherSuite("DLf3072s256mRijndael", "DSA-3072", "SHA-256", "AES-256-GCM", "HKDF-SHA256",
                "DSA-3072 world key, SHA-256, Rijndael module key"),
    CipherSuite("DLf3072s256mAEScSP800131Ar1", "DSA-3072", "SHA-256", "AES-256-GCM", "HKDF-SHA256",
                "SP800-131A rev. 1: DSA-3072 world key, SHA-256, AES module key (the default)"),
    CipherSuite("ECp521mAES", "ECDSA-P521", "SHA-512", "AES-256-GCM", "HKDF-SHA256",
                "FIPS 140 Level 3 suite: ECDSA P-521 world key, AES module key"),
)}


def suite(name: str) -> CipherSuite:
    found = SUITES.get(name)
    if found is None:
        raise ValueError(f"unknown cipher suite {name!r}: expected one of {', '.join(SUITES)}")
    return found


def generate_knso(name: str) -> tuple[bytes, bytes]:
    """(PKCS#8 DER, SPKI DER) of a new KNSO for suite `name`; hknso is SHA-1 of the SPKI."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec

    algorithm = suite(name).knso
    if algorithm.startswith("DSA-"):
        key = dsa.generate_private_key(int(algorithm[4:]))
    else:
        key = ec.generate_private_key(ec.SECP521R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return der, spki


def sign_with_knso(name: str, pkcs8: bytes, data: bytes) -> bytes:
    """A KNSO signature over `data` with the suite's hash (world-binding certificates)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec

    key = serialization.load_der_private_key(pkcs8, None)
    digest = {"SHA-1": hashes.SHA1(), "SHA-256": hashes.SHA256(), "SHA-512": hashes.SHA512()}[suite(name).signature_hash]
    if isinstance(key, dsa.DSAPrivateKey):
        return key.sign(data, digest)
    return key.sign(data, ec.ECDSA(digest))


def verify_with_knso(name: str, spki: bytes, data: bytes, signature: bytes) -> bool:
    """Whether `signature` is KNSO's over `data` (the inverse of sign_with_knso)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec

    key = serialization.load_der_public_key(spki)
    digest = {"SHA-1": hashes.SHA1(), "SHA-256": hashes.SHA256(), "SHA-512": hashes.SHA512()}[suite(name).signature_hash]
    try:
        if isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(digest))
        else:
            return False
    except InvalidSignature:
        return False
    return True
