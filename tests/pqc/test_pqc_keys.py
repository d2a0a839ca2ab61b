"""ML-DSA and ML-KEM keys through the real .so with python-pkcs11: generation with the 3.2
attributes, signatures (pure, context, pre-hash), encapsulation, import by seed/value, persistence
of token keys, and the refusals the 3.2 text names."""

from __future__ import annotations

import hashlib

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as exc
from pkcs11.mechanisms import MLDSAParameterSet, MLKEMParameterSet

from pkcs11_shim.constants import (
    CKH_DETERMINISTIC_REQUIRED,
    CKH_HEDGE_PREFERRED,
    CKH_HEDGE_REQUIRED,
    CKM_HASH_ML_DSA,
    CKM_HASH_ML_DSA_SHA3_256,
    CKM_HASH_ML_DSA_SHA256,
    CKM_HASH_ML_DSA_SHAKE256,
    CKR,
)
from p11ctypes import P11Failed

PUBLIC_LEN = {MLDSAParameterSet.ML_DSA_44: 1312, MLDSAParameterSet.ML_DSA_65: 1952, MLDSAParameterSet.ML_DSA_87: 2592}
SIGNATURE_LEN = {MLDSAParameterSet.ML_DSA_44: 2420, MLDSAParameterSet.ML_DSA_65: 3309,
                 MLDSAParameterSet.ML_DSA_87: 4627}


def _mldsa(session, pset, **kw):
    return session.generate_keypair(KeyType.ML_DSA, public_template={Attribute.PARAMETER_SET: pset}, **kw)


@pytest.mark.parametrize("pset", list(PUBLIC_LEN))
def test_ml_dsa_generate_sign_verify(session, pset) -> None:
    pub, priv = _mldsa(session, pset)
    assert pub[Attribute.PARAMETER_SET] == priv[Attribute.PARAMETER_SET] == int(pset)
    assert len(pub[Attribute.VALUE]) == PUBLIC_LEN[pset]
    assert pub[Attribute.KEY_GEN_MECHANISM] == Mechanism.ML_DSA_KEY_PAIR_GEN
    with pytest.raises(exc.AttributeSensitive):
        priv[Attribute.SEED]
    sig = priv.sign(b"post-quantum", mechanism=Mechanism.ML_DSA)
    assert len(sig) == SIGNATURE_LEN[pset]
    assert pub.verify(b"post-quantum", sig, mechanism=Mechanism.ML_DSA)
    assert not pub.verify(b"post-quantun", sig, mechanism=Mechanism.ML_DSA)
    # Hedged signing: two signatures of the same message differ, both verify.
    assert priv.sign(b"post-quantum", mechanism=Mechanism.ML_DSA) != sig


@pytest.mark.parametrize("mechanism", [CKM_HASH_ML_DSA_SHA3_256, CKM_HASH_ML_DSA_SHAKE256])
def test_hash_ml_dsa_multipart(session, raw, raw_session, mechanism) -> None:
    pub, priv = _mldsa(session, MLDSAParameterSet.ML_DSA_44)
    data = b"a" * 100 + b"b" * 3 + b"c" * 1000
    ctx = raw.context(CKH_HEDGE_REQUIRED, b"app-context")
    sig = raw.sign(raw_session, raw.mechanism(mechanism, ctx), priv.handle, data)
    assert len(sig) == 2420
    assert raw.verify(raw_session, raw.mechanism(mechanism, ctx), pub.handle, data, sig) == CKR.OK
    # The context is part of what is signed; a pre-hash signature is not a pure one.
    other = raw.context(CKH_HEDGE_PREFERRED, b"other-context")
    assert raw.verify(raw_session, raw.mechanism(mechanism, other), pub.handle, data, sig) == CKR.SIGNATURE_INVALID
    assert raw.verify(raw_session, raw.mechanism(Mechanism.ML_DSA, ctx), pub.handle, data, sig) \
        == CKR.SIGNATURE_INVALID
    # Multi-part (C_VerifySignatureUpdate) equals single-part.
    assert raw.verify_signature(raw_session, raw.mechanism(mechanism, ctx), pub.handle, sig,
                                parts=[data[:7], data[7:500], data[500:]]) == CKR.OK


