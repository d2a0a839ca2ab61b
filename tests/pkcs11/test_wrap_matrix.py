"""The wrap matrix through the .so: every wrapping mechanism x every wrappable key type, wrapped with
C_WrapKey and unwrapped with C_UnwrapKey under a key whose CKA_UNWRAP_TEMPLATE is applied; plus a
cross-check that a CKM_RSA_AES_KEY_WRAP blob (the `.byok` import format) opens with plain
`cryptography` code and the RSA private key.

Expected refusals are part of the matrix: KW and the RSA paddings wrap secret keys only
(CKR_KEY_NOT_WRAPPABLE for private keys), as PKCS#11 3.0 §2.14.x / §2.1 describe them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import KeyNotWrappable, TemplateInconsistent

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors"))
import p11raw

from pkcs11_shim import constants
from pkcs11_shim.constants import CKR, MGF

CKM_RSA_AES_KEY_WRAP = p11raw.mechanism(constants.CKM_RSA_AES_KEY_WRAP, "RSA_AES_KEY_WRAP")
OID_P256, OID_ED25519 = bytes.fromhex("06082a8648ce3d030107"), bytes.fromhex("06032b6570")
UNWRAP_TEMPLATE = {Attribute.WRAP_WITH_TRUSTED: True}  # python-pkcs11 never sets it itself


def _be(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@pytest.fixture(scope="module")
def wsession(token):
    with token.open(user_pin=USER_PIN, rw=True, attribute_mapper=p11raw.template_mapper()) as s:
        yield s


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _secret(session, key_type, value: bytes, extra: dict | None = None):
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type, Attribute.VALUE: value,
        Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, **(extra or {})})


def _rsa_private(session, key: rsa.RSAPrivateKey, extra: dict | None = None):
    n = key.private_numbers()
    return session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
        Attribute.MODULUS: _be(n.public_numbers.n), Attribute.PUBLIC_EXPONENT: _be(n.public_numbers.e),
        Attribute.PRIVATE_EXPONENT: _be(n.d), Attribute.PRIME_1: _be(n.p), Attribute.PRIME_2: _be(n.q),
        Attribute.EXPONENT_1: _be(n.dmp1), Attribute.EXPONENT_2: _be(n.dmq1), Attribute.COEFFICIENT: _be(n.iqmp),
        Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, **(extra or {})})


def _rsa_public(session, key: rsa.RSAPrivateKey, extra: dict | None = None):
    n = key.public_key().public_numbers()
    return session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
        Attribute.MODULUS: _be(n.n), Attribute.PUBLIC_EXPONENT: _be(n.e), **(extra or {})})


#: target name -> (class, key type, how to make it, the attribute that proves the round trip)
def _targets(session, rsa_target: rsa.RSAPrivateKey) -> dict:
    p256 = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_seed = ed.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption())
    return {
        "aes128": (ObjectClass.SECRET_KEY, KeyType.AES, _secret(session, KeyType.AES, bytes(range(16))),
                   Attribute.VALUE, bytes(range(16))),
        "aes256": (ObjectClass.SECRET_KEY, KeyType.AES, _secret(session, KeyType.AES, bytes(range(32))),
                   Attribute.VALUE, bytes(range(32))),
        "des3": (ObjectClass.SECRET_KEY, KeyType.DES3, _secret(session, KeyType.DES3, bytes(range(1, 25))),
                 Attribute.VALUE, bytes(range(1, 25))),
        "generic": (ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET,
                    _secret(session, KeyType.GENERIC_SECRET, b"g" * 40), Attribute.VALUE, b"g" * 40),
        "rsa": (ObjectClass.PRIVATE_KEY, KeyType.RSA, _rsa_private(session, rsa_target), Attribute.PRIVATE_EXPONENT,
                _be(rsa_target.private_numbers().d)),
        "ec": (ObjectClass.PRIVATE_KEY, KeyType.EC, session.create_object({
            Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC, Attribute.TOKEN: False,
            Attribute.EC_PARAMS: OID_P256, Attribute.VALUE: p256.private_numbers().private_value.to_bytes(32, "big"),
            Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}), Attribute.VALUE,
            p256.private_numbers().private_value.to_bytes(32, "big")),
        "ed25519": (ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS, session.create_object({
            Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.TOKEN: False,
            Attribute.EC_PARAMS: OID_ED25519, Attribute.VALUE: ed_seed, Attribute.SENSITIVE: False,
            Attribute.EXTRACTABLE: True}), Attribute.VALUE, ed_seed),
    }


#: wrapping mechanism -> (kind of wrapping key, parameter, wraps private keys)
MECHANISMS = {
    "AES_KEY_WRAP": (Mechanism.AES_KEY_WRAP, "aes", None, False),
    "AES_KEY_WRAP_PAD": (Mechanism.AES_KEY_WRAP_PAD, "aes", None, True),
    "AES_KEY_WRAP_KWP": (Mechanism.AES_KEY_WRAP_KWP, "aes", None, True),
    "AES_KEY_WRAP_PKCS7": (Mechanism.AES_KEY_WRAP_PKCS7, "aes", None, True),
    "AES_GCM": (Mechanism.AES_GCM, "aes", lambda: p11raw.gcm(bytes(range(12)), b"wrap aad", 128), True),
    "AES_CBC_PAD": (Mechanism.AES_CBC_PAD, "aes", lambda: bytes(range(16)), True),
    "RSA_PKCS": (Mechanism.RSA_PKCS, "rsa", None, False),
    "RSA_PKCS_OAEP": (Mechanism.RSA_PKCS_OAEP, "rsa", lambda: p11raw.oaep(Mechanism.SHA256, MGF.SHA256, b"l"),
                      False),
    "RSA_AES_KEY_WRAP": (CKM_RSA_AES_KEY_WRAP, "rsa",
                         lambda: p11raw.rsa_aes_key_wrap(256, Mechanism.SHA256, MGF.SHA256), True),
}
TARGETS = ("aes128", "aes256", "des3", "generic", "rsa", "ec", "ed25519")


@pytest.fixture(scope="module")
def world(wsession, rsa_key):
    """The wrapping keys (AES-256 and RSA-2048 pairs), each unwrapping key with a CKA_UNWRAP_TEMPLATE,
    and the targets."""
    aes = _secret(wsession, KeyType.AES, bytes(range(100, 132)), {Attribute.WRAP: True, Attribute.UNWRAP: True,
                                                                 Attribute.UNWRAP_TEMPLATE: UNWRAP_TEMPLATE})
    rsa_public = _rsa_public(wsession, rsa_key, {Attribute.WRAP: True})
    rsa_private = _rsa_private(wsession, rsa_key, {Attribute.UNWRAP: True, Attribute.UNWRAP_TEMPLATE: UNWRAP_TEMPLATE})
    keys = {"aes": (aes, aes), "rsa": (rsa_public, rsa_private)}
    return keys, _targets(wsession, rsa.generate_private_key(65537, 2048))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(MECHANISMS))
def test_wrap_unwrap(world, name: str, target: str) -> None:
    keys, targets = world
    mechanism, key_kind, make_param, wraps_private = MECHANISMS[name]
    wrapping, unwrapping = keys[key_kind]
    object_class, key_type, key, proof, value = targets[target]
    param = make_param() if make_param else None
    if object_class == ObjectClass.PRIVATE_KEY and not wraps_private:
        with pytest.raises(KeyNotWrappable):
            wrapping.wrap_key(key, mechanism=mechanism, mechanism_param=param)
        return
    wrapped = wrapping.wrap_key(key, mechanism=mechanism, mechanism_param=param)
    assert value not in wrapped
    template = {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
    if key_type in (KeyType.GENERIC_SECRET,) and name in ("AES_KEY_WRAP",):
        template[Attribute.VALUE_LEN] = len(value)
    if key_type == KeyType.AES and name == "AES_KEY_WRAP":
        template[Attribute.VALUE_LEN] = len(value)
    unwrapped = unwrapping.unwrap_key(object_class, key_type, wrapped, mechanism=mechanism, mechanism_param=param,
                                      template=template)
    assert unwrapped[proof] == value
    assert unwrapped[Attribute.WRAP_WITH_TRUSTED] is True  # CKA_UNWRAP_TEMPLATE applied


def test_unwrap_template_conflict(world) -> None:
    keys, targets = world
    aes, _ = keys["aes"]
    wrapped = aes.wrap_key(targets["aes128"][2], mechanism=Mechanism.AES_KEY_WRAP_KWP)
    # PKCS#11 3.0 §5.18.4: the caller's template may not contradict CKA_UNWRAP_TEMPLATE.
    with pytest.raises(TemplateInconsistent):
        aes.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP_KWP,
                       template={Attribute.TOKEN: False, Attribute.WRAP_WITH_TRUSTED: False})


def test_rsa_aes_key_wrap_opens_with_plain_cryptography(world, rsa_key) -> None:
    """A `.byok`-style blob: RSA-OAEP(SHA-256) of a fresh AES-256 key || KWP(target)."""
    keys, targets = world
    rsa_public, _ = keys["rsa"]
    target = targets["aes256"]
    wrapped = rsa_public.wrap_key(target[2], mechanism=CKM_RSA_AES_KEY_WRAP,
                                  mechanism_param=p11raw.rsa_aes_key_wrap(256, Mechanism.SHA256, MGF.SHA256))
    k = rsa_key.key_size // 8
    aes_key = rsa_key.decrypt(wrapped[:k], padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    assert len(aes_key) == 32
    assert keywrap.aes_key_unwrap_with_padding(aes_key, wrapped[k:]) == target[4]
    # And a private key travels as PKCS#8.
    ec_target = targets["ec"]
    wrapped = rsa_public.wrap_key(ec_target[2], mechanism=CKM_RSA_AES_KEY_WRAP,
                                  mechanism_param=p11raw.rsa_aes_key_wrap(256, Mechanism.SHA256, MGF.SHA256))
    aes_key = rsa_key.decrypt(wrapped[:k], padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    private = serialization.load_der_private_key(keywrap.aes_key_unwrap_with_padding(aes_key, wrapped[k:]), None)
    assert private.private_numbers().private_value.to_bytes(32, "big") == ec_target[4]


def test_wrapping_key_without_cka_wrap_is_refused(wsession, world) -> None:
    _, targets = world
    plain = _secret(wsession, KeyType.AES, bytes(16), {Attribute.WRAP: False})
    with pytest.raises(pkcs11.exceptions.PKCS11Error, match=f"{CKR.KEY_FUNCTION_NOT_PERMITTED:#x}"):
        # python-pkcs11 offers wrap_key only on keys with CKA_WRAP: call the mixin directly.
        pkcs11._pkcs11.WrapMixin.wrap_key(plain, targets["aes128"][2], mechanism=Mechanism.AES_KEY_WRAP_KWP)


def test_spec_error_codes_through_the_so(wsession, world) -> None:
    """PKCS#11 3.0 §5.1 codes the wrap path must return: a mechanism outside CKA_ALLOWED_MECHANISMS
    (CKR_MECHANISM_INVALID), a wrapping key of the wrong type (CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    a bad parameter (CKR_MECHANISM_PARAM_INVALID), a CKA_WRAP_TEMPLATE mismatch (CKR_KEY_HANDLE_INVALID)."""
    keys, targets = world
    target = targets["aes128"][2]
    limited = _secret(wsession, KeyType.AES, bytes(range(16)), {
        Attribute.WRAP: True, Attribute.ALLOWED_MECHANISMS: [Mechanism.AES_KEY_WRAP_KWP]})
    limited.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_KWP)
    with pytest.raises(pkcs11.exceptions.MechanismInvalid):
        limited.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP)
    rsa_public, _ = keys["rsa"]
    with pytest.raises(pkcs11.exceptions.WrappingKeyTypeInconsistent):
        rsa_public.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_KWP)
    aes, _ = keys["aes"]
    with pytest.raises(pkcs11.exceptions.MechanismParamInvalid):
        aes.wrap_key(target, mechanism=Mechanism.AES_GCM, mechanism_param=p11raw.gcm(bytes(4), b"", 128))
    with pytest.raises(pkcs11.exceptions.MechanismParamInvalid):
        aes.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP, mechanism_param=bytes(8))  # not the default IV
    guarded = _secret(wsession, KeyType.AES, bytes(range(32, 48)), {
        Attribute.WRAP: True, Attribute.WRAP_TEMPLATE: {Attribute.KEY_TYPE: KeyType.DES3}})
    guarded.wrap_key(targets["des3"][2], mechanism=Mechanism.AES_KEY_WRAP_KWP)
    with pytest.raises(pkcs11.exceptions.KeyHandleInvalid):
        guarded.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_KWP)
