"""Key-component attributes <-> key material: round trips per key type and the exact error codes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from emulator.crypto.material import PrivateMaterial, PublicMaterial, SecretMaterial
from pkcs11_shim.attributes import keyparts
from pkcs11_shim.attributes.codecs import CKA_PUBLIC_KEY_INFO
from pkcs11_shim.attributes.templates import Origin, new_object, readable
from pkcs11_shim.constants import (
    CKK_EC_MONTGOMERY,
    CKR,
    Attribute,
    CertificateType,
    KeyType,
    ObjectClass,
)
from pkcs11_shim.errors import PKCS11Error

A = Attribute
OID_DER = {
    "secp256r1": "06082a8648ce3d030107", "secp384r1": "06052b81040022", "secp521r1": "06052b81040023",
    "secp256k1": "06052b8104000a", "Ed25519": "06032b6570", "Ed448": "06032b6571",
    "X25519": "06032b656e", "X448": "06032b656f",
}
KEY_TYPE = {"Ed25519": KeyType.EC_EDWARDS, "Ed448": KeyType.EC_EDWARDS, "X25519": CKK_EC_MONTGOMERY,
            "X448": CKK_EC_MONTGOMERY}


def printable(name: str) -> bytes:
    return bytes([0x13, len(name)]) + name.encode()


def octets(data: bytes) -> bytes:
    """DER OCTET STRING (short or one-byte long form, enough for every point here)."""
    length = bytes([len(data)]) if len(data) < 128 else bytes([0x81, len(data)])
    return b"\x04" + length + data


def code(call: Any) -> int:
    with pytest.raises(PKCS11Error) as excinfo:
        call()
    return excinfo.value.rv


def created(template: dict) -> tuple[dict, Any]:
    """C_CreateObject's path: full attributes, then the material."""
    attrs = new_object(template, Origin.CREATE)
    return attrs, keyparts.material_from_attributes(attrs)


def exported(material: Any) -> dict:
    return {**keyparts.public_attributes(material), **keyparts.secret_attributes(material)}


# --- secret keys -------------------------------------------------------------------------------------------

SECRET = {A.CLASS: ObjectClass.SECRET_KEY}


@pytest.mark.parametrize("key_type,kind,length", [
    (KeyType.AES, "AES", 16), (KeyType.AES, "AES", 24), (KeyType.AES, "AES", 32), (KeyType.DES3, "DES3", 24),
    (KeyType.GENERIC_SECRET, "GENERIC", 1), (KeyType.GENERIC_SECRET, "GENERIC", 77),
    (KeyType.SHA256_HMAC, "HMAC", 32), (KeyType.SHA_1_HMAC, "HMAC", 20), (KeyType.SHA3_512_HMAC, "HMAC", 64),
])
def test_secret_round_trip(key_type: int, kind: str, length: int) -> None:
    value = bytes(range(1, length + 1))
    attrs, material = created({**SECRET, A.KEY_TYPE: key_type, A.VALUE: value})
    assert isinstance(material, SecretMaterial) and material.kind == kind and material.value == value
    public = keyparts.public_attributes(material)
    assert public[A.VALUE_LEN] == length and len(public[A.CHECK_VALUE]) == 3
    assert keyparts.secret_attributes(material) == {A.VALUE: value}
    assert keyparts.key_type_of(material, key_type) == key_type
    assert keyparts.fits(material, key_type)
    assert A.VALUE not in keyparts.strip_material(attrs)


def test_check_values_are_the_specs() -> None:
    # AES-128, zero key: AES_K(0^128) = 66e94bd4ef8a2c3b884cfa59ca342b2e (FIPS-197 / SP 800-38A).
    aes = keyparts.public_attributes(SecretMaterial("AES", bytes(16)))
    assert aes[A.CHECK_VALUE] == bytes.fromhex("66e94b")
    des_key = bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123")
    encryptor = Cipher(TripleDES(des_key), modes.ECB()).encryptor()
    expected = (encryptor.update(bytes(8)) + encryptor.finalize())[:3]
    assert keyparts.public_attributes(SecretMaterial("DES3", des_key))[A.CHECK_VALUE] == expected
    generic = keyparts.public_attributes(SecretMaterial("GENERIC", b"secret"))
    assert generic[A.CHECK_VALUE] == hashlib.sha1(b"secret").digest()[:3]


