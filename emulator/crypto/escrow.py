"""Primitives of the security domain (world backup to a quorum of RSA key holders, backup.py).

Each holder's share is RSA-OAEP-256 (SHA-256, MGF1-SHA-256) encrypted to the key of the holder's
X.509 certificate, as Managed HSM's security domain encrypts shares.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import BlobInvalid, CryptoFailure

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _spki_sha256(public: rsa.RSAPublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class HolderCertificate:
    """A share holder's certificate: its RSA key encrypts the share."""

    def __init__(self, cert: x509.Certificate, public: rsa.RSAPublicKey) -> None:
        self._public = public
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.spki_sha256 = _spki_sha256(public)
        #: JOSE x5t#S256: base64url SHA-256 of the certificate's DER.
        self.x5t_256 = base64.urlsafe_b64encode(hashlib.sha256(self.der).digest()).rstrip(b"=").decode()

    def encrypt(self, data: bytes) -> bytes:
        return self._public.encrypt(data, _OAEP)


class HolderKey:
    """A share holder's RSA private key, presented at restore."""

    def __init__(self, private: rsa.RSAPrivateKey) -> None:
        self._private = private
        self.spki_sha256 = _spki_sha256(private.public_key())

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._private.decrypt(data, _OAEP)
        except ValueError:
            raise CryptoFailure("RSA-OAEP-256 decryption failed") from None


def load_certificate(data: bytes, what: str) -> HolderCertificate:
    """A PEM or DER X.509 certificate holding an RSA key."""
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise BlobInvalid(f"{what}: not an X.509 certificate ({exc})") from None
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise BlobInvalid(f"{what}: the certificate's key is not RSA")
    return HolderCertificate(cert, public)


def load_holder_key(data: bytes, what: str, password: bytes | None = None) -> HolderKey:
    """A PEM RSA private key; an encrypted one (PKCS#8 or OpenSSL's) opened with `password`."""
    try:
        key = serialization.load_pem_private_key(data, password=password or None)
    except TypeError:
        if password:
            raise BlobInvalid(f"{what}: not encrypted, but a password was given for it") from None
        raise BlobInvalid(f"{what}: an encrypted PEM private key: give its password (--passwords)") from None
    except ValueError as exc:
        if password and b"ENCRYPTED" in data:
            raise BlobInvalid(f"{what}: the password does not open this key") from None
        raise BlobInvalid(f"{what}: not a PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BlobInvalid(f"{what}: not an RSA private key")
    return HolderKey(key)


# --- the world's recovery key (KRE/KRA): key recovery blobs -----------------------------------------
RECOVERY_BITS = 3072


def new_recovery_key() -> tuple[bytes, bytes]:
    """(PKCS#8 DER of the private half, SPKI DER of the public half) of a new RSA recovery key."""
    private = rsa.generate_private_key(65537, RECOVERY_BITS)
    return (private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
            private.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def recovery_encrypt(public_spki: bytes, data: bytes, aad: bytes) -> bytes:
    """RSA-OAEP-256 of a fresh AES-256 key, then AES-256-GCM of `data` under it (nonce || ct || tag)."""
    from .blobcrypt import random_key, seal

    public = serialization.load_der_public_key(public_spki)
    if not isinstance(public, rsa.RSAPublicKey):
        raise BlobInvalid("the recovery key is not an RSA key")
    key = random_key()
    return public.encrypt(key, _OAEP) + seal(key, data, aad)


def recovery_decrypt(private_pkcs8: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    from .blobcrypt import try_unseal

    private = serialization.load_der_private_key(private_pkcs8, password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise BlobInvalid(f"{what}: the recovery key is not an RSA key")
    size = private.key_size // 8
    try:
        key = private.decrypt(blob[:size], _OAEP)
    except ValueError:
        raise CryptoFailure(f"{what}: the recovery blob is not for this world's recovery key") from None
    plain = try_unseal(key, blob[size:], aad)
    if plain is None:
        raise CryptoFailure(f"{what}: the recovery blob does not authenticate (edited)")
    return plain
