"""Secure defaults and the key-management rules external suites check, through the real .so:

- CKA_EXTRACTABLE defaults to FALSE for every way a key is made (generate, pair, create, unwrap,
  derive); a CKA_SENSITIVE DES3 key made without it cannot be wrapped out (the Tookan attacks);
  generated keys that never were extractable say CKA_NEVER_EXTRACTABLE (PKCS#11 3.0 §4.10 table);
- CKA_KEY_GEN_MECHANISM is read-only;
- CKA_DERIVE_TEMPLATE is applied to every derived key; CKA_ALLOWED_MECHANISMS is enforced exactly
  as C_GetAttributeValue reports it (an empty array allows nothing);
- a derivation base of a type the mechanism does not take is CKR_KEY_TYPE_INCONSISTENT, before the
  parameter is looked at;
- CKM_HKDF_KEY_GEN keys derive with CKM_HKDF_DERIVE, and a generic secret derives (RFC 5869 A.1);
- C_GenerateKey's and C_SetOperationState's argument checks come before the mechanism.
"""

from __future__ import annotations

import sys
from ctypes import byref
from pathlib import Path

import pkcs11
import pytest
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as exc

from pkcs11_shim import constants
from pkcs11_shim.constants import CKR, MGF

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors"))
import p11ctypes as ck  # noqa: E402
import p11raw  # noqa: E402
import vectorfiles  # noqa: E402

CKM_HKDF_KEY_GEN = p11raw.mechanism(constants.CKM_HKDF_KEY_GEN, "HKDF_KEY_GEN")
CKM_HKDF_DERIVE = p11raw.mechanism(constants.CKM_HKDF_DERIVE, "HKDF_DERIVE")
CKK_HKDF = p11raw.key_type(constants.CKK_HKDF, "HKDF")


@pytest.fixture(scope="module")
def rsession(token):
    mapper = p11raw.template_mapper()
    _register_derive_template(mapper)
    with token.open(user_pin=USER_PIN, rw=True, attribute_mapper=mapper) as s:
        yield s


def _des3_tookan_target(session):
    """The key the Tookan attacks go after: sensitive, and nothing said about extractability."""
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.DES3, Attribute.TOKEN: False,
        Attribute.VALUE: bytes.fromhex("0123456789abcdeffedcba987654321089abcdef01234567"),
        Attribute.SENSITIVE: True})


# --- 1. CKA_EXTRACTABLE defaults to FALSE --------------------------------------------------------

def test_tookan_sensitive_des3_key_cannot_be_wrapped_out(rsession) -> None:
    target = _des3_tookan_target(rsession)
    assert target[Attribute.EXTRACTABLE] is False
    # The attacker's own wrapping keys: an RSA key pair (public half wraps) and an AES key.
    public, _private = rsession.generate_keypair(KeyType.RSA, 2048, store=False)
    aes = rsession.generate_key(KeyType.AES, 128, store=False, template={Attribute.WRAP: True})
    with pytest.raises(exc.KeyUnextractable):
        public.wrap_key(target, mechanism=Mechanism.RSA_PKCS)
    with pytest.raises(exc.KeyUnextractable):
        aes.wrap_key(target, mechanism=Mechanism.AES_ECB)
    # Its value stays inside too (§4.10 footnote 7).
    with pytest.raises(exc.AttributeSensitive):
        target[Attribute.VALUE]