def test_given_check_value_must_match() -> None:
    value = bytes(16)
    created({**SECRET, A.KEY_TYPE: KeyType.AES, A.VALUE: value, A.CHECK_VALUE: bytes.fromhex("66e94b")})
    created({**SECRET, A.KEY_TYPE: KeyType.AES, A.VALUE: value, A.CHECK_VALUE: b""})  # empty: none wanted
    bad = {**SECRET, A.KEY_TYPE: KeyType.AES, A.VALUE: value, A.CHECK_VALUE: b"\x00\x00\x00"}
    assert code(lambda: created(bad)) == CKR.ATTRIBUTE_VALUE_INVALID


@pytest.mark.parametrize("key_type,length", [(KeyType.AES, 15), (KeyType.AES, 33), (KeyType.AES, 0),
                                             (KeyType.DES3, 16), (KeyType.GENERIC_SECRET, 0)])
def test_bad_secret_lengths(key_type: int, length: int) -> None:
    template = {**SECRET, A.KEY_TYPE: key_type, A.VALUE: bytes(length)}
    assert code(lambda: created(template)) == CKR.ATTRIBUTE_VALUE_INVALID


# --- RSA -----------------------------------------------------------------------------------------------------

RSA_PRIVATE = {A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.RSA}
RSA_PUBLIC = {A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.RSA}
RSA_ALL = (A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT, A.PRIME_1, A.PRIME_2, A.EXPONENT_1,
           A.EXPONENT_2, A.COEFFICIENT)


def rsa_parts(rsa_key: PrivateMaterial, *attrs: int) -> dict:
    parts = exported(rsa_key)
    return {attr: parts[attr] for attr in attrs}


def test_rsa_private_round_trip_with_every_component(rsa_key: PrivateMaterial) -> None:
    attrs, material = created({**RSA_PRIVATE, **rsa_parts(rsa_key, *RSA_ALL)})
    assert material.key.private_numbers() == rsa_key.key.private_numbers()
    out = exported(material)
    assert out[A.MODULUS_BITS] == 2048
    assert out[CKA_PUBLIC_KEY_INFO] == rsa_key.public().to_bytes()
    assert A.EC_POINT not in out
    stored = keyparts.strip_material(attrs)
    assert A.MODULUS in stored and A.PUBLIC_EXPONENT in stored
    for attr in RSA_ALL[2:]:
        assert attr not in stored and not readable({**stored, A.SENSITIVE: True}, attr)


def test_rsa_private_from_n_e_d_recovers_the_primes(rsa_key: PrivateMaterial) -> None:
    _, material = created({**RSA_PRIVATE, **rsa_parts(rsa_key, A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT)})
    assert material.key.private_numbers().public_numbers == rsa_key.key.private_numbers().public_numbers
    numbers = material.key.private_numbers()
    assert {numbers.p, numbers.q} == {rsa_key.key.private_numbers().p, rsa_key.key.private_numbers().q}


def test_rsa_private_from_one_prime(rsa_key: PrivateMaterial) -> None:
    parts = rsa_parts(rsa_key, A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT, A.PRIME_2)
    _, material = created({**RSA_PRIVATE, **parts})
    assert material.key.private_numbers().d == rsa_key.key.private_numbers().d


