"""Edwards (Ed25519, Ed448: EdDSA, RFC 8032) and Montgomery (X25519, X448: RFC 7748) curves.

`cryptography` implements pure Ed25519 and Ed448 with an empty context; the prehash (Ed25519ph,
Ed448ph) and context variants are not offered, so callers must refuse them.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519

from ..errors import CryptoFailure, InvalidKeyMaterial
from .material import PrivateMaterial, PublicMaterial

_PRIVATE = {
    "Ed25519": ed25519.Ed25519PrivateKey,
    "Ed448": ed448.Ed448PrivateKey,
    "X25519": x25519.X25519PrivateKey,
    "X448": x448.X448PrivateKey,
}
_PUBLIC = {
    "X25519": x25519.X25519PublicKey,
    "X448": x448.X448PublicKey,
}
EDWARDS_KINDS = frozenset({"Ed25519", "Ed448"})
MONTGOMERY_KINDS = frozenset({"X25519", "X448"})
#: Signature lengths (RFC 8032 §5.1.6, §5.2.6) and curve sizes in bits, as CK_MECHANISM_INFO gives them.
SIGNATURE_LEN = {"Ed25519": 64, "Ed448": 114}
_POINT_LEN = {"X25519": 32, "X448": 56}
CURVE_BITS = {"Ed25519": 255, "Ed448": 448, "X25519": 255, "X448": 448}


def generate(kind: str) -> PrivateMaterial:
    try:
        cls = _PRIVATE[kind]
    except KeyError:
        raise ValueError(f"curve {kind!r} not supported") from None
    return PrivateMaterial(cls.generate(), kind)


def eddsa_sign(material: PrivateMaterial, data: bytes) -> bytes:
    if material.kind not in EDWARDS_KINDS or not isinstance(material, PrivateMaterial):
        raise InvalidKeyMaterial("not an Edwards private key")
    return material.key.sign(data)


def eddsa_verify(material: PrivateMaterial | PublicMaterial, data: bytes, signature: bytes) -> None:
    if material.kind not in EDWARDS_KINDS:
        raise InvalidKeyMaterial("not an Edwards key")
    key = material.key.public_key() if isinstance(material, PrivateMaterial) else material.key
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


def exchange(material: PrivateMaterial, peer: bytes) -> bytes:
    """X25519/X448 shared secret with the peer's u-coordinate bytes (RFC 7748 §5)."""
    if material.kind not in MONTGOMERY_KINDS or not isinstance(material, PrivateMaterial):
        raise InvalidKeyMaterial("not a Montgomery private key")
    if len(peer) != _POINT_LEN[material.kind]:
        # Some applications DER-wrap the u-coordinate in an OCTET STRING, as for CKA_EC_POINT.
        try:
            peer = asn1.decode_der(bytes, peer)
        except Exception:
            raise CryptoFailure("public data is not a Montgomery u-coordinate") from None
    try:
        public = _PUBLIC[material.kind].from_public_bytes(peer)
        return material.key.exchange(public)
    except ValueError:
        raise CryptoFailure("public data is not a valid point, or the shared secret is zero") from None
