"""The return codes the specification names, raised by the rows' validators and operation objects."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from mechcases import IV8, IV16, OAEP_SHA1

from emulator.crypto import ec as ec_crypto
from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import CKR, KDF, MGF, Attribute, KeyType, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY

GCM = params.GcmParams(bytes(12), 96, b"", 128)


def rv_of(call: Callable[[], Any]) -> int:
    with pytest.raises(PKCS11Error) as err:
        call()
    return err.value.rv


def spec(mechanism: int) -> Any:
    return REGISTRY.get(mechanism)


def test_unknown_mechanism() -> None:
    assert rv_of(lambda: REGISTRY.get(0x7FFFFFF0)) == CKR.MECHANISM_INVALID
    assert 0x7FFFFFF0 not in REGISTRY


# --- CKR_MECHANISM_PARAM_INVALID from the validators ------------------------------------------

BAD_PARAMS = [
    (Mechanism.AES_ECB, IV16),  # no parameter expected
    (Mechanism.SHA256, b"x"),
    (Mechanism.AES_CBC, None),
    (Mechanism.AES_CBC, IV16[:15]),
    (Mechanism.AES_CBC_PAD, IV16 + b"x"),
    (Mechanism.DES3_CBC, IV16),
    (Mechanism.AES_CTR, params.AesCtrParams(0, bytes(16))),
    (Mechanism.AES_CTR, params.AesCtrParams(129, bytes(16))),
    (Mechanism.AES_GCM, params.GcmParams(bytes(12), 96, b"", 100)),  # not whole bytes
    (Mechanism.AES_GCM, params.GcmParams(bytes(12), 96, b"", 24)),  # below 32 bits
    (Mechanism.AES_GCM, params.GcmParams(bytes(12), 96, b"", 136)),
    (Mechanism.AES_GCM, params.GcmParams(bytes(4), 32, b"", 128)),  # IV shorter than `cryptography` takes
    (Mechanism.AES_KEY_WRAP, bytes(8)),  # only the default initial value
    (Mechanism.AES_KEY_WRAP_KWP, bytes(4)),
    (Mechanism.SHA256_HMAC_GENERAL, 0),
    (Mechanism.SHA256_HMAC_GENERAL, 33),
    (Mechanism.AES_CMAC_GENERAL, 17),
    (Mechanism.RSA_PKCS_OAEP, None),
    (Mechanism.RSA_PKCS_OAEP, params.OaepParams(Mechanism.SHA256, 0x77, 1, b"")),  # unknown MGF
    (Mechanism.RSA_PKCS_OAEP, params.OaepParams(Mechanism.AES_ECB, MGF.SHA1, 1, b"")),  # not a hash
    (Mechanism.RSA_PKCS_OAEP, params.OaepParams(Mechanism.SHA_1, MGF.SHA1, 2, b"")),  # unknown source
    (Mechanism.RSA_PKCS_PSS, params.OaepParams(Mechanism.SHA_1, MGF.SHA1, 1, b"")),  # wrong structure
    (Mechanism.SHA256_RSA_PKCS_PSS, params.PssParams(Mechanism.SHA_1, MGF.SHA1, 20)),  # hash must match
    (constants.CKM_RSA_AES_KEY_WRAP, params.RsaAesKeyWrapParams(100, OAEP_SHA1)),
    (constants.CKM_RSA_AES_KEY_WRAP, params.RsaAesKeyWrapParams(256, params.OaepParams(Mechanism.SHA256, 0x99, 1, b""))),
    (Mechanism.ECDH1_DERIVE, params.Ecdh1DeriveParams(KDF.NULL, b"shared", b"\x04" + bytes(64))),
    (Mechanism.ECDH1_DERIVE, params.Ecdh1DeriveParams(KDF.SHA1_ASN1, b"", b"\x04" + bytes(64))),
    (Mechanism.ECDH1_DERIVE, params.Ecdh1DeriveParams(KDF.SHA256, b"", b"")),
    (Mechanism.EDDSA, params.EddsaParams(True, b"")),  # Ed25519ph
    (Mechanism.EDDSA, params.EddsaParams(False, b"ctx")),  # Ed25519ctx
    (Mechanism.AES_ECB_ENCRYPT_DATA, bytes(15)),
    (Mechanism.AES_CBC_ENCRYPT_DATA, params.AesCbcEncryptDataParams(IV16, b"")),
]


@pytest.mark.parametrize(("mechanism", "param"), BAD_PARAMS,
                         ids=[f"{spec(m).name}-{i}" for i, (m, _) in enumerate(BAD_PARAMS)])
def test_bad_parameter(mechanism: int, param: Any) -> None:
    assert rv_of(lambda: spec(mechanism).validate(param)) == CKR.MECHANISM_PARAM_INVALID


def test_pss_salt_too_long_for_key(keys: dict) -> None:
    param = params.PssParams(Mechanism.SHA512, MGF.SHA512, 256 - 64 - 1)
    spec(Mechanism.SHA512_RSA_PKCS_PSS).validate(param)
    row = spec(Mechanism.SHA512_RSA_PKCS_PSS)
    assert rv_of(lambda: row.sign(keys["rsa2048"], param)) == CKR.MECHANISM_PARAM_INVALID


# --- lengths -----------------------------------------------------------------------------------

def test_block_modes_need_whole_blocks(keys: dict) -> None:
    aes = keys["aes128"]
    ecb, cbc = spec(Mechanism.AES_ECB), spec(Mechanism.AES_CBC)
    assert rv_of(lambda: ecb.encrypt(aes, None).oneshot(bytes(15))) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: ecb.decrypt(aes, None).oneshot(bytes(17))) == CKR.ENCRYPTED_DATA_LEN_RANGE
    op = cbc.encrypt(aes, IV16)
    assert op.update(bytes(20)) == cbc.encrypt(aes, IV16).oneshot(bytes(16))
    assert rv_of(op.final) == CKR.DATA_LEN_RANGE
    op = cbc.decrypt(aes, IV16)
    op.update(bytes(33))
    assert rv_of(op.final) == CKR.ENCRYPTED_DATA_LEN_RANGE
    des = spec(Mechanism.DES3_ECB)
    assert rv_of(lambda: des.encrypt(keys["des3"], None).oneshot(bytes(12))) == CKR.DATA_LEN_RANGE


def test_cbc_pad_errors(keys: dict) -> None:
    aes = keys["aes256"]
    pad = spec(Mechanism.AES_CBC_PAD)
    raw = spec(Mechanism.AES_CBC).encrypt(aes, IV16).oneshot(bytes(15) + b"\x05")  # pad byte 5, not 5 x 05
    assert rv_of(lambda: pad.decrypt(aes, IV16).oneshot(raw)) == CKR.ENCRYPTED_DATA_INVALID
    assert rv_of(lambda: pad.decrypt(aes, IV16).oneshot(b"")) == CKR.ENCRYPTED_DATA_LEN_RANGE
    assert rv_of(lambda: pad.decrypt(aes, IV16).oneshot(raw[:15])) == CKR.ENCRYPTED_DATA_LEN_RANGE
    # A whole block of padding for block-aligned input (RFC 5652 §6.3).
    assert len(pad.encrypt(aes, IV16).oneshot(bytes(32))) == 48
    des = spec(Mechanism.DES3_CBC_PAD)
    raw = spec(Mechanism.DES3_CBC).encrypt(keys["des3"], IV8).oneshot(bytes(8))
    assert rv_of(lambda: des.decrypt(keys["des3"], IV8).oneshot(raw)) == CKR.ENCRYPTED_DATA_INVALID


def test_ctr_counter_must_not_wrap(keys: dict) -> None:
    ctr = spec(Mechanism.AES_CTR)
    # 8 counter bits at 0xFE: two blocks left before the counter part wraps.
    param = params.AesCtrParams(8, bytes(15) + b"\xfe")
    assert len(ctr.encrypt(keys["aes128"], param).oneshot(bytes(32))) == 32
    assert rv_of(lambda: ctr.encrypt(keys["aes128"], param).oneshot(bytes(33))) == CKR.DATA_LEN_RANGE
    op = ctr.encrypt(keys["aes128"], param)
    op.update(bytes(30))
    assert rv_of(lambda: op.update(bytes(3))) == CKR.DATA_LEN_RANGE


def test_gcm_errors(keys: dict) -> None:
    aes = keys["aes128"]
    gcm = spec(Mechanism.AES_GCM)
    sealed = gcm.encrypt(aes, GCM).oneshot(b"secret")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert rv_of(lambda: gcm.decrypt(aes, GCM).oneshot(tampered)) == CKR.ENCRYPTED_DATA_INVALID
    other_aad = params.GcmParams(bytes(12), 96, b"other", 128)
    assert rv_of(lambda: gcm.decrypt(aes, other_aad).oneshot(sealed)) == CKR.ENCRYPTED_DATA_INVALID
    assert rv_of(lambda: gcm.decrypt(aes, GCM).oneshot(sealed[:15])) == CKR.ENCRYPTED_DATA_LEN_RANGE
    assert rv_of(lambda: gcm.unwrap(aes, GCM, tampered, "GENERIC", None)) == CKR.WRAPPED_KEY_INVALID
    assert rv_of(lambda: gcm.unwrap(aes, GCM, sealed[:16], "GENERIC", None)) == CKR.WRAPPED_KEY_LEN_RANGE


def test_rsa_length_errors(keys: dict) -> None:
    rsa = keys["rsa2048"]
    pkcs, oaep, x509 = spec(Mechanism.RSA_PKCS), spec(Mechanism.RSA_PKCS_OAEP), spec(Mechanism.RSA_X_509)
    assert rv_of(lambda: pkcs.encrypt(rsa.public(), None).oneshot(bytes(246))) == CKR.DATA_LEN_RANGE
    assert len(pkcs.encrypt(rsa.public(), None).oneshot(bytes(245))) == 256
    assert rv_of(lambda: pkcs.decrypt(rsa, None).oneshot(bytes(255))) == CKR.ENCRYPTED_DATA_LEN_RANGE
    assert rv_of(lambda: pkcs.sign(rsa, None).oneshot(bytes(246))) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: oaep.encrypt(rsa.public(), OAEP_SHA1).oneshot(bytes(256 - 42 + 1))) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: oaep.decrypt(rsa, OAEP_SHA1).oneshot(bytes(257))) == CKR.ENCRYPTED_DATA_LEN_RANGE
    assert rv_of(lambda: x509.encrypt(rsa.public(), None).oneshot(bytes(257))) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: x509.encrypt(rsa.public(), None).oneshot(b"\xff" * 256)) == CKR.DATA_INVALID
    raw_pss = spec(Mechanism.RSA_PKCS_PSS)
    param = params.PssParams(Mechanism.SHA256, MGF.SHA256, 32)
    assert rv_of(lambda: raw_pss.sign(rsa, param).oneshot(bytes(31))) == CKR.DATA_LEN_RANGE


def test_oaep_bad_ciphertext(keys: dict) -> None:
    rsa = keys["rsa2048"]
    oaep = spec(Mechanism.RSA_PKCS_OAEP)
    sealed = oaep.encrypt(rsa.public(), OAEP_SHA1).oneshot(b"secret")
    labelled = params.OaepParams(Mechanism.SHA_1, MGF.SHA1, constants.CKZ_DATA_SPECIFIED, b"other label")
    assert rv_of(lambda: oaep.decrypt(rsa, labelled).oneshot(sealed)) == CKR.ENCRYPTED_DATA_INVALID
    assert rv_of(lambda: oaep.unwrap(rsa, labelled, sealed, "GENERIC", None)) == CKR.WRAPPED_KEY_INVALID
    assert rv_of(lambda: oaep.unwrap(rsa, OAEP_SHA1, sealed[:-1], "GENERIC", None)) == CKR.WRAPPED_KEY_LEN_RANGE


def test_pkcs1v15_decrypt_uses_implicit_rejection(keys: dict) -> None:
    # `cryptography` answers a bad PKCS#1 v1.5 pad with pseudo-random bytes (Marvin countermeasure),
    # so C_Decrypt with CKM_RSA_PKCS does not reveal padding errors; the same input gives the same bytes.
    rsa = keys["rsa2048"]
    pkcs = spec(Mechanism.RSA_PKCS)
    garbage = spec(Mechanism.RSA_X_509).encrypt(rsa.public(), None).oneshot(b"\x01" * 200)
    first = pkcs.decrypt(rsa, None).oneshot(garbage)
    assert pkcs.decrypt(rsa, None).oneshot(garbage) == first


# --- signatures ----------------------------------------------------------------------------------

SIGNERS = [
    (Mechanism.SHA256_HMAC, "generic32", None, 32),
    (Mechanism.SHA256_HMAC_GENERAL, "generic32", 10, 10),
    (Mechanism.AES_CMAC, "aes128", None, 16),
    (Mechanism.RSA_PKCS, "rsa2048", None, 256),
    (Mechanism.SHA256_RSA_PKCS, "rsa2048", None, 256),
    (Mechanism.SHA256_RSA_PKCS_PSS, "rsa2048", params.PssParams(Mechanism.SHA256, MGF.SHA256, 32), 256),
    (Mechanism.RSA_X_509, "rsa2048", None, 256),
    (Mechanism.ECDSA, "p256", None, 64),
    (Mechanism.ECDSA_SHA384, "p384", None, 96),
    (Mechanism.ECDSA_SHA512, "p521", None, 132),
    (Mechanism.EDDSA, "ed25519", None, 64),
    (Mechanism.EDDSA, "ed448", params.EddsaParams(False, b""), 114),  # Ed448 needs CK_EDDSA_PARAMS
]


@pytest.mark.parametrize(("mechanism", "key", "param", "length"), SIGNERS,
                         ids=[f"{spec(m).name}-{k}" for m, k, _, _ in SIGNERS])
def test_signature_errors(mechanism: int, key: str, param: Any, length: int, keys: dict) -> None:
    row = spec(mechanism)
    material = keys[key]
    public = material if isinstance(material, SecretMaterial) else material.public()
    data = bytes(32)
    signature = row.sign(material, param).oneshot(data)
    assert len(signature) == length
    bad = bytes([signature[0] ^ 0x80]) + signature[1:]
    assert rv_of(lambda: row.verify(public, param).oneshot(data, bad)) == CKR.SIGNATURE_INVALID
    assert rv_of(lambda: row.verify(public, param).oneshot(data, signature[:-1])) == CKR.SIGNATURE_LEN_RANGE
    assert rv_of(lambda: row.verify(public, param).oneshot(data, signature + b"\0")) == CKR.SIGNATURE_LEN_RANGE
    assert rv_of(lambda: row.verify(public, param).oneshot(bytes(31) + b"\1", signature)) == CKR.SIGNATURE_INVALID


def test_verify_recover_errors(keys: dict) -> None:
    rsa = keys["rsa2048"]
    pkcs = spec(Mechanism.RSA_PKCS)
    signature = pkcs.sign_recover(rsa, None).oneshot(b"data")
    recover = pkcs.verify_recover(rsa.public(), None)
    assert rv_of(lambda: recover.oneshot(signature[:-1])) == CKR.SIGNATURE_LEN_RANGE
    other = spec(Mechanism.RSA_X_509).sign(rsa, None).oneshot(b"data")
    assert rv_of(lambda: pkcs.verify_recover(rsa.public(), None).oneshot(other)) == CKR.SIGNATURE_INVALID


def test_raw_ecdsa_input_too_long_for_p521(keys: dict) -> None:
    # A 66-byte input keeps 521 bits, which no digest size `cryptography` accepts can carry.
    row = spec(Mechanism.ECDSA)
    assert rv_of(lambda: row.sign(keys["p521"], None).oneshot(b"\xff" * 66)) == CKR.DATA_LEN_RANGE
    # On P-256 a long input is truncated to the order's 256 bits (FIPS 186-4 §6.4), like a 32-byte one.
    long_input = bytes(range(64))
    signature = row.sign(keys["p256"], None).oneshot(long_input)
    row.verify(keys["p256"].public(), None).oneshot(long_input[:32], signature)


# --- keys, wrapping, derivation -----------------------------------------------------------------

def test_key_size_errors(keys: dict) -> None:
    aes_gen = spec(Mechanism.AES_KEY_GEN)
    assert rv_of(lambda: aes_gen.generate(None, KeyType.AES, 20)) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: aes_gen.generate(None, KeyType.AES, None)) == CKR.TEMPLATE_INCOMPLETE
    generic = spec(Mechanism.GENERIC_SECRET_KEY_GEN)
    assert rv_of(lambda: generic.generate(None, KeyType.GENERIC_SECRET, None)) == CKR.TEMPLATE_INCOMPLETE
    assert rv_of(lambda: generic.generate(None, KeyType.GENERIC_SECRET, 0)) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: spec(Mechanism.DES3_KEY_GEN).generate(None, KeyType.DES3, 16)) == CKR.KEY_SIZE_RANGE
    pair = spec(Mechanism.RSA_PKCS_KEY_PAIR_GEN)
    assert rv_of(lambda: pair.generate_pair(None, {Attribute.MODULUS_BITS: 512}, {})) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: pair.generate_pair(None, {Attribute.MODULUS_BITS: 8192}, {})) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: pair.generate_pair(None, {}, {})) == CKR.TEMPLATE_INCOMPLETE
    even = {Attribute.MODULUS_BITS: 2048, Attribute.PUBLIC_EXPONENT: 65536}
    assert rv_of(lambda: pair.generate_pair(None, even, {})) == CKR.ATTRIBUTE_VALUE_INVALID
    bad_aes = SecretMaterial("AES", bytes(20))
    assert rv_of(lambda: spec(Mechanism.AES_ECB).encrypt(bad_aes, None)) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: spec(Mechanism.AES_CMAC).sign(bad_aes, None)) == CKR.KEY_SIZE_RANGE


def test_curve_errors() -> None:
    ec_gen = spec(Mechanism.EC_KEY_PAIR_GEN)
    sect163k1 = bytes.fromhex("06052b81040001")  # a binary-field curve: not offered
    assert rv_of(lambda: ec_gen.generate_pair(None, {Attribute.EC_PARAMS: sect163k1}, {})) == CKR.CURVE_NOT_SUPPORTED
    assert rv_of(lambda: ec_gen.generate_pair(None, {}, {})) == CKR.TEMPLATE_INCOMPLETE
    garbage = {Attribute.EC_PARAMS: b"\x30\x00"}
    assert rv_of(lambda: ec_gen.generate_pair(None, garbage, {})) == CKR.ATTRIBUTE_VALUE_INVALID
    ed25519 = {Attribute.EC_PARAMS: ec_crypto.ec_params("Ed25519")}
    assert rv_of(lambda: ec_gen.generate_pair(None, ed25519, {})) == CKR.CURVE_NOT_SUPPORTED
    edwards = spec(Mechanism.EC_EDWARDS_KEY_PAIR_GEN)
    x25519 = {Attribute.EC_PARAMS: ec_crypto.ec_params("X25519")}
    assert rv_of(lambda: edwards.generate_pair(None, x25519, {})) == CKR.CURVE_NOT_SUPPORTED


def test_key_wrap_errors(keys: dict) -> None:
    kek = keys["aes128"]
    kw, kwp = spec(Mechanism.AES_KEY_WRAP), spec(Mechanism.AES_KEY_WRAP_KWP)
    # A secret of 8 bytes or fewer pads to one semiblock, which RFC 3394 cannot wrap.
    assert rv_of(lambda: kw.wrap(kek, None, SecretMaterial("GENERIC", bytes(5)))) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: kw.wrap(kek, None, keys["p256"])) == CKR.KEY_NOT_WRAPPABLE
    assert rv_of(lambda: kw.wrap(kek, None, keys["p256"].public())) == CKR.KEY_NOT_WRAPPABLE
    wrapped = kw.wrap(kek, None, keys["aes256"])
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    assert rv_of(lambda: kw.unwrap(kek, None, tampered, "AES", None)) == CKR.WRAPPED_KEY_INVALID
    assert rv_of(lambda: kw.unwrap(kek, None, wrapped[:-4], "AES", None)) == CKR.WRAPPED_KEY_LEN_RANGE
    assert rv_of(lambda: kw.unwrap(kek, None, wrapped[:16], "AES", None)) == CKR.WRAPPED_KEY_LEN_RANGE
    # Unwrapping 32 bytes as a DES3 key (24 bytes) or with a CKA_VALUE_LEN beyond the value.
    assert kw.unwrap(kek, None, wrapped, "DES3", None).value == keys["aes256"].value[:24]
    assert rv_of(lambda: kw.unwrap(kek, None, wrapped, "GENERIC", 40)) == CKR.WRAPPED_KEY_INVALID
    assert rv_of(lambda: kw.encrypt(kek, None).oneshot(bytes(12))) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: kw.encrypt(kek, None).oneshot(bytes(8))) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: kw.decrypt(kek, None).oneshot(bytes(20))) == CKR.ENCRYPTED_DATA_LEN_RANGE
    assert rv_of(lambda: kwp.encrypt(kek, None).oneshot(b"")) == CKR.DATA_LEN_RANGE
    assert rv_of(lambda: kwp.decrypt(kek, None).oneshot(bytes(8))) == CKR.ENCRYPTED_DATA_LEN_RANGE
    # The unwrapped private key must be of the template's kind.
    wrapped_ec = kwp.wrap(kek, None, keys["p256"])
    assert rv_of(lambda: kwp.unwrap(kek, None, wrapped_ec, "RSA", None)) == CKR.TEMPLATE_INCONSISTENT
    assert kwp.unwrap(kek, None, wrapped_ec, "PRIVATE", None).kind == "EC"
    # A secret that is not a valid AES key length.
    wrapped_20 = kwp.wrap(kek, None, keys["generic20"])
    assert rv_of(lambda: kwp.unwrap(kek, None, wrapped_20, "AES", None)) == CKR.WRAPPED_KEY_INVALID


def test_block_cipher_wrap_errors(keys: dict) -> None:
    kek = keys["aes128"]
    cbc, pad = spec(Mechanism.AES_CBC), spec(Mechanism.AES_CBC_PAD)
    assert rv_of(lambda: cbc.wrap(kek, IV16, keys["p256"])) == CKR.KEY_NOT_WRAPPABLE
    # Zero padding to the block, CKA_VALUE_LEN takes the value back.
    wrapped = cbc.wrap(kek, IV16, keys["generic20"])
    assert len(wrapped) == 32
    assert cbc.unwrap(kek, IV16, wrapped, "GENERIC", 20).value == keys["generic20"].value
    assert rv_of(lambda: cbc.unwrap(kek, IV16, wrapped[:20], "GENERIC", 20)) == CKR.WRAPPED_KEY_LEN_RANGE
    bad_pad = cbc.encrypt(kek, IV16).oneshot(bytes(32))
    assert rv_of(lambda: pad.unwrap(kek, IV16, bad_pad, "AES", None)) == CKR.WRAPPED_KEY_INVALID


def test_rsa_wrap_errors(keys: dict) -> None:
    rsa = keys["rsa2048"]
    pkcs = spec(Mechanism.RSA_PKCS)
    assert rv_of(lambda: pkcs.wrap(rsa.public(), None, keys["p256"])) == CKR.KEY_NOT_WRAPPABLE
    assert rv_of(lambda: pkcs.wrap(rsa.public(), None, SecretMaterial("GENERIC", bytes(246)))) == CKR.KEY_SIZE_RANGE
    assert rv_of(lambda: pkcs.unwrap(rsa, None, bytes(100), "AES", None)) == CKR.WRAPPED_KEY_LEN_RANGE


def test_derive_errors(keys: dict, second_keys: dict) -> None:
    ecdh = spec(Mechanism.ECDH1_DERIVE)
    peer = ec_crypto.point(second_keys["p256"])
    param = params.Ecdh1DeriveParams(KDF.NULL, b"", peer)
    # AES from a 32-byte secret needs CKA_VALUE_LEN; 40 bytes cannot come from 32.
    assert ecdh.derive(keys["p256"], param, KeyType.AES, None).value  # 32 bytes: AES-256
    assert rv_of(lambda: ecdh.derive(keys["p256"], param, KeyType.GENERIC_SECRET, 40)) == CKR.TEMPLATE_INCONSISTENT
    assert rv_of(lambda: ecdh.derive(keys["p256"], param, KeyType.AES, 20)) == CKR.TEMPLATE_INCONSISTENT
    kdf = params.Ecdh1DeriveParams(KDF.SHA256, b"", peer)
    assert rv_of(lambda: ecdh.derive(keys["p256"], kdf, KeyType.AES, None)) == CKR.TEMPLATE_INCOMPLETE
    assert rv_of(lambda: ecdh.derive(keys["p256"], kdf, KeyType.RSA, 16)) == CKR.TEMPLATE_INCONSISTENT
    for bad_point in (b"\x04" + bytes(64), ec_crypto.point(second_keys["p384"])):  # off the curve, other curve
        bad = params.Ecdh1DeriveParams(KDF.NULL, b"", bad_point)
        assert rv_of(lambda b=bad: ecdh.derive(keys["p256"], b, KeyType.GENERIC_SECRET, None)) \
            == CKR.MECHANISM_PARAM_INVALID
    assert rv_of(lambda: ecdh.derive(keys["ed25519"], param, KeyType.GENERIC_SECRET, None)) == CKR.KEY_TYPE_INCONSISTENT
    # CKD_NULL truncation keeps the trailing bytes (PKCS#11: "removes bytes from the leading end").
    whole = ecdh.derive(keys["p256"], param, KeyType.GENERIC_SECRET, None).value
    assert ecdh.derive(keys["p256"], param, KeyType.GENERIC_SECRET, 10).value == whole[-10:]
    # The peer point may also come DER-wrapped in an OCTET STRING.
    wrapped = params.Ecdh1DeriveParams(KDF.NULL, b"", ec_crypto.octet_string(peer))
    assert ecdh.derive(keys["p256"], wrapped, KeyType.GENERIC_SECRET, None).value == whole


def test_key_kind_errors(keys: dict) -> None:
    public = keys["rsa2048"].public()
    assert rv_of(lambda: spec(Mechanism.SHA256_RSA_PKCS).sign(public, None)) == CKR.KEY_TYPE_INCONSISTENT
    assert rv_of(lambda: spec(Mechanism.ECDSA).sign(keys["rsa2048"], None)) == CKR.KEY_TYPE_INCONSISTENT
    assert rv_of(lambda: spec(Mechanism.EDDSA).sign(keys["p256"], None)) == CKR.KEY_TYPE_INCONSISTENT
    assert rv_of(lambda: spec(Mechanism.AES_ECB).encrypt(keys["p256"], None)) == CKR.KEY_TYPE_INCONSISTENT
    # An AES key of a length AES does not have.
    short_aes = SecretMaterial("AES", bytes(12))
    assert rv_of(lambda: spec(Mechanism.AES_GCM).encrypt(short_aes, GCM)) == CKR.KEY_SIZE_RANGE