def test_hash_ml_dsa_over_a_digest(session, raw, raw_session) -> None:
    """CKM_HASH_ML_DSA signs a digest the caller made; it equals CKM_HASH_ML_DSA_SHA256 over the data."""
    pub, priv = _mldsa(session, MLDSAParameterSet.ML_DSA_65)
    data = b"message hashed by the caller"
    digest = hashlib.sha256(data).digest()
    hashed = raw.mechanism(CKM_HASH_ML_DSA, raw.context(CKH_HEDGE_PREFERRED, b"ctx", Mechanism.SHA256))
    sig = raw.sign(raw_session, hashed, priv.handle, digest)
    streaming = raw.mechanism(CKM_HASH_ML_DSA_SHA256, raw.context(CKH_HEDGE_PREFERRED, b"ctx"))
    assert raw.verify(raw_session, streaming, pub.handle, data, sig) == CKR.OK
    with pytest.raises(P11Failed) as err:
        raw.sign(raw_session, hashed, priv.handle, digest[:-1])
    assert err.value.rv == CKR.DATA_LEN_RANGE


@pytest.mark.parametrize("hedge, context, rv", [
    (CKH_DETERMINISTIC_REQUIRED, b"", CKR.MECHANISM_PARAM_INVALID),  # `cryptography` only signs hedged
    (7, b"", CKR.MECHANISM_PARAM_INVALID),
    (CKH_HEDGE_PREFERRED, bytes(256), CKR.MECHANISM_PARAM_INVALID),  # FIPS 204: ctx <= 255 bytes
])
def test_ml_dsa_parameter_refusals(session, raw, raw_session, hedge, context, rv) -> None:
    _, priv = _mldsa(session, MLDSAParameterSet.ML_DSA_44)
    with pytest.raises(P11Failed) as err:
        raw.call("C_SignInit", raw_session, raw.mechanism(Mechanism.ML_DSA, raw.context(hedge, context)), priv.handle)
    assert err.value.rv == rv


def test_ml_kem_encapsulate_decapsulate(session) -> None:
    pub, priv = session.generate_keypair(
        KeyType.ML_KEM, public_template={Attribute.PARAMETER_SET: MLKEMParameterSet.ML_KEM_1024})
    assert pub[Attribute.ENCAPSULATE] and priv[Attribute.DECAPSULATE]
    ciphertext, ss_enc = pub.encapsulate_key(KeyType.GENERIC_SECRET, key_length=256,
                                             template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert len(ciphertext) == 1568
    ss_dec = priv.decapsulate_key(ciphertext, KeyType.GENERIC_SECRET, key_length=256,
                                  template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert ss_enc[Attribute.VALUE] == ss_dec[Attribute.VALUE]
    assert len(ss_dec[Attribute.VALUE]) == 32
    assert ss_dec[Attribute.LOCAL] is False and ss_dec[Attribute.CLASS] == ObjectClass.SECRET_KEY
    # A tampered ciphertext decapsulates (implicit rejection) to another secret.
    bad = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    other = priv.decapsulate_key(bad, KeyType.GENERIC_SECRET, key_length=256,
                                 template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert other[Attribute.VALUE] != ss_dec[Attribute.VALUE]
    with pytest.raises(exc.EncryptedDataLenRange):
        priv.decapsulate_key(ciphertext[:-1], KeyType.AES, key_length=256)


def test_ml_kem_512_is_not_supported(session) -> None:
    with pytest.raises(exc.PKCS11Error) as err:
        session.generate_keypair(KeyType.ML_KEM,
                                 public_template={Attribute.PARAMETER_SET: MLKEMParameterSet.ML_KEM_512})
    assert f"{CKR.PARAMETER_SET_NOT_SUPPORTED:#x}" in str(err.value)  # `cryptography` lacks ML-KEM-512


def test_decapsulate_needs_decapsulate_attribute(session, raw, raw_session) -> None:
    pub, priv = session.generate_keypair(
        KeyType.ML_KEM, public_template={Attribute.PARAMETER_SET: MLKEMParameterSet.ML_KEM_768},
        private_template={Attribute.DECAPSULATE: False})
    ciphertext, _ = pub.encapsulate_key(KeyType.AES, key_length=128)
    with pytest.raises(P11Failed) as err:
        raw.decapsulate(raw_session, raw.mechanism(Mechanism.ML_KEM), priv.handle, ciphertext,
                        raw.secret_template(KeyType.AES, 16))
    assert err.value.rv == CKR.KEY_FUNCTION_NOT_PERMITTED


def test_token_keys_persist_and_wrap_as_pkcs8(token, session, raw, raw_session) -> None:
    pub, priv = _mldsa(session, MLDSAParameterSet.ML_DSA_65, store=True, label="pq-token",
                       private_template={Attribute.EXTRACTABLE: True})  # wrapped below; the default is FALSE
    wrapper = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.UNWRAP: True})
    wrapped = wrapper.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    # (python-pkcs11's unwrap template carries CKA_ENCRYPT, which private keys do not have.)
    copy = raw.unwrap(raw_session, raw.mechanism(Mechanism.AES_KEY_WRAP_PAD), wrapper.handle, wrapped,
                      {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.ML_DSA})
    assert raw.get_ulong(raw_session, copy, Attribute.PARAMETER_SET) == int(MLDSAParameterSet.ML_DSA_65)
    sig = raw.sign(raw_session, raw.mechanism(Mechanism.ML_DSA), copy, b"unwrapped")
    assert pub.verify(b"unwrapped", sig, mechanism=Mechanism.ML_DSA)
    # A new session (and a fresh look at kmdata) finds the token key and it still signs.
    with token.open() as other:  # the token is logged in for the whole application (§5.6)
        found = other.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.ML_DSA, label="pq-token")
        assert pub.verify(b"again", found.sign(b"again", mechanism=Mechanism.ML_DSA), mechanism=Mechanism.ML_DSA)


