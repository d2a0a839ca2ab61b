"""Signatures for attestation: the emulated vendor root, module KLF2 keys, signed packages.

ECDSA P-521 with SHA-512, as nShield's KLF2 module signing key. vendor_root.py and
attestation.py define the formats; this module holds the primitive calls they need.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import BlobInvalid

_CURVE = ec.SECP521R1()
_SIG_HASH = hashes.SHA512()


class SigningKey:
    """An ECDSA P-521 private key; only its public half and its signatures leave."""

    def __init__(self, private: ec.EllipticCurvePrivateKey) -> None:
        self._private = private
        self.public_der = private.public_key().public_bytes(serialization.Encoding.DER,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data, ec.ECDSA(_SIG_HASH))

    def to_pem(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())


def generate_signing_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(_CURVE))


def load_signing_key(pem: bytes, what: str) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise BlobInvalid(f"{what}: not a PEM private key ({exc})") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != _CURVE.name:
        raise BlobInvalid(f"{what}: not an EC P-521 private key")
    return SigningKey(private)


def derive_signing_key(secret: bytes, label: bytes, context: bytes) -> SigningKey:
    """A P-521 key derived from `secret` (a module key): it lives exactly as long as the secret."""
    seed = HKDF(hashes.SHA512(), 80, label, context).derive(secret)
    scalar = int.from_bytes(seed, "big") % (1 << 520) + 1  # below the P-521 group order (~2^521)
    return SigningKey(ec.derive_private_key(scalar, _CURVE))


def verify(public_der: bytes, data: bytes, signature: bytes) -> bool:
    """True when `signature` is a P-521/SHA-512 signature of `data` under the SPKI `public_der`."""
    try:
        public = serialization.load_der_public_key(public_der)
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return False
        public.verify(signature, data, ec.ECDSA(_SIG_HASH))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_pem(spki_der: bytes) -> bytes:
    """Any SPKI (DER) as PEM."""
    return serialization.load_der_public_key(spki_der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem_of_private(private_pem: bytes) -> bytes:
    return serialization.load_pem_private_key(private_pem, password=None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_public_spki(*, pem: bytes | None = None, n: int | None = None, e: int | None = None) -> tuple[bytes, int]:
    """(SubjectPublicKeyInfo DER, modulus bits) of an RSA public key given as PEM or as (n, e);
    BlobInvalid names what is wrong (a private key, another algorithm, an impossible exponent)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        if pem is not None:
            if b"PRIVATE KEY-----" in pem:
                raise BlobInvalid("a private key: give the KEK's public key (az keyvault key download)")
            key = serialization.load_pem_public_key(pem)
        else:
            key = rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, TypeError, AssertionError) as exc:
        raise BlobInvalid(f"not an RSA public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519

        kinds = ((ec.EllipticCurvePublicKey, "an EC"), (ed25519.Ed25519PublicKey, "an Ed25519"),
                 (ed448.Ed448PublicKey, "an Ed448"), (x25519.X25519PublicKey, "an X25519"),
                 (x448.X448PublicKey, "an X448"))
        kind = next((text for cls, text in kinds if isinstance(key, cls)), "another")
        raise BlobInvalid(f"{kind} key, not RSA")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der, key.key_size
