"""PKCS#11 key-component attributes <-> key material.

The shim's side of `emulator.crypto.components`: which attribute carries which named component, how
big integers and DER wrappers look in PKCS#11, and which return code a bad component earns:
- a malformed component (wrong length, off the curve, not a number) -> CKR_ATTRIBUTE_VALUE_INVALID;
- components that each look fine but do not belong together (p*q != n, curve of another key type)
  -> CKR_TEMPLATE_INCONSISTENT;
- CKA_EC_PARAMS naming a curve we lack -> CKR_CURVE_NOT_SUPPORTED, undecodable or explicit domain
  parameters -> CKR_DOMAIN_PARAMS_INVALID (PKCS#11 3.0 §2.3 "EC key ... of an unsupported curve");
- a given CKA_CHECK_VALUE or CKA_PUBLIC_KEY_INFO that disagrees with the key ->
  CKR_ATTRIBUTE_VALUE_INVALID (§4.10, §4.9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.crypto import components
from emulator.crypto.components import InconsistentComponents, UnsupportedCurve
from emulator.crypto.material import (
    Material,
    PrivateMaterial,
    PublicMaterial,
    SecretMaterial,
)
from emulator.errors import InvalidKeyMaterial

from ..constants import CKK_EC_MONTGOMERY, CKR, Attribute, KeyType, ObjectClass
from ..errors import FailureCodes, PKCS11Error, translating
from ..mechanisms.keybytes import SECRET_KINDS_BY_KEY_TYPE, check_secret_length
from . import pqc, rules
from .codecs import CKA_PUBLIC_KEY_INFO
from .rules import Flag
from .templates import required as _required

#: RSA attribute <-> component name of `components.rsa_private_key` (PKCS#11 3.0 §2.1.3).
RSA_PARTS: tuple[tuple[int, str], ...] = (
    (Attribute.MODULUS, "n"), (Attribute.PUBLIC_EXPONENT, "e"), (Attribute.PRIVATE_EXPONENT, "d"),
    (Attribute.PRIME_1, "p"), (Attribute.PRIME_2, "q"), (Attribute.EXPONENT_1, "dmp1"),
    (Attribute.EXPONENT_2, "dmq1"), (Attribute.COEFFICIENT, "iqmp"),
)
RSA_PUBLIC_PARTS = RSA_PARTS[:2]
RSA_SECRET_PARTS = RSA_PARTS[2:]

#: Asymmetric key type -> material kind name ("EC_EDWARDS"/"EC_MONTGOMERY" name either curve, as
#: `mechanisms.keybytes.unwrapped` accepts).
ASYMMETRIC_KINDS: dict[int, str] = {
    KeyType.RSA: "RSA", KeyType.EC: "EC", KeyType.EC_EDWARDS: "EC_EDWARDS",
    CKK_EC_MONTGOMERY: "EC_MONTGOMERY", **pqc.ASYMMETRIC_KINDS,
}
#: Material kind -> key type (secret kinds from `keybytes`, first key type wins for HMAC).
_KEY_TYPE_OF_KIND: dict[str, int] = {
    "RSA": KeyType.RSA, "EC": KeyType.EC, "Ed25519": KeyType.EC_EDWARDS, "Ed448": KeyType.EC_EDWARDS,
    "X25519": CKK_EC_MONTGOMERY, "X448": CKK_EC_MONTGOMERY, **pqc.KEY_TYPE_OF_KIND,
}
for _key_type, _kind in SECRET_KINDS_BY_KEY_TYPE.items():
    _KEY_TYPE_OF_KIND.setdefault(_kind, _key_type)
#: Curve families a key type accepts in CKA_EC_PARAMS.
_CURVE_FAMILY: dict[int, Callable[[str], bool]] = {
    KeyType.EC: components.is_weierstrass,
    KeyType.EC_EDWARDS: lambda curve: curve in components.EDWARDS,
    CKK_EC_MONTGOMERY: lambda curve: curve in components.MONTGOMERY,
}


def _value_invalid(attr: int | None, why: str) -> PKCS11Error:
    where = f"attribute 0x{attr:x}: " if attr is not None else ""
    return PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, where + why)


#: What the emulator's component errors mean when a template describes a key (most specific first):
#: components well-formed alone that are not one key, a curve we do not implement, a malformed value.
COMPONENT_CODES: FailureCodes = {
    InconsistentComponents: CKR.TEMPLATE_INCONSISTENT,
    UnsupportedCurve: CKR.CURVE_NOT_SUPPORTED,
    InvalidKeyMaterial: CKR.ATTRIBUTE_VALUE_INVALID,
}
#: CKA_EC_PARAMS that name no curve at all are bad domain parameters.
EC_PARAMS_CODES: FailureCodes = {UnsupportedCurve: CKR.CURVE_NOT_SUPPORTED,
                                 InvalidKeyMaterial: CKR.DOMAIN_PARAMS_INVALID}
_curve_from_params = translating(components.curve_from_params, EC_PARAMS_CODES)


def _big(attr: int, raw: bytes) -> int:
    if not raw:
        raise _value_invalid(attr, "empty big integer")
    return int.from_bytes(raw, "big")


def _be(value: int, length: int = 0) -> bytes:
    return value.to_bytes(max(length, 1, (value.bit_length() + 7) // 8), "big")


# --- kinds and key types ---------------------------------------------------------------------------

def key_kind(object_class: int, key_type: int) -> str:
    """The material kind for a key class and type ("AES", "HMAC", "RSA", "EC", "EC_EDWARDS", ...)."""
    if object_class == ObjectClass.SECRET_KEY:
        kind = SECRET_KINDS_BY_KEY_TYPE.get(key_type)
    elif object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
        kind = ASYMMETRIC_KINDS.get(key_type)
    else:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"class 0x{object_class:x} holds no key")
    if kind is None:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT,
                          f"key type 0x{key_type:x} does not fit class 0x{object_class:x}")
    return kind


def fits(material: Material, key_type: int) -> bool:
    """Whether material can be a key of `key_type` (an HMAC value fits every CKK_SHA*_HMAC)."""
    if isinstance(material, SecretMaterial):
        return SECRET_KINDS_BY_KEY_TYPE.get(key_type) == material.kind
    return _KEY_TYPE_OF_KIND.get(material.kind) == key_type


def key_type_of(material: Material, expected: int | None = None) -> int:
    """The CKK_ of material: `expected` when the material fits it (HMAC values fit several types),
    else the kind's first key type."""
    if expected is not None and fits(material, expected):
        return int(expected)
    try:
        return int(_KEY_TYPE_OF_KIND[material.kind])
    except KeyError:
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, f"no PKCS#11 key type for {material.kind}") from None