def test_an_explicitly_extractable_key_still_wraps(rsession) -> None:
    target = rsession.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.DES3, Attribute.TOKEN: False,
        Attribute.VALUE: bytes(range(24)), Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True})
    public, private = rsession.generate_keypair(KeyType.RSA, 2048, store=False)
    wrapped = public.wrap_key(target, mechanism=Mechanism.RSA_PKCS)
    copy = private.unwrap_key(ObjectClass.SECRET_KEY, KeyType.DES3, wrapped, mechanism=Mechanism.RSA_PKCS,
                              store=False, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert copy[Attribute.VALUE] == bytes(range(24))


def test_every_way_of_making_a_key_defaults_to_unextractable(rsession) -> None:
    generated = rsession.generate_key(KeyType.AES, 128, store=False)
    public, private = rsession.generate_keypair(KeyType.EC, store=False, public_template={
        Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")})
    created = rsession.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                      Attribute.VALUE: bytes(16), Attribute.TOKEN: False})
    kek = rsession.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True, Attribute.UNWRAP: True})
    open_key = rsession.generate_key(KeyType.AES, 128, store=False, template={Attribute.EXTRACTABLE: True})
    unwrapped = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, kek.wrap_key(open_key), store=False)
    base = rsession.generate_key(KeyType.GENERIC_SECRET, 256, store=False, template={Attribute.DERIVE: True})
    derived = base.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.CONCATENATE_BASE_AND_DATA,
                              mechanism_param=p11raw.derivation_string(b"data"), store=False)
    for key in (generated, private, created, unwrapped, derived):
        assert key[Attribute.EXTRACTABLE] is False, key
    # Generated keys that never were extractable say so; the ALWAYS_SENSITIVE flag follows CKA_SENSITIVE
    # at generation (python-pkcs11 asks for sensitive keys).
    for key in (generated, private):
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is key[Attribute.SENSITIVE] is True
    assert open_key[Attribute.NEVER_EXTRACTABLE] is False
    for key in (created, unwrapped):  # have been outside the token
        assert key[Attribute.NEVER_EXTRACTABLE] is False and key[Attribute.ALWAYS_SENSITIVE] is False
    # Derived: the base's NEVER_EXTRACTABLE AND the new key's unextractability (§4.10).
    assert derived[Attribute.NEVER_EXTRACTABLE] is True


# --- 2. CKA_KEY_GEN_MECHANISM is read-only -------------------------------------------------------

@pytest.mark.parametrize("value", [Mechanism.AES_KEY_GEN, Mechanism.GENERIC_SECRET_KEY_GEN])
def test_key_gen_mechanism_is_read_only(rsession, value) -> None:
    key = rsession.generate_key(KeyType.AES, 128, store=False)
    assert key[Attribute.KEY_GEN_MECHANISM] == Mechanism.AES_KEY_GEN
    with pytest.raises(exc.AttributeReadOnly):
        key[Attribute.KEY_GEN_MECHANISM] = value
    assert key[Attribute.KEY_GEN_MECHANISM] == Mechanism.AES_KEY_GEN


# --- 3. CKA_DERIVE_TEMPLATE and CKA_ALLOWED_MECHANISMS -------------------------------------------

def _derive_template_base(session, template: dict) -> pkcs11.SecretKey:
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET, Attribute.TOKEN: False,
        Attribute.VALUE: bytes(range(32)), Attribute.DERIVE: True, Attribute.DERIVE_TEMPLATE: template})


def _ecdh_pair(session, derive_template: dict | None):
    params = bytes.fromhex("06082a8648ce3d030107")
    private_template = {Attribute.DERIVE: True}
    if derive_template is not None:
        private_template[Attribute.DERIVE_TEMPLATE] = derive_template
    return session.generate_keypair(KeyType.EC, store=False, public_template={Attribute.EC_PARAMS: params},
                                    private_template=private_template)


def _register_derive_template(mapper) -> None:
    array_pack = ck.CK_ATTRIBUTE

    def pack(template: dict) -> bytes:
        array = (array_pack * len(template))()
        for i, (attr, value) in enumerate(template.items()):
            raw = mapper.pack_attribute(attr, value)
            array[i] = array_pack(int(attr), p11raw.buf(raw), len(raw))
        p11raw._KEEP.append(array)
        return bytes(array)

    mapper.register_handler(Attribute.DERIVE_TEMPLATE, pack, bytes)


# python-pkcs11 sends every usage flag and an empty label itself; CKA_WRAP_WITH_TRUSTED it never sends.
DERIVE_TEMPLATE = {Attribute.ENCRYPT: False, Attribute.WRAP_WITH_TRUSTED: True}