def test_rsa_private_with_primes_in_the_other_order(rsa_key: PrivateMaterial) -> None:
    parts = rsa_parts(rsa_key, *RSA_ALL)
    parts[A.PRIME_1], parts[A.PRIME_2] = parts[A.PRIME_2], parts[A.PRIME_1]
    parts[A.EXPONENT_1], parts[A.EXPONENT_2] = parts[A.EXPONENT_2], parts[A.EXPONENT_1]
    del parts[A.COEFFICIENT]
    _, material = created({**RSA_PRIVATE, **parts})
    assert material.key.private_numbers().d == rsa_key.key.private_numbers().d


@pytest.mark.parametrize("attr,change", [
    (A.PRIME_1, lambda b: (int.from_bytes(b, "big") + 2).to_bytes(len(b), "big")),   # p*q != n
    (A.EXPONENT_1, lambda b: (int.from_bytes(b, "big") + 1).to_bytes(len(b), "big")),
    (A.COEFFICIENT, lambda b: (int.from_bytes(b, "big") + 1).to_bytes(len(b), "big")),
    (A.PUBLIC_EXPONENT, lambda b: b"\x03"),                                             # e and d disagree
])
def test_rsa_components_that_disagree_are_template_inconsistent(rsa_key: PrivateMaterial, attr: int,
                                                                change: Any) -> None:
    parts = rsa_parts(rsa_key, *RSA_ALL)
    parts[attr] = change(parts[attr])
    if attr == A.PUBLIC_EXPONENT:
        parts = {k: parts[k] for k in (A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT)}
    assert code(lambda: created({**RSA_PRIVATE, **parts})) == CKR.TEMPLATE_INCONSISTENT


def test_rsa_private_needs_the_public_exponent(rsa_key: PrivateMaterial) -> None:
    parts = rsa_parts(rsa_key, A.MODULUS, A.PRIVATE_EXPONENT, A.PRIME_1, A.PRIME_2)
    assert code(lambda: created({**RSA_PRIVATE, **parts})) == CKR.TEMPLATE_INCOMPLETE
    assert code(lambda: keyparts.material_from_attributes({**RSA_PRIVATE, **parts})) == CKR.TEMPLATE_INCOMPLETE


def test_rsa_empty_component_is_value_invalid(rsa_key: PrivateMaterial) -> None:
    parts = rsa_parts(rsa_key, A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT)
    parts[A.PRIVATE_EXPONENT] = b""
    assert code(lambda: created({**RSA_PRIVATE, **parts})) == CKR.ATTRIBUTE_VALUE_INVALID


def test_rsa_public_round_trip(rsa_key: PrivateMaterial) -> None:
    attrs, material = created({**RSA_PUBLIC, **rsa_parts(rsa_key, A.MODULUS, A.PUBLIC_EXPONENT)})
    assert isinstance(material, PublicMaterial)
    assert material.key.public_numbers() == rsa_key.key.public_key().public_numbers()
    out = keyparts.public_attributes(material)
    assert out[A.MODULUS] == attrs[A.MODULUS] and out[A.PUBLIC_EXPONENT] == b"\x01\x00\x01"
    assert keyparts.secret_attributes(material) == {}
    assert keyparts.strip_material(attrs) == attrs


@pytest.mark.parametrize("exponent", [b"\x01\x00\x00", b"\x01"])
def test_rsa_public_bad_exponent(rsa_key: PrivateMaterial, exponent: bytes) -> None:
    template = {**RSA_PUBLIC, A.MODULUS: rsa_parts(rsa_key, A.MODULUS)[A.MODULUS], A.PUBLIC_EXPONENT: exponent}
    assert code(lambda: created(template)) == CKR.ATTRIBUTE_VALUE_INVALID


def test_public_key_info_must_match(rsa_key: PrivateMaterial, ec_keys: dict) -> None:
    parts = rsa_parts(rsa_key, A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT)
    created({**RSA_PRIVATE, **parts, CKA_PUBLIC_KEY_INFO: rsa_key.public().to_bytes()})
    other = ec_keys["secp256r1"].public().to_bytes()
    assert code(lambda: created({**RSA_PRIVATE, **parts, CKA_PUBLIC_KEY_INFO: other})) \
        == CKR.ATTRIBUTE_VALUE_INVALID
    assert code(lambda: created({**RSA_PRIVATE, **parts, CKA_PUBLIC_KEY_INFO: b"junk"})) \
        == CKR.ATTRIBUTE_VALUE_INVALID


