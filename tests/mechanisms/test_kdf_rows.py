"""Rows whose derive/generate need parameters or a second key (mechcases.KDF_ROWS), the hand-assembled
CTS mode (RFC 3962 Appendix B vectors: `cryptography-vectors` has none for CTS), and the parameter and
key errors of the issue-4 rows (PKCS#11 3.0 §5.1: CKR_MECHANISM_PARAM_INVALID, CKR_KEY_TYPE_INCONSISTENT,
CKR_DATA_LEN_RANGE, CKR_ENCRYPTED_DATA_LEN_RANGE, CKR_SIGNATURE_LEN_RANGE)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import CKR, KeyType, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY

BASE = SecretMaterial("GENERIC", bytes(range(32)))
OTHER = SecretMaterial("GENERIC", b"\xAA" * 16)


def _derive(mechanism: int, param, key_type=KeyType.GENERIC_SECRET, value_len=None, base=BASE):
    spec = REGISTRY.get(mechanism)
    spec.validate(param)
    return spec.derive(base, param, key_type, value_len, lambda handle: {7: OTHER}[handle]).value


def _raises(code: int, fn, *args) -> None:
    with pytest.raises(PKCS11Error) as err:
        fn(*args)
    assert err.value.rv == code


# --- simple derivations ----------------------------------------------------------------------

def test_concatenate_and_xor_and_extract() -> None:
    assert _derive(Mechanism.CONCATENATE_BASE_AND_KEY, 7) == BASE.value + OTHER.value
    assert _derive(Mechanism.CONCATENATE_BASE_AND_DATA, b"tail") == BASE.value + b"tail"
    assert _derive(Mechanism.CONCATENATE_DATA_AND_BASE, b"head") == b"head" + BASE.value
    assert _derive(Mechanism.CONCATENATE_BASE_AND_DATA, b"tail", KeyType.AES, 16) == BASE.value[:16]
    assert _derive(Mechanism.XOR_BASE_AND_DATA, b"\xff" * 4) == bytes(b ^ 0xFF for b in BASE.value[:4])
    # PKCS#11 3.0 §2.x: bits from the bit index on, wrapping around.
    assert _derive(Mechanism.EXTRACT_KEY_FROM_KEY, 8, value_len=4) == bytes(range(1, 5))
    assert _derive(Mechanism.EXTRACT_KEY_FROM_KEY, 252, value_len=1) == bytes([0xF0])  # 1f's low nibble + 00's high
    _raises(CKR.MECHANISM_PARAM_INVALID, REGISTRY.get(Mechanism.CONCATENATE_BASE_AND_DATA).validate, b"")
    _raises(CKR.TEMPLATE_INCONSISTENT, _derive, Mechanism.EXTRACT_KEY_FROM_KEY, 0, KeyType.GENERIC_SECRET, 33)


# --- HKDF, SP 800-108, PBKDF2 against `cryptography` -----------------------------------------

def test_hkdf_salt_types_and_errors() -> None:
    expected = HKDF(hashes.SHA256(), 42, bytes(OTHER.value), b"info").derive(BASE.value)
    key_salt = params.HkdfParams(True, True, Mechanism.SHA256, constants.CKF_HKDF_SALT_KEY, b"", 7, b"info")
    assert _derive(constants.CKM_HKDF_DERIVE, key_salt, value_len=42) == expected
    data_salt = params.HkdfParams(True, True, Mechanism.SHA256, constants.CKF_HKDF_SALT_DATA, OTHER.value, 0, b"info")
    assert _derive(constants.CKM_HKDF_DATA, data_salt, value_len=42) == expected
    null_salt = params.HkdfParams(True, True, Mechanism.SHA3_256, constants.CKF_HKDF_SALT_NULL, b"", 0, b"")
    assert _derive(constants.CKM_HKDF_DERIVE, null_salt, value_len=20) == \
        HKDF(hashes.SHA3_256(), 20, None, None).derive(BASE.value)
    validate = REGISTRY.get(constants.CKM_HKDF_DERIVE).validate
    for bad in (params.HkdfParams(False, False, Mechanism.SHA256, 1, b"", 0, b""),
                params.HkdfParams(True, True, 0x12345, 1, b"", 0, b""),
                params.HkdfParams(True, True, Mechanism.SHA256, constants.CKF_HKDF_SALT_DATA, b"", 0, b""),
                params.HkdfParams(True, True, Mechanism.SHA256, 0x8, b"", 0, b""), None):
        _raises(CKR.MECHANISM_PARAM_INVALID, validate, bad)
    _raises(CKR.TEMPLATE_INCONSISTENT, _derive, constants.CKM_HKDF_DERIVE, data_salt, KeyType.GENERIC_SECRET, 255 * 32 + 1)
    _raises(CKR.TEMPLATE_INCOMPLETE, _derive, constants.CKM_HKDF_DERIVE, data_salt, KeyType.GENERIC_SECRET, None)


def test_sp800_108_counter_matches_cryptography() -> None:
    counter = params.PrfDataParam(constants.CK_SP800_108_ITERATION_VARIABLE, width_bits=32)
    dkm = params.PrfDataParam(constants.CK_SP800_108_DKM_LENGTH, width_bits=32,
                              method=constants.CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS)
    label = params.PrfDataParam(constants.CK_SP800_108_BYTE_ARRAY, value=b"label")
    sep = params.PrfDataParam(constants.CK_SP800_108_BYTE_ARRAY, value=b"\x00")
    context = params.PrfDataParam(constants.CK_SP800_108_BYTE_ARRAY, value=b"context")
    param = params.Sp800108Params(Mechanism.SHA256_HMAC, (counter, label, sep, context, dkm), 0)
    expected = KBKDFHMAC(hashes.SHA256(), Mode.CounterMode, 48, 4, 4, CounterLocation.BeforeFixed,
                         b"label", b"context", None).derive(BASE.value)
    assert _derive(constants.CKM_SP800_108_COUNTER_KDF, param, value_len=48) == expected
    validate = REGISTRY.get(constants.CKM_SP800_108_COUNTER_KDF).validate
    for bad in (params.Sp800108Params(Mechanism.SHA256_HMAC, (label,), 0),
                params.Sp800108Params(Mechanism.SHA256_HMAC, (counter, counter), 0),
                params.Sp800108Params(Mechanism.SHA256, (counter,), 0),
                params.Sp800108Params(Mechanism.SHA256_HMAC, (counter,), 2),
                params.Sp800108Params(Mechanism.SHA256_HMAC,
                                      (params.PrfDataParam(constants.CK_SP800_108_ITERATION_VARIABLE, width_bits=12),), 0)):
        _raises(CKR.MECHANISM_PARAM_INVALID, validate, bad)


def test_pbkd2_and_key_generation_rows() -> None:
    spec = REGISTRY.get(Mechanism.PKCS5_PBKD2)
    param = params.Pbkd2Params(1, b"salt", 1000, constants.CKP_PKCS5_PBKD2_HMAC_SHA256, b"", b"password")
    spec.validate(param)
    expected = PBKDF2HMAC(hashes.SHA256(), 32, b"salt", 1000).derive(b"password")
    assert spec.generate(param, KeyType.AES, 32).value == expected
    assert spec.generate(param, KeyType.DES3, None).value == PBKDF2HMAC(hashes.SHA256(), 24, b"salt", 1000).derive(b"password")
    _raises(CKR.KEY_SIZE_RANGE, spec.generate, param, KeyType.AES, 20)
    for bad in (params.Pbkd2Params(2, b"salt", 1000, 4, b"", b"pw"), params.Pbkd2Params(1, b"salt", 0, 4, b"", b"pw"),
                params.Pbkd2Params(1, b"salt", 10, 99, b"", b"pw")):
        _raises(CKR.MECHANISM_PARAM_INVALID, spec.validate, bad)
    hkdf_key = REGISTRY.get(constants.CKM_HKDF_KEY_GEN).generate(None, constants.CKK_HKDF, 40)
    assert (hkdf_key.kind, len(hkdf_key.value)) == ("GENERIC", 40)


# --- CTS (RFC 3962 Appendix B: AES-128, IV 0) --------------------------------------------------

RFC3962_KEY = bytes.fromhex("636869636b656e207465726979616b69")
RFC3962_PLAIN = bytes.fromhex("4920776f756c64206c696b65207468652047656e6572616c20476175277320436869636b656e2c"
                              "20706c656173652c20616e6420776f6e746f6e20736f75702e")
RFC3962 = (
    (17, "c6353568f2bf8cb4d8a580362da7ff7f97"),
    (31, "fc00783e0efdb2c1d445d4c8eff7ed2297687268d6ecccc0c07b25e25ecfe5"),
    (32, "39312523a78662d5be7fcbcc98ebf5a897687268d6ecccc0c07b25e25ecfe584"),
    (47, "97687268d6ecccc0c07b25e25ecfe584b3fffd940c16a18c1b5549d2f838029e39312523a78662d5be7fcbcc98ebf5"),
    (48, "97687268d6ecccc0c07b25e25ecfe5849dad8bbb96c4cdc03bc103e1a194bbd839312523a78662d5be7fcbcc98ebf5a8"),
    (64, ("97687268d6ecccc0c07b25e25ecfe58439312523a78662d5be7fcbcc98ebf5a84807efe836ee89a526730dbc2f7bc840"
          "9dad8bbb96c4cdc03bc103e1a194bbd8")),
)


@pytest.mark.parametrize(("length", "expected"), RFC3962)
def test_cts_rfc3962(length: int, expected: str) -> None:
    spec = REGISTRY.get(Mechanism.AES_CTS)
    key = SecretMaterial("AES", RFC3962_KEY)
    plain = RFC3962_PLAIN[:length]
    assert spec.encrypt(key, bytes(16)).oneshot(plain).hex() == expected
    assert spec.decrypt(key, bytes(16)).oneshot(bytes.fromhex(expected)) == plain


# --- error codes of the new rows ---------------------------------------------------------------

def test_new_row_errors(keys: dict) -> None:
    aes = keys["aes128"]
    _raises(CKR.DATA_LEN_RANGE, REGISTRY.get(Mechanism.AES_CTS).encrypt(aes, bytes(16)).oneshot, b"short")
    _raises(CKR.ENCRYPTED_DATA_LEN_RANGE, REGISTRY.get(Mechanism.AES_CTS).decrypt(aes, bytes(16)).oneshot, b"short")
    _raises(CKR.MECHANISM_PARAM_INVALID, REGISTRY.get(Mechanism.AES_OFB).validate, bytes(8))
    ccm = REGISTRY.get(Mechanism.AES_CCM)
    for bad in (params.CcmParams(4, bytes(6), b"", 16), params.CcmParams(4, bytes(12), b"", 5),
                params.CcmParams(1 << 24, bytes(12), b"", 16), None):
        _raises(CKR.MECHANISM_PARAM_INVALID, ccm.validate, bad)
    good = params.CcmParams(4, bytes(12), b"", 16)
    _raises(CKR.DATA_LEN_RANGE, ccm.encrypt(aes, good).oneshot, b"12345")
    _raises(CKR.ENCRYPTED_DATA_LEN_RANGE, ccm.decrypt(aes, good).oneshot, b"1234" + bytes(15))
    sealed = ccm.encrypt(aes, good).oneshot(b"1234")
    _raises(CKR.ENCRYPTED_DATA_INVALID, ccm.decrypt(aes, good).oneshot, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    xts = REGISTRY.get(constants.CKM_AES_XTS)
    _raises(CKR.KEY_SIZE_RANGE, xts.encrypt, aes, bytes(16))
    _raises(CKR.DATA_LEN_RANGE, xts.encrypt(keys["xts64"], bytes(16)).oneshot, b"short")
    _raises(CKR.KEY_TYPE_INCONSISTENT, REGISTRY.get(Mechanism.AES_MAC).sign, keys["p256"], None)
    mac = REGISTRY.get(Mechanism.AES_MAC).verify(aes, None)
    _raises(CKR.SIGNATURE_LEN_RANGE, mac.oneshot, b"data", bytes(16))
    _raises(CKR.MECHANISM_PARAM_INVALID, REGISTRY.get(Mechanism.DES3_CMAC_GENERAL).validate, 9)
    _raises(CKR.KEY_TYPE_INCONSISTENT, _derive, Mechanism.XOR_BASE_AND_DATA, b"x", KeyType.GENERIC_SECRET, None,
            keys["p256"])
    kw7 = REGISTRY.get(Mechanism.AES_KEY_WRAP_PKCS7)
    _raises(CKR.DATA_LEN_RANGE, kw7.encrypt(aes, None).oneshot, b"1234567")
    _raises(CKR.ENCRYPTED_DATA_INVALID, kw7.decrypt(aes, None).oneshot, bytes(24))