def test_derive_template_applies_to_generic_derivations(rsession) -> None:
    base = _derive_template_base(rsession, DERIVE_TEMPLATE)
    derived = base.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.CONCATENATE_BASE_AND_DATA,
                              mechanism_param=p11raw.derivation_string(b"x"), store=False,
                              capabilities=pkcs11.MechanismFlag.SIGN)
    assert derived[Attribute.ENCRYPT] is False and derived[Attribute.WRAP_WITH_TRUSTED] is True
    with pytest.raises(exc.TemplateInconsistent):
        base.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.CONCATENATE_BASE_AND_DATA,
                        mechanism_param=p11raw.derivation_string(b"x"), store=False,
                        template={Attribute.ENCRYPT: True})


def test_derive_template_applies_to_ecdh(rsession) -> None:
    ours_public, ours = _ecdh_pair(rsession, DERIVE_TEMPLATE)
    theirs_public, _theirs = _ecdh_pair(rsession, None)
    point = theirs_public[Attribute.EC_POINT]
    param = (pkcs11.KDF.NULL, None, point)
    derived = ours.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE, mechanism_param=param,
                              store=False, capabilities=pkcs11.MechanismFlag.SIGN)
    assert derived[Attribute.ENCRYPT] is False and derived[Attribute.WRAP_WITH_TRUSTED] is True
    with pytest.raises(exc.TemplateInconsistent):
        ours.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE, mechanism_param=param,
                        store=False, template={Attribute.WRAP_WITH_TRUSTED: False})


def test_allowed_mechanisms_enforced_as_reported(rsession) -> None:
    def aes(allowed):
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: bytes(16), Attribute.TOKEN: False}
        if allowed is not None:
            template[Attribute.ALLOWED_MECHANISMS] = allowed
        return rsession.create_object(template)

    data = bytes(16)
    nothing = aes([])
    assert nothing[Attribute.ALLOWED_MECHANISMS] == b""  # reported: no mechanism
    for mechanism in (Mechanism.AES_ECB, Mechanism.AES_CBC):
        with pytest.raises(exc.MechanismInvalid):
            nothing.encrypt(data, mechanism=mechanism, mechanism_param=bytes(16) if mechanism == Mechanism.AES_CBC
                            else None)
    ecb_only = aes([Mechanism.AES_ECB])
    assert ecb_only[Attribute.ALLOWED_MECHANISMS] == bytes(p11raw.ULONG(Mechanism.AES_ECB))
    assert len(ecb_only.encrypt(data, mechanism=Mechanism.AES_ECB)) == 16
    with pytest.raises(exc.MechanismInvalid):
        ecb_only.encrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=bytes(16))
    # Made without the attribute: no restriction, and none reported (an empty array would say "none").
    free = aes(None)
    with pytest.raises(exc.AttributeTypeInvalid):
        free[Attribute.ALLOWED_MECHANISMS]
    assert len(free.encrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=bytes(16))) == 16


# --- 4. derivation base key types ----------------------------------------------------------------

SIMPLE_DERIVATIONS = [Mechanism.CONCATENATE_BASE_AND_DATA, Mechanism.CONCATENATE_DATA_AND_BASE,
                      Mechanism.XOR_BASE_AND_DATA, Mechanism.EXTRACT_KEY_FROM_KEY,
                      Mechanism.CONCATENATE_BASE_AND_KEY]


@pytest.fixture(scope="module")
def wrong_bases(rsession):
    p256 = bytes.fromhex("06082a8648ce3d030107")
    ec_public, ec = rsession.generate_keypair(KeyType.EC, store=False, private_template={Attribute.DERIVE: True},
                                              public_template={Attribute.EC_PARAMS: p256})
    _pub, rsa = rsession.generate_keypair(KeyType.RSA, 2048, store=False, private_template={Attribute.DERIVE: True})
    ec_public_derive = rsession.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC, Attribute.TOKEN: False,
        Attribute.EC_PARAMS: p256, Attribute.EC_POINT: ec_public[Attribute.EC_POINT], Attribute.DERIVE: True})
    return {"EC private": ec, "RSA private": rsa, "EC public": ec_public_derive}


