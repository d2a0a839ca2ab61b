"""The PKCS#11 3.2 functions beyond KEMs, through the real .so: C_VerifySignature* for every kind of
signature mechanism, C_GetSessionValidationFlags, the asynchronous calls of a synchronous token, and
C_WrapKeyAuthenticated / C_UnwrapKeyAuthenticated with CKM_AES_GCM."""

from __future__ import annotations

import ctypes as C
import os

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import MLDSAParameterSet
from pkcs11.util.ec import encode_named_curve_parameters

from pkcs11_shim.constants import CKF_ASYNC_SESSION, CKR, CKS_LAST_VALIDATION_OK, MGF, SessionFlag
from p11ctypes import CK_RSA_PKCS_PSS_PARAMS, P11Failed, ULONG, buffer

DATA = b"verify me with the signature given first" * 3


def _keys(session, kind: str):
    """(signing key, verifying key, mechanism) of one family."""
    if kind == "rsa":
        pub, priv = session.generate_keypair(KeyType.RSA, 2048)
        return priv, pub, Mechanism.SHA256_RSA_PKCS_PSS
    if kind == "ecdsa":
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        pub, priv = params.generate_keypair()
        return priv, pub, Mechanism.ECDSA_SHA256
    if kind == "eddsa":
        params = session.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")}, local=True)
        pub, priv = params.generate_keypair(mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN)
        return priv, pub, Mechanism.EDDSA
    if kind == "hmac":
        key = session.generate_key(KeyType.GENERIC_SECRET, 256, template={Attribute.SIGN: True, Attribute.VERIFY: True})
        return key, key, Mechanism.SHA256_HMAC
    pub, priv = session.generate_keypair(KeyType.ML_DSA, public_template={Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_87})
    return priv, pub, Mechanism.ML_DSA


@pytest.mark.parametrize("kind", ["rsa", "ecdsa", "eddsa", "hmac", "mldsa"])
def test_verify_signature_every_family(session, raw, raw_session, kind) -> None:
    signer, verifier, mechanism = _keys(session, kind)
    sig = raw.sign(raw_session, raw.mechanism(mechanism, _pss() if kind == "rsa" else None), signer.handle, DATA)
    mech = lambda: raw.mechanism(mechanism, _pss() if kind == "rsa" else None)  # noqa: E731
    assert raw.verify_signature(raw_session, mech(), verifier.handle, sig, data=DATA) == CKR.OK
    assert raw.verify_signature(raw_session, mech(), verifier.handle, sig, parts=[DATA[:5], DATA[5:]]) == CKR.OK
    assert raw.verify_signature(raw_session, mech(), verifier.handle, sig, data=DATA[:-1]) == CKR.SIGNATURE_INVALID
    assert raw.verify_signature(raw_session, mech(), verifier.handle, sig[:-1], data=DATA) == CKR.SIGNATURE_LEN_RANGE
    # The operation ended with each result: a further call finds none.
    with pytest.raises(P11Failed) as err:
        raw.call("C_VerifySignatureFinal", ULONG(raw_session))
    assert err.value.rv == CKR.OPERATION_NOT_INITIALIZED


def _pss() -> CK_RSA_PKCS_PSS_PARAMS:
    return CK_RSA_PKCS_PSS_PARAMS(Mechanism.SHA256, MGF.SHA256, 32)


def test_verify_signature_runs_beside_verify(session, raw, raw_session) -> None:
    """C_VerifySignatureInit is an operation of its own: a C_VerifyInit operation may be active."""
    signer, verifier, mechanism = _keys(session, "mldsa")
    sig = signer.sign(DATA, mechanism=mechanism)
    raw.call("C_VerifyInit", ULONG(raw_session), raw.mechanism(mechanism), ULONG(verifier.handle))
    assert raw.verify_signature(raw_session, raw.mechanism(mechanism), verifier.handle, sig, data=DATA) == CKR.OK
    assert raw.call("C_Verify", ULONG(raw_session), buffer(DATA), ULONG(len(DATA)), buffer(sig),
                    ULONG(len(sig))) == CKR.OK
    # Two C_VerifySignatureInit in a row: the second finds the first active.
    raw.call("C_VerifySignatureInit", ULONG(raw_session), raw.mechanism(mechanism), ULONG(verifier.handle),
             buffer(sig), ULONG(len(sig)))
    with pytest.raises(P11Failed) as err:
        raw.call("C_VerifySignatureInit", ULONG(raw_session), raw.mechanism(mechanism), ULONG(verifier.handle),
                 buffer(sig), ULONG(len(sig)))
    assert err.value.rv == CKR.OPERATION_ACTIVE
    raw.call("C_VerifySignatureInit", ULONG(raw_session), None, ULONG(0), None, ULONG(0))  # NULL ends it
    with pytest.raises(P11Failed) as err:
        raw.call("C_VerifySignature", ULONG(raw_session), buffer(DATA), ULONG(len(DATA)))
    assert err.value.rv == CKR.OPERATION_NOT_INITIALIZED


def test_verify_signature_needs_verify_attribute(session, raw, raw_session) -> None:
    pub, priv = session.generate_keypair(KeyType.ML_DSA, public_template={
        Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_44, Attribute.VERIFY: False})
    with pytest.raises(P11Failed) as err:
        raw.call("C_VerifySignatureInit", ULONG(raw_session), raw.mechanism(Mechanism.ML_DSA), ULONG(pub.handle),
                 buffer(b"x"), ULONG(1))
    assert err.value.rv == CKR.KEY_FUNCTION_NOT_PERMITTED