def curve_from_params(ec_params: bytes) -> str:
    """The curve CKA_EC_PARAMS names, by namedCurve OID or by curveName PrintableString: a curve name
    (`secp256r1`, ...) or an Edwards/Montgomery kind (`Ed25519`, `X25519`, ...)."""
    return _curve_from_params(bytes(ec_params))


def _curve_for(attrs: dict, key_type: int) -> str:
    curve = curve_from_params(_required(attrs, Attribute.EC_PARAMS))
    if not _CURVE_FAMILY[key_type](curve):
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"curve {curve} does not fit key type 0x{key_type:x}")
    return curve


# --- attributes -> material ------------------------------------------------------------------------

def _secret(attrs: dict, key_type: int) -> Material:
    kind = key_kind(ObjectClass.SECRET_KEY, key_type)
    value = bytes(_required(attrs, Attribute.VALUE))
    check_secret_length(kind, len(value), CKR.ATTRIBUTE_VALUE_INVALID)
    return SecretMaterial(kind, value)


def _rsa_numbers(attrs: dict, parts: tuple[tuple[int, str], ...]) -> dict[str, int]:
    return {name: _big(attr, attrs[attr]) for attr, name in parts if attr in attrs}


def _rsa_private(attrs: dict, key_type: int) -> Material:
    for attr, _ in RSA_PARTS[:3]:
        _required(attrs, attr)
    return components.rsa_private_key(**_rsa_numbers(attrs, RSA_PARTS))


def _rsa_public(attrs: dict, key_type: int) -> Material:
    for attr, _ in RSA_PUBLIC_PARTS:
        _required(attrs, attr)
    return components.rsa_public_key(**_rsa_numbers(attrs, RSA_PUBLIC_PARTS))


def _ec_private(attrs: dict, key_type: int) -> Material:
    curve = _curve_for(attrs, key_type)
    value = bytes(_required(attrs, Attribute.VALUE))
    if components.is_weierstrass(curve):
        return components.ec_private_key(curve, _big(Attribute.VALUE, value))
    return components.raw_private_key(curve, value)