def test_mechanism_info(token) -> None:
    from pkcs11 import MechanismFlag as F

    slot = token.slot
    kem = slot.get_mechanism_info(Mechanism.ML_KEM)
    assert kem.flags == F.ENCAPSULATE | F.DECAPSULATE
    assert (kem.min_key_length, kem.max_key_length) == (MLKEMParameterSet.ML_KEM_768, MLKEMParameterSet.ML_KEM_1024)
    dsa = slot.get_mechanism_info(Mechanism.ML_DSA)
    assert dsa.flags == F.SIGN | F.VERIFY and (dsa.min_key_length, dsa.max_key_length) == (1, 3)
    assert slot.get_mechanism_info(Mechanism.ML_DSA_KEY_PAIR_GEN).flags == F.GENERATE_KEY_PAIR
    assert {Mechanism.ML_KEM, Mechanism.ML_DSA, Mechanism.ML_KEM_KEY_PAIR_GEN} <= set(slot.get_mechanisms())


@pytest.mark.parametrize("attrs, rv", [
    # cryptography holds private keys by seed: the expanded private CKA_VALUE is not an attribute here.
    ({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.ML_DSA, Attribute.PARAMETER_SET: 1,
      Attribute.SEED: bytes(32), Attribute.VALUE: bytes(2560)}, CKR.TEMPLATE_INCONSISTENT),
    ({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.ML_DSA, Attribute.PARAMETER_SET: 1,
      Attribute.SEED: bytes(31)}, CKR.ATTRIBUTE_VALUE_INVALID),
    ({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.ML_DSA, Attribute.PARAMETER_SET: 1},
     CKR.TEMPLATE_INCOMPLETE),
    ({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.ML_DSA, Attribute.PARAMETER_SET: 2,
      Attribute.VALUE: bytes(1312)}, CKR.ATTRIBUTE_VALUE_INVALID),  # an ML-DSA-44 length for ML-DSA-65
    ({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.ML_DSA, Attribute.PARAMETER_SET: 4,
      Attribute.VALUE: bytes(1312)}, CKR.ATTRIBUTE_VALUE_INVALID),
    ({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.ML_KEM, Attribute.PARAMETER_SET: 1,
      Attribute.VALUE: bytes(800)}, CKR.PARAMETER_SET_NOT_SUPPORTED),
    ({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.ML_KEM, Attribute.PARAMETER_SET: 2,
      Attribute.SEED: bytes(32)}, CKR.ATTRIBUTE_VALUE_INVALID),  # d || z is 64 bytes
])
def test_create_object_refusals(raw, raw_session, attrs, rv) -> None:
    with pytest.raises(P11Failed) as err:
        raw.create(raw_session, attrs)
    assert err.value.rv == rv
