"""Network identity keys: the module's KNETI and its clients' keys, as X.509 certificates for TLS 1.3.

nShield Connect authenticates its impath channel with the module's KNETI and each client's own key,
each side pinning the other's key hash (anonkneti / nethsmenroll print and take it). Here the channel
is TLS 1.3 (OpenSSL), so each key travels in a certificate: the KNETI's is self-signed (CN = the
module's ESN, a CA so that OpenSSL can check the certificates the module issues), and a client's is
issued by the module's KNETI at enrolment. A certificate proves nothing by itself: the module admits a
client only when its key hash is in the permitted-client list, and a client accepts a module only when
the KNETI hash is the one it pinned. Keys are ECDSA P-256 (TLS 1.3's mandatory signature scheme).
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: A client certificate outlives any sensible enrolment; the permitted-client list's `validity`
#: (and `--revoke`) is what limits a client.
CLIENT_CERT_DAYS = 3650
MODULE_CERT_DAYS = 3650
#: nShield key hashes are 40 lowercase hex digits (SHA-1 size).
HASH_HEX = 40


def new_private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _spki_hash(spki_der: bytes) -> str:
    # The key hash both sides pin: SHA-1 of the SubjectPublicKeyInfo, as nShield's 40-hex key hashes;
    # what is pinned is a key the peer proved it holds in the handshake, so only second preimages
    # matter, which SHA-1 still resists.
    return hashlib.sha1(spki_der).hexdigest()


def key_hash_of_private(private_pem: bytes) -> str:
    key = serialization.load_pem_private_key(private_pem, None)
    return _spki_hash(key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))


def key_hash_of_cert(cert: bytes) -> str:
    """Key hash of a certificate (DER or PEM)."""
    loaded = x509.load_pem_x509_certificate(cert) if cert.lstrip().startswith(b"-----") \
        else x509.load_der_x509_certificate(cert)
    return _spki_hash(loaded.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))


def common_name(cert: bytes) -> str:
    """The subject CN of a certificate (DER or PEM): a KNETI certificate's is the module's ESN."""
    loaded = x509.load_pem_x509_certificate(cert) if cert.lstrip().startswith(b"-----") \
        else x509.load_der_x509_certificate(cert)
    names = loaded.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def module_certificate(private_pem: bytes, esn: str) -> bytes:
    """The KNETI's self-signed certificate (PEM), CN = ESN."""
    key = serialization.load_pem_private_key(private_pem, None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, esn),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "softshield KNETI")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=MODULE_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_client_certificate(module_private_pem: bytes, module_cert_pem: bytes, client_public_pem: bytes,
                             days: int = CLIENT_CERT_DAYS) -> bytes:
    """A client certificate (PEM) for `client_public_pem`, issued by the module's KNETI."""
    issuer_key = serialization.load_pem_private_key(module_private_pem, None)
    issuer = x509.load_pem_x509_certificate(module_cert_pem)
    public = serialization.load_pem_public_key(client_public_pem)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ValueError("a client key must be an EC public key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "softshield client " + _spki_hash(
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)))])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)