@pytest.mark.parametrize("mechanism", SIMPLE_DERIVATIONS, ids=lambda m: m.name)
@pytest.mark.parametrize("param", ["good", "bad"])
def test_wrong_base_type_before_parameter(wrong_bases, mechanism, param) -> None:
    good = {Mechanism.EXTRACT_KEY_FROM_KEY: p11raw.ulong(0), Mechanism.CONCATENATE_BASE_AND_KEY: p11raw.ulong(1)}.get(
        mechanism, p11raw.derivation_string(b"data"))
    mechanism_param = good if param == "good" else b"\x00"  # too short for any of these structures
    for name, base in wrong_bases.items():
        with pytest.raises(exc.KeyTypeInconsistent):
            base.derive_key(KeyType.GENERIC_SECRET, 64, mechanism=mechanism, mechanism_param=mechanism_param,
                            store=False)


def test_ecdh_with_a_secret_base_is_key_type_inconsistent(rsession) -> None:
    base = rsession.generate_key(KeyType.GENERIC_SECRET, 256, store=False, template={Attribute.DERIVE: True})
    with pytest.raises(exc.KeyTypeInconsistent):
        base.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE,
                        mechanism_param=b"\x00", store=False)


# --- 5. CKM_RSA_PKCS decryption of a malformed block (tests/mechanisms/test_rsa_pkcs_decrypt.py) -----

def test_rsa_pkcs_malformed_block_is_implicitly_rejected(rsession) -> None:
    """C_Decrypt(CKM_RSA_PKCS) of a block without a zero separator answers CKR_OK with a synthetic
    message, the same one every time (implicit rejection, docs/mechanisms.md)."""
    public, private = rsession.generate_keypair(KeyType.RSA, 2048, store=False)
    n, e = int.from_bytes(public[Attribute.MODULUS], "big"), int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
    em = b"\x00\x02" + b"\x01" * 253 + b"\x07"  # no 0x00 after the padding string
    malformed = pow(int.from_bytes(em, "big"), e, n).to_bytes(256, "big")
    first = private.decrypt(malformed, mechanism=Mechanism.RSA_PKCS)
    assert private.decrypt(malformed, mechanism=Mechanism.RSA_PKCS) == first
    message = b"the real message"
    assert private.decrypt(public.encrypt(message, mechanism=Mechanism.RSA_PKCS), mechanism=Mechanism.RSA_PKCS) \
        == message


# --- 6. OAEP parameters the primitive cannot do ------------------------------------------------

@pytest.mark.parametrize("hash_alg,mgf", [(Mechanism.SHA3_256, MGF.SHA3_224), (Mechanism.SHA256, MGF.SHA3_256),
                                          (constants.CKM_SHA512_224, MGF.SHA1)],
                         ids=["SHA3-256", "MGF1-SHA3-256", "SHA-512/224"])
