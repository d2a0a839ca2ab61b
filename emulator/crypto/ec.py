"""Elliptic curves over prime fields: curve names from CKA_EC_PARAMS, key generation, ECDSA, ECDH.

ECDSA signatures leave here in the PKCS#11 form r || s, each half the byte length of the group
order (PKCS#11 3.0 §2.3.1); `cryptography` speaks DER, and `utils.encode/decode_dss_signature` do the
conversion. CKA_EC_PARAMS and DER-wrapped points are decoded with `cryptography.hazmat.asn1`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ..errors import CryptoFailure, InvalidKeyMaterial
from . import digest
from .material import PrivateMaterial, PublicMaterial

#: Curve name -> (cryptography curve class, OID). Names are `cryptography`'s.
WEIERSTRASS_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    # P-192 and P-224 are legacy, but SoftHSM2 suites (python-pkcs11's) still use prime192v1.
    "secp192r1": (ec.SECP192R1, "1.2.840.10045.3.1.1"),
    "secp224r1": (ec.SECP224R1, "1.3.132.0.33"),
    "secp256r1": (ec.SECP256R1, "1.2.840.10045.3.1.7"),
    "secp384r1": (ec.SECP384R1, "1.3.132.0.34"),
    "secp521r1": (ec.SECP521R1, "1.3.132.0.35"),
    "secp256k1": (ec.SECP256K1, "1.3.132.0.10"),
}
#: RFC 8410 OIDs and the PKCS#11 3.0 printable-string names (§2.3.6) of the Edwards and
#: Montgomery curves, mapped to the material kinds of `emulator.crypto.material`.
OTHER_CURVE_OIDS = {"1.3.101.112": "Ed25519", "1.3.101.113": "Ed448",
                    "1.3.101.110": "X25519", "1.3.101.111": "X448"}
OTHER_CURVE_NAMES = {"edwards25519": "Ed25519", "edwards448": "Ed448",
                     "curve25519": "X25519", "curve448": "X448"}
_OID_TO_CURVE = {oid: name for name, (_, oid) in WEIERSTRASS_CURVES.items()}


def curve_from_ec_params(der: bytes) -> str:
    """A curve name (`secp256r1`, ...) or material kind (`Ed25519`, `X25519`, ...) from
    CKA_EC_PARAMS: a namedCurve OID, or for Edwards/Montgomery curves also a PrintableString.
    Raises InvalidKeyMaterial if undecodable, ValueError if decodable but not supported."""
    from cryptography import x509  # its name parser compiles ~20 ms of regexes: only EC parameters need it

    try:
        oid = asn1.decode_der(x509.ObjectIdentifier, der).dotted_string
    except Exception:
        oid = None
    if oid is not None:
        if oid in _OID_TO_CURVE:
            return _OID_TO_CURVE[oid]
        if oid in OTHER_CURVE_OIDS:
            return OTHER_CURVE_OIDS[oid]
        raise ValueError(f"curve {oid} not supported")
    try:
        name = asn1.decode_der(asn1.PrintableString, der).as_str()
    except Exception:
        raise InvalidKeyMaterial("CKA_EC_PARAMS is neither a named-curve OID nor a curve name") from None
    if name in OTHER_CURVE_NAMES:
        return OTHER_CURVE_NAMES[name]
    raise ValueError(f"curve {name!r} not supported")


def ec_params(curve_name: str) -> bytes:
    """DER namedCurve OID for a curve or Edwards/Montgomery kind."""
    from cryptography import x509  # its name parser compiles ~20 ms of regexes: only EC parameters need it

    if curve_name in WEIERSTRASS_CURVES:
        oid = WEIERSTRASS_CURVES[curve_name][1]
    else:
        oid = {kind: o for o, kind in OTHER_CURVE_OIDS.items()}[curve_name]
    return asn1.encode_der(x509.ObjectIdentifier(oid))


def octet_string(data: bytes) -> bytes:
    return asn1.encode_der(data)


def generate(curve_name: str) -> PrivateMaterial:
    try:
        curve = WEIERSTRASS_CURVES[curve_name][0]()
    except KeyError:
        raise ValueError(f"curve {curve_name!r} not supported") from None
    return PrivateMaterial(ec.generate_private_key(curve))


def _curve(material: PrivateMaterial | PublicMaterial) -> ec.EllipticCurve:
    key = material.key
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise InvalidKeyMaterial("not an EC key")
    return key.curve


def _public(material: PrivateMaterial | PublicMaterial) -> ec.EllipticCurvePublicKey:
    key = material.key
    return key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key


def order_bits(material: PrivateMaterial | PublicMaterial) -> int:
    # For the curves above the group order and the field have the same bit length.
    return _curve(material).key_size


def signature_len(material: PrivateMaterial | PublicMaterial) -> int:
    return 2 * ((order_bits(material) + 7) // 8)


def point(material: PrivateMaterial | PublicMaterial) -> bytes:
    """The uncompressed point 04 || x || y."""
    return _public(material).public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)


def _to_rs(der: bytes, half: int) -> bytes:
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(half, "big") + s.to_bytes(half, "big")


def _from_rs(signature: bytes) -> bytes:
    half = len(signature) // 2
    return utils.encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                      int.from_bytes(signature[half:], "big"))


#: Digest sizes `cryptography`'s Prehashed accepts, smallest first.
_PREHASH_SIZES = ((20, "SHA1"), (28, "SHA224"), (32, "SHA256"), (48, "SHA384"), (64, "SHA512"))
_PREHASH_BY_SIZE = dict(_PREHASH_SIZES)

#: hash name -> ECDSA(Prehashed(hash)): stateless, made once per hash instead of per signature.
_ECDSA: dict[str, ec.ECDSA] = {}


def _ecdsa(hash_name: str) -> ec.ECDSA:
    algorithm = _ECDSA.get(hash_name)
    if algorithm is None:
        algorithm = _ECDSA[hash_name] = ec.ECDSA(utils.Prehashed(digest.algorithm(hash_name)))
    return algorithm


def _prehashed(bits: int, data: bytes) -> tuple[str, bytes]:
    """Present arbitrary-length raw-ECDSA input as a digest `cryptography` accepts.

    FIPS 186-4 §6.4: ECDSA uses the leftmost min(N, 8*len) bits of the hash as the integer e. We
    compute e, then encode it in the smallest supported digest size S with 8*S <= N that holds it, so
    the library (which uses all of a digest no longer than N) signs the same e. Hand-written because
    `cryptography` only signs digests of a named hash's exact length.
    """
    name = _PREHASH_BY_SIZE.get(len(data))
    if name is not None and 8 * len(data) <= bits:
        # No truncation: e is the whole input, which already has a digest size of its own.
        return name, bytes(data)
    e = int.from_bytes(data, "big")
    excess = 8 * len(data) - bits
    if excess > 0:
        e >>= excess
    for size, name in _PREHASH_SIZES:
        if 8 * size <= bits and e.bit_length() <= 8 * size:
            return name, e.to_bytes(size, "big")
    raise ValueError("input too long for raw ECDSA on this curve")


def ecdsa_sign_raw(material: PrivateMaterial, data: bytes) -> bytes:
    """CKM_ECDSA: `data` is the hash (any length); returns r || s."""
    key = material.key
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidKeyMaterial("not an EC private key")
    bits = key.curve.key_size  # the group order's bit length (see order_bits)
    name, hashed = _prehashed(bits, data)
    return _to_rs(key.sign(hashed, _ecdsa(name)), (bits + 7) // 8)


def ecdsa_verify_raw(material: PrivateMaterial | PublicMaterial, data: bytes, signature: bytes) -> None:
    name, hashed = _prehashed(order_bits(material), data)
    ecdsa_verify_digest(material, name, hashed, signature)


def ecdsa_sign_digest(material: PrivateMaterial, hash_name: str, hashed: bytes) -> bytes:
    key = material.key
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidKeyMaterial("not an EC private key")
    der = key.sign(hashed, _ecdsa(hash_name))
    return _to_rs(der, signature_len(material) // 2)


def ecdsa_verify_digest(material: PrivateMaterial | PublicMaterial, hash_name: str, hashed: bytes,
                        signature: bytes) -> None:
    try:
        _public(material).verify(_from_rs(signature), hashed, _ecdsa(hash_name))
    except InvalidSignature:
        raise CryptoFailure("signature mismatch") from None


def field_len(material: PrivateMaterial | PublicMaterial) -> int:
    return (_curve(material).key_size + 7) // 8


def peer_point(material: PrivateMaterial | PublicMaterial, data: bytes) -> bytes:
    """The other party's point as given in CK_ECDH1_DERIVE_PARAMS.pPublicData: the raw X9.62 point
    (PKCS#11 3.0 §2.3.15) or, as many applications send it, a DER OCTET STRING around it."""
    size = field_len(material)
    if (len(data) == 1 + 2 * size and data[0] == 4) or (len(data) == 1 + size and data[0] in (2, 3)):
        return data
    try:
        inner = asn1.decode_der(bytes, data)
    except Exception:
        raise CryptoFailure("public data is not an EC point") from None
    return inner


def ecdh(material: PrivateMaterial, public_point: bytes) -> bytes:
    """The shared secret Z (the x coordinate, SEC 1 §3.3.1)."""
    key = material.key
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidKeyMaterial("not an EC private key")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, peer_point(material, public_point))
    except ValueError:
        raise CryptoFailure("public data is not a point on the key's curve") from None
    return key.exchange(ec.ECDH(), peer)