# --- EC --------------------------------------------------------------------------------------------------------

def ec_private_template(material: PrivateMaterial, params: bytes, key_type: int = KeyType.EC) -> dict:
    return {A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: key_type, A.EC_PARAMS: params,
            A.VALUE: keyparts.secret_attributes(material)[A.VALUE]}


def ec_public_template(point: bytes, params: bytes, key_type: int = KeyType.EC) -> dict:
    return {A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: key_type, A.EC_PARAMS: params, A.EC_POINT: point}


@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1", "secp521r1", "secp256k1"])
def test_ec_round_trip(ec_keys: dict, curve: str) -> None:
    key = ec_keys[curve]
    params = bytes.fromhex(OID_DER[curve])
    attrs, material = created(ec_private_template(key, params))
    assert material.key.private_numbers() == key.key.private_numbers()
    order_len = (key.key.curve.group_order.bit_length() + 7) // 8
    assert len(keyparts.secret_attributes(material)[A.VALUE]) == order_len  # fixed width
    out = keyparts.public_attributes(material)
    assert out[A.EC_PARAMS] == params and A.EC_POINT not in out
    assert out[CKA_PUBLIC_KEY_INFO] == key.public().to_bytes()
    assert A.VALUE not in keyparts.strip_material(attrs) and A.EC_PARAMS in keyparts.strip_material(attrs)

    public_out = keyparts.public_attributes(material.public())
    point = key.key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
    assert public_out[A.EC_POINT] == octets(point)
    for given in (public_out[A.EC_POINT], point):  # DER OCTET STRING (spec) or bare point
        _, public = created(ec_public_template(given, params))
        assert public.key.public_numbers() == key.key.public_key().public_numbers()
    compressed = key.key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.CompressedPoint)
    _, public = created(ec_public_template(compressed, params))
    assert public.key.public_numbers() == key.key.public_key().public_numbers()


@pytest.mark.parametrize("name,curve", [("prime256v1", "secp256r1"), ("secp256r1", "secp256r1"),
                                        ("P-256", "secp256r1"), ("secp384r1", "secp384r1"),
                                        ("P-521", "secp521r1"), ("secp256k1", "secp256k1")])
def test_ec_params_by_curve_name(ec_keys: dict, name: str, curve: str) -> None:
    assert keyparts.curve_from_params(printable(name)) == curve
    assert keyparts.curve_from_params(bytes.fromhex(OID_DER[curve])) == curve
    _, material = created(ec_private_template(ec_keys[curve], printable(name)))
    assert material.key.curve.name == curve


@pytest.mark.parametrize("params,expected", [
    (bytes.fromhex("06092b2403030208010107"), CKR.CURVE_NOT_SUPPORTED),   # brainpoolP256r1 OID
    (bytes.fromhex("06052b81040001"), CKR.CURVE_NOT_SUPPORTED),           # sect163k1 (binary field)
    (printable("brainpoolP256r1"), CKR.CURVE_NOT_SUPPORTED),
    (b"\x05\x00", CKR.DOMAIN_PARAMS_INVALID),                             # implicitlyCA (NULL)
    (b"\x30\x03\x02\x01\x01", CKR.DOMAIN_PARAMS_INVALID),                  # explicit ecParameters
    (b"garbage", CKR.DOMAIN_PARAMS_INVALID),
    (bytes.fromhex(OID_DER["secp256r1"]) + b"\x00", CKR.DOMAIN_PARAMS_INVALID),
])
def test_unsupported_and_invalid_ec_params(ec_keys: dict, params: bytes, expected: int) -> None:
    assert code(lambda: keyparts.curve_from_params(params)) == expected
    assert code(lambda: created(ec_private_template(ec_keys["secp256r1"], params))) == expected


