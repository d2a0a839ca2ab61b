"""Fresh key material: secrets, RSA, EC and EdDSA pairs, and the world's signing key (KNSO)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..errors import InvalidKeyMaterial
from .material import PrivateMaterial, SecretMaterial

#: Curve names accepted by `generate_ec`, with the SEC 2 / NIST aliases callers use.
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1, "secp256r1": ec.SECP256R1, "prime256v1": ec.SECP256R1,
    "P-384": ec.SECP384R1, "secp384r1": ec.SECP384R1,
    "P-521": ec.SECP521R1, "secp521r1": ec.SECP521R1,
    "secp256k1": ec.SECP256K1,
}


def generate_secret(kind: str, length: int) -> SecretMaterial:
    """`length` random bytes as a secret of `kind` (AES: 16, 24 or 32 bytes)."""
    if kind == "AES" and length not in (16, 24, 32):
        raise InvalidKeyMaterial(f"AES key of {length} bytes")
    if length <= 0:
        raise InvalidKeyMaterial(f"secret key of {length} bytes")
    return SecretMaterial(kind, os.urandom(length))


def generate_rsa(bits: int = 2048, public_exponent: int = 65537) -> PrivateMaterial:
    if bits < 1024:
        raise InvalidKeyMaterial(f"RSA modulus of {bits} bits")
    return PrivateMaterial(rsa.generate_private_key(public_exponent, bits))


def generate_ec(curve: str = "P-256") -> PrivateMaterial:
    try:
        curve_cls = CURVES[curve]
    except KeyError:
        raise InvalidKeyMaterial(f"unknown curve {curve!r}") from None
    return PrivateMaterial(ec.generate_private_key(curve_cls()))


def generate_eddsa(kind: str = "Ed25519") -> PrivateMaterial:
    if kind == "Ed25519":
        return PrivateMaterial(ed25519.Ed25519PrivateKey.generate())
    if kind == "Ed448":
        return PrivateMaterial(ed448.Ed448PrivateKey.generate())
    raise InvalidKeyMaterial(f"unknown EdDSA kind {kind!r}")


def generate_world_signing_key() -> PrivateMaterial:
    """KNSO, the world's root signing key. nShield's DLf3072 suites make a DSA-3072 KNSO; generating
    DSA-3072 parameters takes seconds, so the emulator uses ECDSA P-521 (the ECp521 suites' KNSO)."""
    return generate_ec("P-521")