def test_oaep_unsupported_hash_refused_at_init_without_traceback(rsession, capfd, hash_alg, mgf) -> None:
    """C_EncryptInit / C_DecryptInit / C_WrapKey with an OAEP hash `cryptography` lacks answer
    CKR_MECHANISM_PARAM_INVALID; nothing reaches C_Encrypt to become CKR_GENERAL_ERROR and a
    traceback on stderr."""
    public, private = rsession.generate_keypair(KeyType.RSA, 2048, store=False)
    param = p11raw.oaep(hash_alg, mgf)
    with pytest.raises(exc.MechanismParamInvalid):
        public.encrypt(b"data", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    with pytest.raises(exc.MechanismParamInvalid):
        private.decrypt(bytes(256), mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    target = rsession.generate_key(KeyType.AES, 128, store=False, template={Attribute.EXTRACTABLE: True})
    with pytest.raises(exc.MechanismParamInvalid):
        public.wrap_key(target, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    assert "Traceback" not in capfd.readouterr().err


# --- 10. HKDF ------------------------------------------------------------------------------------

def _rfc5869_case_1() -> dict:
    return vectorfiles.nist_records("KDF/rfc-5869-HKDF-SHA256.txt", "COUNT")[0]


def test_hkdf_derive_of_a_generic_secret_rfc5869(rsession) -> None:
    case = _rfc5869_case_1()
    ikm = rsession.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET, Attribute.TOKEN: False,
        Attribute.VALUE: bytes.fromhex(case["IKM"]), Attribute.DERIVE: True})
    param = p11raw.hkdf(True, True, Mechanism.SHA256, constants.CKF_HKDF_SALT_DATA, salt=bytes.fromhex(case["salt"]),
                        info=bytes.fromhex(case["info"]))
    okm = ikm.derive_key(KeyType.GENERIC_SECRET, 8 * int(case["L"]), mechanism=CKM_HKDF_DERIVE,
                         mechanism_param=param, store=False,
                         template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert okm[Attribute.VALUE] == bytes.fromhex(case["OKM"])
    assert okm[Attribute.VALUE_LEN] == int(case["L"])


def test_hkdf_key_gen_key_derives(rsession) -> None:
    case = _rfc5869_case_1()
    base = rsession.generate_key(CKK_HKDF, 256, mechanism=CKM_HKDF_KEY_GEN, store=False,
                                 capabilities=pkcs11.MechanismFlag.DERIVE)
    assert base[Attribute.KEY_TYPE] == CKK_HKDF and base[Attribute.VALUE_LEN] == 32
    param = p11raw.hkdf(True, True, Mechanism.SHA256, constants.CKF_HKDF_SALT_DATA, salt=bytes.fromhex(case["salt"]),
                        info=b"ctx")
    for key_type, bits in ((KeyType.GENERIC_SECRET, 8 * 42), (KeyType.AES, 256), (CKK_HKDF, 256)):
        derived = base.derive_key(key_type, bits, mechanism=CKM_HKDF_DERIVE, mechanism_param=param, store=False,
                                  capabilities=pkcs11.MechanismFlag.SIGN)
        assert derived[Attribute.VALUE_LEN] == bits // 8 and derived[Attribute.KEY_TYPE] == key_type


# --- 13. argument checks before the mechanism ----------------------------------------------------

@pytest.fixture(scope="module")
def raw_session(token):
    lib = ck.load()
    ck.raw(lib, "C_Initialize", None)  # already initialised by python-pkcs11: CKR_CRYPTOKI_ALREADY_INITIALIZED
    client = ck.Client(lib)
    handle = client.open(token.slot.slot_id)  # python-pkcs11's session has logged the token in
    yield lib, handle
    client.close(handle)


@pytest.mark.parametrize("mechanism", [Mechanism.AES_KEY_GEN, 0x80001234, Mechanism.PKCS5_PBKD2, CKM_HKDF_KEY_GEN])
def test_generate_key_argument_checks_come_first(raw_session, mechanism) -> None:
    lib, handle = raw_session
    mech, _keep = ck.mechanism(int(mechanism))
    template = ck.Template([(Attribute.VALUE_LEN, 16)])
    obj = ck.CK_ULONG(0)
    assert ck.raw(lib, "C_GenerateKey", ck.CK_ULONG(handle), byref(mech), None, ck.CK_ULONG(2), byref(obj)) \
        == CKR.ARGUMENTS_BAD
    assert ck.raw(lib, "C_GenerateKey", ck.CK_ULONG(handle), byref(mech), template.array,
                  ck.CK_ULONG(template.count), None) == CKR.ARGUMENTS_BAD


def test_set_operation_state_null_is_arguments_bad(raw_session) -> None:
    lib, handle = raw_session
    assert ck.raw(lib, "C_SetOperationState", ck.CK_ULONG(handle), None, ck.CK_ULONG(0), ck.CK_ULONG(0),
                  ck.CK_ULONG(0)) == CKR.ARGUMENTS_BAD