def test_ec_point_off_the_curve_is_value_invalid(ec_keys: dict) -> None:
    point = bytearray(ec_keys["secp256r1"].key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
    point[-1] ^= 1
    template = ec_public_template(octets(bytes(point)), bytes.fromhex(OID_DER["secp256r1"]))
    assert code(lambda: created(template)) == CKR.ATTRIBUTE_VALUE_INVALID
    short = ec_public_template(b"\x04\x01\x02", bytes.fromhex(OID_DER["secp256r1"]))
    assert code(lambda: created(short)) == CKR.ATTRIBUTE_VALUE_INVALID


def test_ec_private_value_out_of_range(ec_keys: dict) -> None:
    params = bytes.fromhex(OID_DER["secp256r1"])
    for value in (b"\x00", b"\xff" * 32):
        template = {A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.EC, A.EC_PARAMS: params, A.VALUE: value}
        assert code(lambda t=template: created(t)) == CKR.ATTRIBUTE_VALUE_INVALID


def test_curve_of_another_key_type_is_template_inconsistent(ec_keys: dict, raw_keys: dict) -> None:
    ed = ec_private_template(raw_keys["Ed25519"], bytes.fromhex(OID_DER["Ed25519"]), KeyType.EC)
    assert code(lambda: created(ed)) == CKR.TEMPLATE_INCONSISTENT
    p256 = ec_private_template(ec_keys["secp256r1"], bytes.fromhex(OID_DER["secp256r1"]), KeyType.EC_EDWARDS)
    assert code(lambda: created(p256)) == CKR.TEMPLATE_INCONSISTENT
    x = ec_private_template(raw_keys["X25519"], printable("curve25519"), KeyType.EC_EDWARDS)
    assert code(lambda: created(x)) == CKR.TEMPLATE_INCONSISTENT


# --- Edwards and Montgomery -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,name", [("Ed25519", "edwards25519"), ("Ed448", "edwards448"),
                                       ("X25519", "curve25519"), ("X448", "curve448")])
def test_edwards_montgomery_round_trip(raw_keys: dict, kind: str, name: str) -> None:
    key = raw_keys[kind]
    raw_private = key.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    raw_public = key.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for params in (bytes.fromhex(OID_DER[kind]), printable(name)):
        attrs, material = created(ec_private_template(key, params, KEY_TYPE[kind]))
        assert material.kind == kind
        assert keyparts.secret_attributes(material) == {A.VALUE: raw_private}
        assert keyparts.key_type_of(material) == KEY_TYPE[kind]
        assert A.VALUE not in keyparts.strip_material(attrs)
    public_attrs = keyparts.public_attributes(key.public())
    assert public_attrs[A.EC_POINT] == octets(raw_public)
    assert public_attrs[A.EC_PARAMS] == bytes.fromhex(OID_DER[kind])
    assert keyparts.curve_from_params(printable(name)) == kind
    for point in (raw_public, octets(raw_public)):
        _, public = created(ec_public_template(point, printable(name), KEY_TYPE[kind]))
        assert public.kind == kind and public.to_bytes() == key.public().to_bytes()


@pytest.mark.parametrize("kind", ["Ed25519", "X448"])
def test_edwards_montgomery_bad_lengths(raw_keys: dict, kind: str) -> None:
    params = bytes.fromhex(OID_DER[kind])
    private = {A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KEY_TYPE[kind], A.EC_PARAMS: params, A.VALUE: b"\x01" * 5}
    assert code(lambda: created(private)) == CKR.ATTRIBUTE_VALUE_INVALID
    public = ec_public_template(b"\x01" * 5, params, KEY_TYPE[kind])
    assert code(lambda: created(public)) == CKR.ATTRIBUTE_VALUE_INVALID