def _ec_public(attrs: dict, key_type: int) -> Material:
    curve = _curve_for(attrs, key_type)
    point = bytes(_required(attrs, Attribute.EC_POINT))
    if components.is_weierstrass(curve):
        return components.ec_public_key(curve, components.ec_point(curve, point))
    return components.raw_public_key(curve, components.raw_public_bytes(curve, point))


#: (class, key type) -> builder; secret key types all share one.
_BUILDERS: dict[tuple[int, int], Callable[[dict, int], Material]] = {
    (ObjectClass.PRIVATE_KEY, KeyType.RSA): _rsa_private,
    (ObjectClass.PUBLIC_KEY, KeyType.RSA): _rsa_public,
    **{(ObjectClass.PRIVATE_KEY, kt): _ec_private for kt in _CURVE_FAMILY},
    **{(ObjectClass.PUBLIC_KEY, kt): _ec_public for kt in _CURVE_FAMILY},
    **{(ObjectClass.SECRET_KEY, kt): _secret for kt in SECRET_KINDS_BY_KEY_TYPE},
    **pqc.BUILDERS,  # PKCS#11 3.2 ML-DSA / ML-KEM
}


def material_from_attributes(attrs: dict) -> Material | None:
    """The key material a C_CreateObject template describes (None for data objects and
    certificates); also checks a given CKA_CHECK_VALUE / CKA_PUBLIC_KEY_INFO against it."""
    object_class = attrs.get(Attribute.CLASS)
    if object_class not in rules.KEY_CLASSES:
        return None
    key_type = _required(attrs, Attribute.KEY_TYPE)
    builder = _BUILDERS.get((object_class, key_type))
    if builder is None:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"cannot make a key of type 0x{key_type:x} here")
    material = translating(builder, COMPONENT_CODES)(attrs, key_type)
    check_material_attributes(attrs, material)
    return material


def check_material_attributes(attrs: dict, material: Material) -> None:
    """A template's CKA_CHECK_VALUE and CKA_PUBLIC_KEY_INFO must describe `material` (§4.10: "MUST
    match what the library calculates ... or CKR_ATTRIBUTE_VALUE_INVALID"; empty suppresses it)."""
    kcv = attrs.get(Attribute.CHECK_VALUE)
    if kcv and isinstance(material, SecretMaterial) and bytes(kcv) != components.check_value(material):
        raise _value_invalid(Attribute.CHECK_VALUE, "does not match the key")
    spki = attrs.get(CKA_PUBLIC_KEY_INFO)
    if spki and not isinstance(material, SecretMaterial) and not components.same_public_key(material, bytes(spki)):
        raise _value_invalid(CKA_PUBLIC_KEY_INFO, "is not this key's public key")


# --- material -> attributes ------------------------------------------------------------------------

def strip_material(attrs: dict) -> dict:
    """The attributes without the secret components (footnote 7 attributes of keys): what may be
    kept in a blob's clear appdata. Data objects and certificates keep their CKA_VALUE."""
    tbl = rules.rules_for(attrs)
    return {attr: value for attr, value in attrs.items()
            if not (attr in tbl and tbl[attr].has(Flag.SENSITIVE))}


def _secret_public(material: SecretMaterial) -> dict[int, Any]:
    return {Attribute.VALUE_LEN: len(material.value), Attribute.CHECK_VALUE: components.check_value(material)}


def _rsa_public_attrs(material: PrivateMaterial | PublicMaterial) -> dict[int, Any]:
    parts = components.rsa_components(material)
    return {Attribute.MODULUS: _be(parts.n), Attribute.MODULUS_BITS: parts.n.bit_length(),
            Attribute.PUBLIC_EXPONENT: _be(parts.e)}


def _curve_public_attrs(material: PrivateMaterial | PublicMaterial, curve: str, point: bytes) -> dict[int, Any]:
    """CKA_EC_PARAMS on both halves; CKA_EC_POINT, a DER OCTET STRING around `point`, on the public one."""
    out = {Attribute.EC_PARAMS: components.curve_params(curve)}
    if isinstance(material, PublicMaterial):
        out[Attribute.EC_POINT] = components.octet_string(point)
    return out


def _ec_public_attrs(material: PrivateMaterial | PublicMaterial) -> dict[int, Any]:
    # The uncompressed point inside the OCTET STRING (§2.3.3; SoftHSM2, OpenSC).
    parts = components.ec_components(material)
    return _curve_public_attrs(material, parts.curve, parts.point)


