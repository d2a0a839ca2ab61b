"""CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE and the KEM capability attributes, through
the real .so with ctypes (python-pkcs11 has no packer for attribute arrays at these numbers).

The function texts (C_EncapsulateKey / C_DecapsulateKey): the key's template is added to the
caller's; a conflict is CKR_KEY_HANDLE_INVALID when encapsulating, CKR_TEMPLATE_INCONSISTENT when
decapsulating; the new key has CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE FALSE."""

from __future__ import annotations

import ctypes as C

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from pkcs11_shim.attributes import codecs
from pkcs11_shim.constants import CKR
from p11ctypes import P11Failed, ULONG

ML_KEM_768 = 2
TRUE, FALSE = b"\x01", b"\x00"
#: What the KEM key forces on every shared-secret key: a label and "no encryption with it".
FORCED = {Attribute.ENCRYPT: False, Attribute.LABEL: b"kem-made"}


def _pair(raw, raw_session, public: dict | None = None, private: dict | None = None) -> tuple[int, int]:
    pub_t = {Attribute.PARAMETER_SET: ML_KEM_768, Attribute.TOKEN: False, **(public or {})}
    priv_t = {Attribute.TOKEN: False, **(private or {})}
    return raw.generate_pair(raw_session, raw.mechanism(Mechanism.ML_KEM_KEY_PAIR_GEN), pub_t, priv_t)


def _secret(extra: dict | None = None) -> dict:
    return {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE_LEN: 32,
            Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, **(extra or {})}


@pytest.fixture
def templated(raw, raw_session) -> tuple[int, int]:
    return _pair(raw, raw_session, {Attribute.ENCAPSULATE_TEMPLATE: FORCED},
                 {Attribute.DECAPSULATE_TEMPLATE: FORCED})


def test_templates_read_back_as_attribute_arrays(raw, raw_session, templated) -> None:
    pub, priv = templated
    expected = {int(Attribute.ENCRYPT): FALSE, int(Attribute.LABEL): b"kem-made"}
    assert raw.get_template(raw_session, pub, Attribute.ENCAPSULATE_TEMPLATE) == expected
    assert raw.get_template(raw_session, priv, Attribute.DECAPSULATE_TEMPLATE) == expected
    # A key made without one has the empty template (no attributes added).
    plain_pub, _ = _pair(raw, raw_session)
    assert raw.get_template(raw_session, plain_pub, Attribute.ENCAPSULATE_TEMPLATE) == {}


def test_both_sides_apply_the_key_template(raw, raw_session, templated) -> None:
    pub, priv = templated
    mech = raw.mechanism(Mechanism.ML_KEM)
    ciphertext, enc = raw.encapsulate(raw_session, mech, pub, _secret())
    dec = raw.decapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), priv, ciphertext, _secret())
    for handle in (enc, dec):
        assert raw.get(raw_session, handle, Attribute.ENCRYPT) == FALSE
        assert raw.get(raw_session, handle, Attribute.LABEL) == b"kem-made"
        assert raw.get(raw_session, handle, Attribute.DECRYPT) == TRUE  # the token default stays
    assert raw.get(raw_session, enc, Attribute.VALUE) == raw.get(raw_session, dec, Attribute.VALUE)
    # Restating a forced value is no conflict.
    _, again = raw.encapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), pub, _secret({Attribute.ENCRYPT: False}))
    assert raw.get(raw_session, again, Attribute.ENCRYPT) == FALSE


def _count_secret_keys(raw, raw_session) -> int:
    arr, count = raw.template({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: b"kem-made"})
    raw.call("C_FindObjectsInit", ULONG(raw_session), arr, ULONG(count))
    found, handles = ULONG(), (ULONG * 512)()
    raw.call("C_FindObjects", ULONG(raw_session), handles, ULONG(512), C.byref(found))
    raw.call("C_FindObjectsFinal", ULONG(raw_session))
    return found.value


def test_conflicts_are_refused_with_the_codes_the_spec_names(raw, raw_session, templated) -> None:
    pub, priv = templated
    before = _count_secret_keys(raw, raw_session)
    with pytest.raises(P11Failed) as err:
        raw.encapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), pub, _secret({Attribute.ENCRYPT: True}))
    assert err.value.rv == CKR.KEY_HANDLE_INVALID
    ciphertext, _ = raw.encapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), pub, _secret())
    with pytest.raises(P11Failed) as err:
        raw.decapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), priv, ciphertext,
                        _secret({Attribute.LABEL: b"mine"}))
    assert err.value.rv == CKR.TEMPLATE_INCONSISTENT
    assert _count_secret_keys(raw, raw_session) == before + 1  # only the one good encapsulation made a key


def test_templates_are_fixed_once_the_key_exists(raw, raw_session, templated) -> None:
    pub, _ = templated
    arr, count = raw.template({Attribute.ENCAPSULATE_TEMPLATE: {Attribute.ENCRYPT: True}})
    with pytest.raises(P11Failed) as err:
        raw.call("C_SetAttributeValue", ULONG(raw_session), ULONG(pub), arr, ULONG(count))
    assert err.value.rv == CKR.ATTRIBUTE_READ_ONLY


@pytest.mark.parametrize("public, private", [
    ({Attribute.DECAPSULATE_TEMPLATE: {}}, {}),  # the decapsulation template belongs to the private key
    ({}, {Attribute.ENCAPSULATE_TEMPLATE: {}}),
])
def test_each_template_belongs_to_one_half(raw, raw_session, public, private) -> None:
    with pytest.raises(P11Failed) as err:
        _pair(raw, raw_session, public, private)
    assert err.value.rv == CKR.TEMPLATE_INCONSISTENT


def test_encapsulate_needs_encapsulate_attribute(raw, raw_session) -> None:
    pub, _ = _pair(raw, raw_session, {Attribute.ENCAPSULATE: False})
    with pytest.raises(P11Failed) as err:
        raw.encapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), pub, _secret())
    assert err.value.rv == CKR.KEY_FUNCTION_NOT_PERMITTED


def test_capabilities_are_settable(raw, raw_session) -> None:
    pub, priv = _pair(raw, raw_session)
    for handle, attr in ((pub, Attribute.ENCAPSULATE), (priv, Attribute.DECAPSULATE)):
        arr, count = raw.template({attr: False})
        raw.call("C_SetAttributeValue", ULONG(raw_session), ULONG(handle), arr, ULONG(count))
        assert raw.get(raw_session, handle, attr) == FALSE
    with pytest.raises(P11Failed) as err:
        raw.encapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), pub, _secret())
    assert err.value.rv == CKR.KEY_FUNCTION_NOT_PERMITTED


def test_new_keys_are_never_always_sensitive(raw, raw_session) -> None:
    # Even a sensitive, unextractable shared-secret key from a sensitive private key: the function
    # texts set CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE FALSE on both sides.
    pub, priv = _pair(raw, raw_session, private={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    locked = _secret({Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    ciphertext, enc = raw.encapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), pub, locked)
    dec = raw.decapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), priv, ciphertext, locked)
    for handle in (enc, dec):
        assert raw.get(raw_session, handle, Attribute.ALWAYS_SENSITIVE) == FALSE
        assert raw.get(raw_session, handle, Attribute.NEVER_EXTRACTABLE) == FALSE
        assert raw.get(raw_session, handle, Attribute.LOCAL) == FALSE


def test_templates_persist_in_key_blobs() -> None:
    attrs = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ENCAPSULATE_TEMPLATE: {Attribute.ENCRYPT: False}}
    assert codecs.deserialize(codecs.serialize(attrs)) == attrs
