"""Templates as real clients build them: python-pkcs11 packs the values (its AttributeMapper and its
util decoders), we decode them and make objects, then persist and read back the way the shim does."""

from __future__ import annotations

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11.attributes import AttributeMapper
from pkcs11.constants import MechanismFlag
from pkcs11.util import ec as p11_ec
from pkcs11.util import rsa as p11_rsa
from pkcs11.util import x509 as p11_x509

from emulator.crypto import components
from emulator.crypto.components import InconsistentComponents, UnsupportedCurve
from emulator.crypto.material import PrivateMaterial, SecretMaterial
from emulator.errors import InvalidKeyMaterial
from pkcs11_shim.attributes import codecs, keyparts, templates
from pkcs11_shim.attributes.templates import Origin
from pkcs11_shim.constants import Attribute as A
from pkcs11_shim.constants import KeyType, Mechanism, ObjectClass

MAPPER = AttributeMapper()


def raw_template(template: dict) -> list[tuple[int, bytes]]:
    """What `abi.marshal.read_template` hands us for a python-pkcs11 template."""
    return [(int(attr), MAPPER.pack_attribute(attr, value)) for attr, value in template.items()
            if value is not None]


def create(template: dict) -> tuple[dict, object]:
    """management.create_object's path: decode, new_object, material, stored attributes."""
    attrs = templates.new_object(codecs.decode_template(raw_template(template)), Origin.CREATE)
    material = keyparts.material_from_attributes(attrs)
    stored = keyparts.strip_material(attrs)
    if material is not None:
        for attr, value in keyparts.public_attributes(material).items():
            stored.setdefault(attr, value)
    return codecs.deserialize(codecs.serialize(stored)), material


def test_python_pkcs11_generate_key_template() -> None:
    template = MAPPER.secret_key_template(capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                                          id_=b"id", label="aes", store=True)
    template[A.VALUE_LEN] = 32
    attrs = templates.new_object(codecs.decode_template(raw_template(template)), Origin.GENERATE,
                                 object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                                 mechanism=Mechanism.AES_KEY_GEN)
    assert attrs[A.SENSITIVE] is True and attrs[A.ALWAYS_SENSITIVE] is True and attrs[A.LOCAL] is True
    assert attrs[A.SIGN] is False and attrs[A.LABEL] == "aes" and attrs[A.TOKEN] is True


def test_python_pkcs11_rsa_private_key_import(rsa_key: PrivateMaterial) -> None:
    der = rsa_key.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    stored, material = create(p11_rsa.decode_rsa_private_key(der))
    assert material.key.private_numbers() == rsa_key.key.private_numbers()
    assert A.PRIVATE_EXPONENT not in stored and stored[A.MODULUS_BITS] == 2048
    assert stored[A.SIGN] is True and stored[A.LOCAL] is False


def test_python_pkcs11_rsa_public_key_import(rsa_key: PrivateMaterial) -> None:
    der = rsa_key.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    stored, _ = create(p11_rsa.decode_rsa_public_key(der))
    assert p11_rsa.encode_rsa_public_key(stored) == der


@pytest.mark.parametrize("curve", ["secp256r1", "secp384r1", "secp521r1"])
def test_python_pkcs11_ec_import(ec_keys: dict, curve: str) -> None:
    key = ec_keys[curve]
    private_der = key.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
    stored, material = create(p11_ec.decode_ec_private_key(private_der))
    assert material.key.private_numbers() == key.key.private_numbers()
    assert A.VALUE not in stored
    public_der = key.public().to_bytes()
    stored, material = create(p11_ec.decode_ec_public_key(public_der))
    assert p11_ec.encode_ec_public_key(stored) == public_der


def test_python_pkcs11_certificate_import() -> None:
    pem = cryptography_vectors.open_vector_file("x509/cryptography.io.pem", "rb").read()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    stored, material = create(p11_x509.decode_x509_certificate(der, extended_set=True))
    assert material is None and stored[A.VALUE] == der and stored[A.PRIVATE] is False
    assert len(stored[A.START_DATE]) == 8 and stored[A.START_DATE].isdigit()
    key_stored, _ = create(p11_x509.decode_x509_public_key(der))
    assert key_stored[A.CLASS] == ObjectClass.PUBLIC_KEY


def test_round_trip_through_get_attribute_value(rsa_key: PrivateMaterial) -> None:
    """management.attribute_value: stored attributes first, secret components only when readable."""
    der = rsa_key.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    template = {**p11_rsa.decode_rsa_private_key(der), A.SENSITIVE: True}
    stored, material = create(template)
    assert not templates.readable(stored, A.PRIVATE_EXPONENT)
    open_key, material = create({**template, A.SENSITIVE: False, A.EXTRACTABLE: True})
    assert templates.readable(open_key, A.PRIVATE_EXPONENT)
    assert keyparts.secret_attributes(material)[A.PRIVATE_EXPONENT] == template[A.PRIVATE_EXPONENT]


# --- emulator.crypto.components directly ----------------------------------------------------------

def test_components_curve_params_round_trip() -> None:
    for curve in ("secp256r1", "secp384r1", "secp521r1", "secp256k1", "Ed25519", "Ed448", "X25519", "X448"):
        assert components.curve_from_params(components.curve_params(curve)) == curve
    with pytest.raises(UnsupportedCurve):
        components.curve_params("brainpoolP256r1")


def test_components_errors(rsa_key: PrivateMaterial) -> None:
    numbers = rsa_key.key.private_numbers()
    with pytest.raises(InconsistentComponents):
        components.rsa_private_key(n=numbers.public_numbers.n, e=3, d=numbers.d)
    with pytest.raises(InvalidKeyMaterial):
        components.rsa_private_key(n=numbers.public_numbers.n, e=numbers.public_numbers.e, d=0)
    with pytest.raises(InconsistentComponents):
        components.rsa_private_key(n=numbers.public_numbers.n, e=numbers.public_numbers.e, d=numbers.d, p=3)
    with pytest.raises(InvalidKeyMaterial):
        components.raw_private_key("Ed25519", b"short")
    with pytest.raises(UnsupportedCurve):
        components.raw_private_key("Ed9999", bytes(32))


def test_components_rsa_numbers(rsa_key: PrivateMaterial) -> None:
    parts = components.rsa_components(rsa_key)
    rebuilt = components.rsa_private_key(n=parts.n, e=parts.e, d=parts.d, p=parts.p, q=parts.q,
                                         dmp1=parts.dmp1, dmq1=parts.dmq1, iqmp=parts.iqmp)
    assert rebuilt.key.private_numbers() == rsa_key.key.private_numbers()
    public = components.rsa_components(rsa_key.public())
    assert public.d is None and public.n == parts.n


def test_components_same_public_key(rsa_key: PrivateMaterial, ec_keys: dict) -> None:
    assert components.same_public_key(rsa_key, rsa_key.public().to_bytes())
    assert not components.same_public_key(rsa_key, ec_keys["secp256r1"].public().to_bytes())
    assert not components.same_public_key(rsa_key, b"\x30\x00")


def test_components_check_value_kinds() -> None:
    for kind, value in (("AES", bytes(32)), ("DES3", bytes(range(24))), ("GENERIC", b"g"), ("HMAC", b"h")):
        assert len(components.check_value(SecretMaterial(kind, value))) == 3