def test_session_validation_flags(raw, raw_session) -> None:
    flags = ULONG(0xFFFF)
    raw.call("C_GetSessionValidationFlags", ULONG(raw_session), ULONG(CKS_LAST_VALIDATION_OK), C.byref(flags))
    assert flags.value == 0  # no validated operation: the token holds no validation objects
    with pytest.raises(P11Failed) as err:
        raw.call("C_GetSessionValidationFlags", ULONG(raw_session), ULONG(2), C.byref(flags))
    assert err.value.rv == CKR.ARGUMENTS_BAD
    with pytest.raises(P11Failed) as err:
        raw.call("C_GetSessionValidationFlags", ULONG(0xDEAD), ULONG(CKS_LAST_VALIDATION_OK), C.byref(flags))
    assert err.value.rv == CKR.SESSION_HANDLE_INVALID


def test_async_session_is_refused(raw, token) -> None:
    handle = ULONG()
    with pytest.raises(P11Failed) as err:
        raw.call("C_OpenSession", ULONG(token.slot.slot_id), ULONG(SessionFlag.SERIAL_SESSION | CKF_ASYNC_SESSION), None, None,
                 C.byref(handle))
    assert err.value.rv == CKR.SESSION_ASYNC_NOT_SUPPORTED


def test_async_calls_on_a_synchronous_token(raw, raw_session) -> None:
    name = b"C_Sign"
    result = (ULONG * 5)()
    ident = ULONG()
    calls = {
        "C_AsyncComplete": (ULONG(raw_session), name, C.byref(result)),
        "C_AsyncGetID": (ULONG(raw_session), name, C.byref(ident)),
        "C_AsyncJoin": (ULONG(raw_session), name, ULONG(1), buffer(b"data"), ULONG(4)),
    }
    for function, args in calls.items():
        with pytest.raises(P11Failed) as err:
            raw.call(function, *args)
        assert err.value.rv == CKR.SESSION_ASYNC_NOT_SUPPORTED, function
        with pytest.raises(P11Failed) as err:
            raw.call(function, ULONG(raw_session), None, *args[2:])
        assert err.value.rv == CKR.ARGUMENTS_BAD, function


def test_wrap_key_authenticated_aes_gcm(session, raw, raw_session) -> None:
    kek = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.UNWRAP: True})
    target = session.generate_key(KeyType.AES, 128, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    iv, ad = os.urandom(12), b"key id 42; policy v3"
    mech = lambda aad=b"": raw.mechanism(Mechanism.AES_GCM, raw.gcm(iv, 128, aad))  # noqa: E731
    length = ULONG()
    raw.call("C_WrapKeyAuthenticated", ULONG(raw_session), mech(), ULONG(kek.handle), ULONG(target.handle),
             buffer(ad), ULONG(len(ad)), None, C.byref(length))
    assert length.value == 16 + 16
    out = C.create_string_buffer(length.value)
    raw.call("C_WrapKeyAuthenticated", ULONG(raw_session), mech(), ULONG(kek.handle), ULONG(target.handle),
             buffer(ad), ULONG(len(ad)), out, C.byref(length))
    wrapped = out.raw[: length.value]
    template, count = raw.template({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                    Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    handle = ULONG()
    raw.call("C_UnwrapKeyAuthenticated", ULONG(raw_session), mech(), ULONG(kek.handle), buffer(wrapped),
             ULONG(len(wrapped)), template, ULONG(count), buffer(ad), ULONG(len(ad)), C.byref(handle))
    assert raw.get(raw_session, handle.value, Attribute.VALUE) == target[Attribute.VALUE]
    # Other associated data: the tag does not verify.
    with pytest.raises(P11Failed) as err:
        raw.call("C_UnwrapKeyAuthenticated", ULONG(raw_session), mech(), ULONG(kek.handle), buffer(wrapped),
                 ULONG(len(wrapped)), template, ULONG(count), buffer(b"other"), ULONG(5), C.byref(handle))
    assert err.value.rv == CKR.WRAPPED_KEY_INVALID
    # AAD in the parameter as well as in the call is refused; a non-AEAD mechanism too.
    with pytest.raises(P11Failed) as err:
        raw.call("C_WrapKeyAuthenticated", ULONG(raw_session), mech(b"aad"), ULONG(kek.handle),
                 ULONG(target.handle), buffer(ad), ULONG(len(ad)), None, C.byref(length))
    assert err.value.rv == CKR.MECHANISM_PARAM_INVALID
    with pytest.raises(P11Failed) as err:
        raw.call("C_WrapKeyAuthenticated", ULONG(raw_session), raw.mechanism(Mechanism.AES_KEY_WRAP),
                 ULONG(kek.handle), ULONG(target.handle), buffer(ad), ULONG(len(ad)), None, C.byref(length))
    assert err.value.rv == CKR.MECHANISM_INVALID
    # A KEK made outside (CKA_VALUE known) shows the format is AES-GCM(ciphertext || tag) with AAD = ad.
    known = os.urandom(32)
    kek2 = raw.create(raw_session, {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                    Attribute.VALUE: known, Attribute.WRAP: True})
    raw.call("C_WrapKeyAuthenticated", ULONG(raw_session), mech(), ULONG(kek2), ULONG(target.handle),
             buffer(ad), ULONG(len(ad)), out, C.byref(length))
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert AESGCM(known).decrypt(iv, out.raw[: length.value], ad) == target[Attribute.VALUE]