def _raw_public_attrs(material: PrivateMaterial | PublicMaterial) -> dict[int, Any]:
    # 3.0 says "public key bytes"; SoftHSM2 and OpenSC wrap them in an OCTET STRING as for EC,
    # which is what the tools reading it expect. Creation accepts either form.
    parts = components.raw_components(material)
    return _curve_public_attrs(material, parts.kind, parts.public)


_PUBLIC_ATTRS: dict[str, Callable[[Any], dict[int, Any]]] = {
    "RSA": _rsa_public_attrs, "EC": _ec_public_attrs,
    "Ed25519": _raw_public_attrs, "Ed448": _raw_public_attrs,
    "X25519": _raw_public_attrs, "X448": _raw_public_attrs,
    **pqc.PUBLIC_ATTRS,
}


def public_attributes(material: Material) -> dict[int, Any]:
    """Attributes derivable from the material that anyone may read: the public components
    (CKA_MODULUS, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT for public keys),
    CKA_PUBLIC_KEY_INFO (SPKI DER) for key pairs, CKA_VALUE_LEN and CKA_CHECK_VALUE for secrets. Only
    attributes the material's object class has are returned."""
    if isinstance(material, SecretMaterial):
        return _secret_public(material)
    try:
        build = _PUBLIC_ATTRS[material.kind]
    except KeyError:
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, f"no PKCS#11 attributes for {material.kind}") from None
    out = build(material)
    out[CKA_PUBLIC_KEY_INFO] = components.subject_public_key_info(material)
    return out


#: Public attributes only the public half of a pair has (the point or encoded public key itself).
_PUBLIC_HALF_ONLY = frozenset({Attribute.EC_POINT, Attribute.VALUE})


def pair_public_attributes(private: PrivateMaterial, public: PublicMaterial) -> tuple[dict[int, Any], dict[int, Any]]:
    """(`public_attributes(public)`, `public_attributes(private)`) of a new key pair, derived once:
    the private half has the same public components and SubjectPublicKeyInfo, without the
    attributes only a public key has."""
    pub = public_attributes(public)
    return pub, {attr: value for attr, value in pub.items() if attr not in _PUBLIC_HALF_ONLY}


#: Derivable attributes worth computing only when first needed (`P11Object.defer`): a secret
#: key's CKA_CHECK_VALUE costs an AES (or DES3) cipher or a SHA-1 per key, and is rarely read.
DEFERRABLE = frozenset({Attribute.CHECK_VALUE})


def split_public_attributes(material: Material) -> tuple[dict[int, Any], Callable[[], dict[int, Any]] | None]:
    """`public_attributes(material)` as (the cheap ones, now; a function giving the DEFERRABLE
    rest, or None when there is none)."""
    if isinstance(material, SecretMaterial):
        return {Attribute.VALUE_LEN: len(material.value)}, lambda: {Attribute.CHECK_VALUE: components.check_value(material)}
    return public_attributes(material), None


def _rsa_secret_attrs(material: PrivateMaterial) -> dict[int, Any]:
    parts = components.rsa_components(material)
    return {attr: _be(getattr(parts, name)) for attr, name in RSA_SECRET_PARTS}


def _ec_secret_attrs(material: PrivateMaterial) -> dict[int, Any]:
    parts = components.ec_components(material)
    # Fixed width (the group order's length), as RFC 5915 and most tools write the private value.
    return {Attribute.VALUE: _be(parts.private_value, components.scalar_len(parts.curve))}


def _raw_secret_attrs(material: PrivateMaterial) -> dict[int, Any]:
    return {Attribute.VALUE: components.raw_components(material).private}


_SECRET_ATTRS: dict[str, Callable[[PrivateMaterial], dict[int, Any]]] = {
    "RSA": _rsa_secret_attrs, "EC": _ec_secret_attrs,
    "Ed25519": _raw_secret_attrs, "Ed448": _raw_secret_attrs,
    "X25519": _raw_secret_attrs, "X448": _raw_secret_attrs,
    **pqc.SECRET_ATTRS,
}


def secret_attributes(material: Material) -> dict[int, Any]:
    """The secret components as attributes (big integers big-endian): CKA_VALUE of secret, EC and
    Edwards/Montgomery private keys; CKA_PRIVATE_EXPONENT, CKA_PRIME_1/2, CKA_EXPONENT_1/2,
    CKA_COEFFICIENT of RSA private keys. The caller reveals them only when `templates.readable`."""
    if isinstance(material, SecretMaterial):
        return {Attribute.VALUE: material.value}
    if isinstance(material, PublicMaterial):
        return {}
    build = _SECRET_ATTRS.get(material.kind)
    return build(material) if build is not None else {}
