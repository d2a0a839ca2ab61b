"""Attribute arrays through the client library: the client nests exactly the attributes the module
reads as CK_ATTRIBUTE arrays (the in-process kind table, pkcs11_shim.attributes.codecs), not those
with the CKF_ARRAY_ATTRIBUTE bit. PKCS#11 3.2's CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE
lack the bit, yet are attribute arrays; CKA_ALLOWED_MECHANISMS has it, yet is an
array of CK_MECHANISM_TYPE. The in-process version of the KEM checks is tests/pqc/test_kem_templates.py."""

from __future__ import annotations

import ctypes
import os

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hsenv import CLIENT_SO, USER_PIN
from p11ctypes import P11Failed, Raw, RawClient

from pkcs11_shim.client_build import nested_attributes  # noqa: E402
from pkcs11_shim.constants import CKR  # noqa: E402

ML_KEM_768 = 2
TRUE, FALSE = b"\x01", b"\x00"
FORCED = {Attribute.ENCRYPT: False, Attribute.LABEL: b"kem-made"}


@pytest.fixture(scope="module")
def raw(server):
    os.environ["SOFTSHIELD_HARDSERVER"] = str(server.socket)
    os.environ["SOFTSHIELD_HARDSERVER_TIMEOUT"] = "20"
    client = Raw(str(CLIENT_SO))
    yield client
    client.lib.C_Finalize(None)


@pytest.fixture(scope="module")
def session(raw, token) -> int:
    return raw.open_session(RawClient().slot_of(token), USER_PIN)


def _secret(extra: dict | None = None) -> dict:
    return {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE_LEN: 32,
            Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, **(extra or {})}


def test_nested_list_is_the_kind_table() -> None:
    nested = set(nested_attributes())
    assert {Attribute.ENCAPSULATE_TEMPLATE, Attribute.DECAPSULATE_TEMPLATE, Attribute.WRAP_TEMPLATE,
            Attribute.UNWRAP_TEMPLATE, Attribute.DERIVE_TEMPLATE} == nested
    assert Attribute.ALLOWED_MECHANISMS not in nested


def test_ml_kem_pair_with_key_templates_through_the_client(raw, session) -> None:
    pub, priv = raw.generate_pair(
        session, raw.mechanism(Mechanism.ML_KEM_KEY_PAIR_GEN),
        {Attribute.PARAMETER_SET: ML_KEM_768, Attribute.TOKEN: False, Attribute.ENCAPSULATE_TEMPLATE: FORCED},
        {Attribute.TOKEN: False, Attribute.DECAPSULATE_TEMPLATE: FORCED})
    expected = {int(Attribute.ENCRYPT): FALSE, int(Attribute.LABEL): b"kem-made"}
    # Read back across the socket: the nested types, lengths and values.
    assert raw.get_template(session, priv, Attribute.DECAPSULATE_TEMPLATE) == expected
    assert raw.get_template(session, pub, Attribute.ENCAPSULATE_TEMPLATE) == expected

    ciphertext, enc = raw.encapsulate(session, raw.mechanism(Mechanism.ML_KEM), pub, _secret())
    dec = raw.decapsulate(session, raw.mechanism(Mechanism.ML_KEM), priv, ciphertext, _secret())
    for handle in (enc, dec):  # both sides applied the key's template
        assert raw.get(session, handle, Attribute.ENCRYPT) == FALSE
        assert raw.get(session, handle, Attribute.LABEL) == b"kem-made"
        assert raw.get(session, handle, Attribute.DECRYPT) == TRUE
    assert raw.get(session, enc, Attribute.VALUE) == raw.get(session, dec, Attribute.VALUE)
    # A conflict with the decapsulation template: the code C_DecapsulateKey's text names.
    with pytest.raises(P11Failed) as err:
        raw.decapsulate(session, raw.mechanism(Mechanism.ML_KEM), priv, ciphertext, _secret({Attribute.ENCRYPT: True}))
    assert err.value.rv == CKR.TEMPLATE_INCONSISTENT


def test_allowed_mechanisms_travel_as_a_mechanism_list(raw, session) -> None:
    allowed = [Mechanism.AES_CBC_PAD, Mechanism.AES_KEY_WRAP_PAD]
    value = b"".join(int(m).to_bytes(ctypes.sizeof(ctypes.c_ulong), "little") for m in allowed)
    key = raw.create(session, {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                               Attribute.TOKEN: False, Attribute.VALUE: bytes(32), Attribute.ALLOWED_MECHANISMS: value})
    assert raw.get(session, key, Attribute.ALLOWED_MECHANISMS) == value
