"""Keys built from, and taken apart into, their named components.

The one place that turns numbers and raw bytes into `cryptography` key objects and back:
- RSA: n, e, d, p, q, dmp1, dmq1, iqmp (integers);
- short Weierstrass EC: a curve (by name, or by DER domain parameters: namedCurve OID or curveName
  PrintableString), the private value d (integer) and the public point (X9.62 bytes);
- Edwards and Montgomery curves (Ed25519, Ed448, X25519, X448): raw private and public bytes;
- symmetric keys: the check value (KCV) that fingerprints them.

Callers above the emulator name components, never PKCS#11 numbers. Failures raise
`InvalidKeyMaterial` (a component is malformed on its own), its subclass `InconsistentComponents`
(components that are each well-formed but do not belong to one key) or `UnsupportedCurve` (well-formed
domain parameters naming a curve we do not offer).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import (
    ec,
    ed448,
    ed25519,
    rsa,
    x448,
    x25519,
)

from ..errors import InvalidKeyMaterial
from . import aes, des, des3, digest
from .ec import OTHER_CURVE_NAMES, OTHER_CURVE_OIDS, WEIERSTRASS_CURVES
from .material import PrivateMaterial, PublicMaterial, SecretMaterial


class InconsistentComponents(InvalidKeyMaterial):
    """Each component is well-formed, but together they are not one key (p*q != n, point != d*G...)."""


class UnsupportedCurve(InvalidKeyMaterial):
    """The domain parameters are well-formed but name a curve this module does not implement."""


# --- curves ------------------------------------------------------------------------------------

#: Names a curveName PrintableString may carry (X9.62, SEC 2, NIST, RFC 8032/7748), lower-cased,
#: mapped to the names `emulator.crypto.ec` uses: Weierstrass curve names and Edwards/Montgomery kinds.
CURVE_ALIASES: dict[str, str] = {
    "secp192r1": "secp192r1", "prime192v1": "secp192r1", "p-192": "secp192r1", "nistp192": "secp192r1",
    "secp224r1": "secp224r1", "p-224": "secp224r1", "nistp224": "secp224r1",
    "secp256r1": "secp256r1", "prime256v1": "secp256r1", "p-256": "secp256r1", "nistp256": "secp256r1",
    "secp384r1": "secp384r1", "p-384": "secp384r1", "nistp384": "secp384r1",
    "secp521r1": "secp521r1", "p-521": "secp521r1", "nistp521": "secp521r1",
    "secp256k1": "secp256k1",
    **OTHER_CURVE_NAMES,
    "ed25519": "Ed25519", "ed448": "Ed448", "x25519": "X25519", "x448": "X448",
}
_OID_TO_CURVE = {oid: name for name, (_cls, oid) in WEIERSTRASS_CURVES.items()} | OTHER_CURVE_OIDS
_CURVE_TO_OID = {name: oid for oid, name in _OID_TO_CURVE.items()}
#: Raw key lengths of the Edwards and Montgomery kinds (RFC 8032 §5.1.5/§5.2.5, RFC 7748 §5).
RAW_KEY_LEN = {"Ed25519": 32, "Ed448": 57, "X25519": 32, "X448": 56}
_RAW_PRIVATE = {
    "Ed25519": ed25519.Ed25519PrivateKey, "Ed448": ed448.Ed448PrivateKey,
    "X25519": x25519.X25519PrivateKey, "X448": x448.X448PrivateKey,
}
_RAW_PUBLIC = {
    "Ed25519": ed25519.Ed25519PublicKey, "Ed448": ed448.Ed448PublicKey,
    "X25519": x25519.X25519PublicKey, "X448": x448.X448PublicKey,
}
EDWARDS = frozenset({"Ed25519", "Ed448"})
MONTGOMERY = frozenset({"X25519", "X448"})


def curve_from_params(der: bytes) -> str:
    """The curve named by DER domain parameters: a namedCurve OID or a curveName PrintableString.

    Returns a Weierstrass curve name (`secp256r1`, ...) or an Edwards/Montgomery kind (`Ed25519`,
    ...). Explicit ecParameters and implicitlyCA are not offered (InvalidKeyMaterial)."""
    from cryptography import x509  # its name parser compiles ~20 ms of regexes: only EC parameters need it

    try:
        oid = asn1.decode_der(x509.ObjectIdentifier, der).dotted_string
    except ValueError:
        oid = None
    if oid is not None:
        if oid not in _OID_TO_CURVE:
            raise UnsupportedCurve(f"curve {oid} is not supported")
        return _OID_TO_CURVE[oid]
    try:
        name = asn1.decode_der(asn1.PrintableString, der).as_str()
    except ValueError:
        raise InvalidKeyMaterial("EC parameters are neither a named-curve OID nor a curve name") from None
    try:
        return CURVE_ALIASES[name.lower()]
    except KeyError:
        raise UnsupportedCurve(f"curve {name!r} is not supported") from None


@functools.lru_cache(maxsize=None)
def curve_params(curve: str) -> bytes:
    """DER namedCurve OID of a curve name or Edwards/Montgomery kind (RFC 5480, RFC 8410)."""
    from cryptography import x509  # its name parser compiles ~20 ms of regexes: only EC parameters need it

    try:
        return asn1.encode_der(x509.ObjectIdentifier(_CURVE_TO_OID[curve]))
    except KeyError:
        raise UnsupportedCurve(f"curve {curve!r} is not supported") from None


def is_weierstrass(curve: str) -> bool:
    return curve in WEIERSTRASS_CURVES


def _weierstrass(curve: str) -> ec.EllipticCurve:
    try:
        return WEIERSTRASS_CURVES[curve][0]()
    except KeyError:
        raise UnsupportedCurve(f"{curve!r} is not a supported short Weierstrass curve") from None


def octet_string(data: bytes) -> bytes:
    """DER OCTET STRING around `data` (how CKA_EC_POINT carries a point)."""
    return asn1.encode_der(data)


def _unwrap_octet_string(data: bytes, raw_ok: bool) -> bytes:
    if raw_ok:
        return data
    try:
        return asn1.decode_der(bytes, data)
    except ValueError:
        raise InvalidKeyMaterial("public key is neither raw nor a DER OCTET STRING") from None


def scalar_len(curve: str) -> int:
    """Byte length of the group order (the private value's fixed-width encoding, RFC 5915)."""
    return (_weierstrass(curve).group_order.bit_length() + 7) // 8


def field_len(curve: str) -> int:
    return (_weierstrass(curve).key_size + 7) // 8


# --- RSA ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RsaComponents:
    n: int
    e: int
    d: int | None = None
    p: int | None = None
    q: int | None = None
    dmp1: int | None = None
    dmq1: int | None = None
    iqmp: int | None = None


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise InvalidKeyMaterial(f"RSA component {name} must be a positive integer")


def rsa_public_key(*, n: int, e: int) -> PublicMaterial:
    _positive("n", n)
    _positive("e", e)
    try:
        return PublicMaterial(rsa.RSAPublicNumbers(e, n).public_key())
    except ValueError as exc:
        raise InvalidKeyMaterial(f"not an RSA public key: {exc}") from None


def _primes(n: int, e: int, d: int, p: int | None, q: int | None) -> tuple[int, int]:
    if p is not None and q is not None:
        if p * q != n:
            raise InconsistentComponents("p * q is not the modulus")
        return p, q
    known = p if p is not None else q
    if known is not None:
        if known <= 1 or n % known:
            raise InconsistentComponents("the given prime does not divide the modulus")
        return known, n // known
    try:
        return rsa.rsa_recover_prime_factors(n, e, d)
    except ValueError:
        raise InconsistentComponents("n, e and d do not form an RSA key") from None


def rsa_private_key(*, n: int, e: int, d: int, p: int | None = None, q: int | None = None,
                    dmp1: int | None = None, dmq1: int | None = None,
                    iqmp: int | None = None) -> PrivateMaterial:
    """An RSA private key; missing CRT components are computed, given ones must agree."""
    for name, value in (("n", n), ("e", e), ("d", d)):
        _positive(name, value)
    for name, value in (("p", p), ("q", q), ("dmp1", dmp1), ("dmq1", dmq1), ("iqmp", iqmp)):
        if value is not None:
            _positive(name, value)
    p, q = _primes(n, e, d, p, q)
    computed = {"dmp1": rsa.rsa_crt_dmp1(d, p), "dmq1": rsa.rsa_crt_dmq1(d, q)}
    if iqmp is not None and iqmp != rsa.rsa_crt_iqmp(p, q):
        # The caller's p and q may be in the other order: accept iqmp for (q, p) too.
        if iqmp == rsa.rsa_crt_iqmp(q, p):
            p, q = q, p
            computed = {"dmp1": rsa.rsa_crt_dmp1(d, p), "dmq1": rsa.rsa_crt_dmq1(d, q)}
        else:
            raise InconsistentComponents("iqmp is not q^-1 mod p")
    for name, given in (("dmp1", dmp1), ("dmq1", dmq1)):
        if given is not None and given != computed[name]:
            raise InconsistentComponents(f"{name} does not match d and the primes")
    numbers = rsa.RSAPrivateNumbers(p, q, d, computed["dmp1"], computed["dmq1"], rsa.rsa_crt_iqmp(p, q),
                                    rsa.RSAPublicNumbers(e, n))
    try:
        return PrivateMaterial(numbers.private_key())
    except ValueError as exc:
        raise InconsistentComponents(f"the components do not form an RSA key: {exc}") from None


def rsa_components(material: PrivateMaterial | PublicMaterial) -> RsaComponents:
    key = material.key
    if isinstance(key, rsa.RSAPrivateKey):
        priv = key.private_numbers()
        pub = priv.public_numbers
        return RsaComponents(pub.n, pub.e, priv.d, priv.p, priv.q, priv.dmp1, priv.dmq1, priv.iqmp)
    if isinstance(key, rsa.RSAPublicKey):
        pub = key.public_numbers()
        return RsaComponents(pub.n, pub.e)
    raise InvalidKeyMaterial("not an RSA key")


# --- short Weierstrass EC ----------------------------------------------------------------------

@dataclass(frozen=True)
class EcComponents:
    curve: str
    point: bytes  # uncompressed X9.62: 04 || x || y
    private_value: int | None = None


def ec_point(curve: str, data: bytes) -> bytes:
    """The X9.62 point from CKA_EC_POINT-style input: a DER OCTET STRING around it (the spec's and
    SoftHSM's form) or the bare point that some applications send."""
    size = field_len(curve)
    bare = (len(data) == 1 + 2 * size and data[:1] == b"\x04") or (
        len(data) == 1 + size and data[:1] in (b"\x02", b"\x03"))
    return _unwrap_octet_string(data, bare)


def ec_public_key(curve: str, point: bytes) -> PublicMaterial:
    """`point` is the X9.62 encoding (uncompressed or compressed), not DER-wrapped."""
    try:
        return PublicMaterial(ec.EllipticCurvePublicKey.from_encoded_point(_weierstrass(curve), point))
    except ValueError:
        raise InvalidKeyMaterial(f"not a point on {curve}") from None


def ec_private_key(curve: str, private_value: int) -> PrivateMaterial:
    if not isinstance(private_value, int) or private_value <= 0:
        raise InvalidKeyMaterial("EC private value must be a positive integer")
    try:
        return PrivateMaterial(ec.derive_private_key(private_value, _weierstrass(curve)))
    except ValueError:
        raise InvalidKeyMaterial(f"private value out of range for {curve}") from None


def _curve_name(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    name = key.curve.name
    if name not in WEIERSTRASS_CURVES:
        raise UnsupportedCurve(f"curve {name!r} is not supported")
    return name


def ec_components(material: PrivateMaterial | PublicMaterial) -> EcComponents:
    key = material.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        public = key.public_key()
        value = key.private_numbers().private_value
    elif isinstance(key, ec.EllipticCurvePublicKey):
        public, value = key, None
    else:
        raise InvalidKeyMaterial("not an EC key")
    point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return EcComponents(_curve_name(key), point, value)


# --- Edwards and Montgomery --------------------------------------------------------------------

@dataclass(frozen=True)
class RawComponents:
    kind: str
    public: bytes
    private: bytes | None = None


def _raw_kind(kind: str) -> None:
    if kind not in RAW_KEY_LEN:
        raise UnsupportedCurve(f"{kind!r} is not an Edwards or Montgomery curve")


def raw_public_bytes(kind: str, data: bytes) -> bytes:
    """The raw public key from CKA_EC_POINT-style input: bare bytes or a DER OCTET STRING."""
    _raw_kind(kind)
    return _unwrap_octet_string(data, len(data) == RAW_KEY_LEN[kind])


def _load_raw(kind: str, data: bytes, half: str, load: Callable[[bytes], Any]) -> Any:
    """`load(data)` for one half of a raw Edwards/Montgomery key, its length checked first."""
    if len(data) != RAW_KEY_LEN[kind]:
        raise InvalidKeyMaterial(f"{kind} {half} key of {len(data)} bytes")
    try:
        return load(data)
    except ValueError as exc:
        raise InvalidKeyMaterial(f"not a {kind} {half} key: {exc}") from None


def raw_private_key(kind: str, private: bytes) -> PrivateMaterial:
    _raw_kind(kind)
    return PrivateMaterial(_load_raw(kind, private, "private", _RAW_PRIVATE[kind].from_private_bytes), kind)


def raw_public_key(kind: str, public: bytes) -> PublicMaterial:
    _raw_kind(kind)
    return PublicMaterial(_load_raw(kind, public, "public", _RAW_PUBLIC[kind].from_public_bytes), kind)


def raw_components(material: PrivateMaterial | PublicMaterial) -> RawComponents:
    _raw_kind(material.kind)
    raw = serialization.Encoding.Raw
    if isinstance(material, PrivateMaterial):
        key = material.key
        private = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        return RawComponents(material.kind, public, private)
    return RawComponents(material.kind, material.key.public_bytes(raw, serialization.PublicFormat.Raw))


# --- whole keys --------------------------------------------------------------------------------

def subject_public_key_info(material: PrivateMaterial | PublicMaterial) -> bytes:
    public = material.public() if isinstance(material, PrivateMaterial) else material
    return public.to_bytes()


def same_public_key(material: PrivateMaterial | PublicMaterial, spki: bytes) -> bool:
    """Whether a SubjectPublicKeyInfo is the public half of `material` (compared re-encoded, so
    that a BER-ish but equal encoding still matches)."""
    mine = subject_public_key_info(material)
    if spki == mine:
        return True
    try:
        theirs = serialization.load_der_public_key(spki)
    except (ValueError, TypeError):
        return False
    return theirs.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo) == mine


def _des3_zero_block(key: bytes) -> bytes:
    ctx = des3.ecb(key, True)
    return ctx.update(bytes(des3.BLOCK_SIZE)) + ctx.finalize()


#: Secret kind -> key check value (PKCS#11 3.0 §4.10 and the key-type sections): the first three bytes
#: of the ECB encryption of one zero block for block ciphers, of the SHA-1 hash of the value for
#: generic secrets and HMAC keys.
_CHECK_VALUE = {
    "AES": lambda value: aes.ecb_encrypt(value, bytes(aes.BLOCK_SIZE))[:3],
    "DES": lambda value: des.zero_block(value)[:3],
    "DES3": lambda value: _des3_zero_block(value)[:3],
    "GENERIC": lambda value: digest.digest("SHA1", value)[:3],
    "HMAC": lambda value: digest.digest("SHA1", value)[:3],
}


def check_value(material: SecretMaterial) -> bytes:
    """The key check value (KCV) of a secret key."""
    return _CHECK_VALUE[material.kind](material.value)