# --- kinds, key types, other classes ----------------------------------------------------------------------------

def test_key_kind() -> None:
    assert keyparts.key_kind(ObjectClass.SECRET_KEY, KeyType.AES) == "AES"
    assert keyparts.key_kind(ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET) == "GENERIC"
    assert keyparts.key_kind(ObjectClass.SECRET_KEY, KeyType.SHA384_HMAC) == "HMAC"
    assert keyparts.key_kind(ObjectClass.PRIVATE_KEY, KeyType.RSA) == "RSA"
    assert keyparts.key_kind(ObjectClass.PUBLIC_KEY, KeyType.EC) == "EC"
    assert keyparts.key_kind(ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS) == "EC_EDWARDS"
    assert keyparts.key_kind(ObjectClass.PRIVATE_KEY, CKK_EC_MONTGOMERY) == "EC_MONTGOMERY"
    for cls, key_type in ((ObjectClass.SECRET_KEY, KeyType.RSA), (ObjectClass.PRIVATE_KEY, KeyType.AES),
                          (ObjectClass.DATA, KeyType.AES)):
        assert code(lambda c=cls, k=key_type: keyparts.key_kind(c, k)) == CKR.TEMPLATE_INCONSISTENT


def test_key_type_of(rsa_key: PrivateMaterial, ec_keys: dict) -> None:
    assert keyparts.key_type_of(SecretMaterial("AES", bytes(16))) == KeyType.AES
    assert keyparts.key_type_of(SecretMaterial("GENERIC", b"x")) == KeyType.GENERIC_SECRET
    assert keyparts.key_type_of(SecretMaterial("HMAC", b"x"), KeyType.SHA512_HMAC) == KeyType.SHA512_HMAC
    assert keyparts.key_type_of(SecretMaterial("HMAC", b"x"), KeyType.AES) in keyparts.rules.HMAC_KEY_TYPES
    assert keyparts.key_type_of(rsa_key) == KeyType.RSA and keyparts.key_type_of(rsa_key.public()) == KeyType.RSA
    assert keyparts.key_type_of(ec_keys["secp384r1"]) == KeyType.EC
    assert not keyparts.fits(SecretMaterial("AES", bytes(16)), KeyType.DES3)
    assert not keyparts.fits(rsa_key, KeyType.EC)


def test_data_and_certificates_have_no_material() -> None:
    data = new_object({A.CLASS: ObjectClass.DATA, A.VALUE: b"payload"}, Origin.CREATE)
    assert keyparts.material_from_attributes(data) is None
    assert keyparts.strip_material(data)[A.VALUE] == b"payload"
    cert = new_object({A.CLASS: ObjectClass.CERTIFICATE, A.CERTIFICATE_TYPE: CertificateType.X_509,
                       A.SUBJECT: b"\x30\x00", A.VALUE: b"\x30\x00"}, Origin.CREATE)
    assert keyparts.material_from_attributes(cert) is None
    assert keyparts.strip_material(cert)[A.VALUE] == b"\x30\x00"


def test_generated_pair_attributes_fill_in(rsa_key: PrivateMaterial) -> None:
    """The C_GenerateKeyPair path: templates, then the material's public attributes."""
    pub = new_object({A.MODULUS_BITS: 2048}, Origin.GENERATE_PAIR, object_class=ObjectClass.PUBLIC_KEY,
                     key_type=KeyType.RSA)
    filled = {**keyparts.public_attributes(rsa_key.public()), **pub}
    assert filled[A.MODULUS_BITS] == 2048 and len(filled[A.MODULUS]) == 256


def test_ec_public_point_of_other_length_curves(ec_keys: dict) -> None:
    key = ec_keys["secp521r1"]
    point = key.key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    der = keyparts.public_attributes(key.public())[A.EC_POINT]
    assert der[:3] == b"\x04\x81\x85" and der[3:] == point  # long-form DER length
    assert isinstance(key.key.curve, ec.SECP521R1)
