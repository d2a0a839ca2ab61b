"""More AES mechanisms (PKCS#11 3.0 §2.14): OFB, CFB8, CFB128, CTS, XTS (+ its key generation),
CCM, the CBC-MAC pair AES_MAC / AES_MAC_GENERAL, and the message-based AEAD factories for GCM/CCM.

- OFB/CFB take a 16-byte IV and any input length (stream modes, multi-part).
- CTS (CBC-CS3) needs at least one block; multi-part input is kept until final (the last two
  blocks are only known then), as Kryoptic does.
- XTS (CKK_AES_XTS, 32 or 64 bytes) takes the 16-byte tweak as its parameter; the whole input is one
  data unit, so it is single-part.
- CCM (CK_CCM_PARAMS) fixes the data length in ulDataLen; it is single-part on our side (buffered
  multi-part decrypt/encrypt as GCM decryption is).
- AES_MAC is CBC-MAC, half a block of output (PKCS#11's general block-cipher MAC rule);
  AES_MAC_GENERAL takes CK_MAC_GENERAL_PARAMS (1..16).
Sizes are key bytes (XTS: both halves, 32..64).
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import aes as aes_crypto
from emulator.crypto import aesmodes as modes_crypto
from emulator.crypto import mac as mac_crypto
from emulator.crypto.material import SecretMaterial

from .. import constants
from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import aead, failures, params
from .aes import AES, MAX_KEY, MIN_KEY
from .blockcipher import iv_validator
from .mac import general_length
from .ops import (
    BufferedDecryptOp,
    MacSignOp,
    MacVerifyOp,
    SinglePartCipherOp,
    StreamCipherOp,
)
from .registry import MechanismSpec, Registry

F = MechanismFlag
CIPHER = F.ENCRYPT | F.DECRYPT
KEY_TYPES = frozenset({KeyType.AES})
BLOCK = aes_crypto.BLOCK_SIZE


# --- OFB / CFB ---------------------------------------------------------------------------------

def _ofb(material: Any, param: bytes) -> StreamCipherOp:
    return StreamCipherOp(modes_crypto.ofb(AES.key(material), param))


def _cfb(segment_bits: int, encrypt: bool) -> Any:
    def make(material: Any, param: bytes) -> StreamCipherOp:
        return StreamCipherOp(modes_crypto.cfb(AES.key(material), param, encrypt, segment_bits))

    return make


# --- CTS -----------------------------------------------------------------------------------------

def _cts(encrypt: bool) -> Any:
    def make(material: Any, param: bytes) -> BufferedDecryptOp:
        key = AES.key(material)
        run = modes_crypto.cts_encrypt if encrypt else modes_crypto.cts_decrypt
        return BufferedDecryptOp(lambda data: run(key, param, data), BLOCK,
                                 CKR.DATA_LEN_RANGE if encrypt else CKR.ENCRYPTED_DATA_LEN_RANGE)

    return make


# --- XTS -----------------------------------------------------------------------------------------

def _xts_key(material: Any) -> bytes:
    if not isinstance(material, SecretMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an AES-XTS key is needed")
    if len(material.value) not in modes_crypto.XTS_KEY_SIZES:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"AES-XTS key of {len(material.value)} bytes")
    return material.value


def _xts(encrypt: bool) -> Any:
    def make(material: Any, param: bytes) -> SinglePartCipherOp:
        key = _xts_key(material)

        def check(data: bytes) -> None:
            if len(data) < BLOCK:
                raise PKCS11Error(CKR.DATA_LEN_RANGE if encrypt else CKR.ENCRYPTED_DATA_LEN_RANGE,
                                  "XTS needs at least one block")

        return SinglePartCipherOp(lambda data: modes_crypto.xts(key, param, encrypt, data), check)

    return make


def _xts_generate(param: Any, key_type: int, value_len: int | None) -> SecretMaterial:
    if value_len is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN (32 or 64) is required for an AES-XTS key")
    if value_len not in modes_crypto.XTS_KEY_SIZES:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"AES-XTS key of {value_len} bytes")
    while True:
        value = mac_crypto.generate_secret(value_len)
        if value[: value_len // 2] != value[value_len // 2:]:
            return SecretMaterial("GENERIC", value)


# --- CCM -----------------------------------------------------------------------------------------

def validate_ccm(param: Any) -> None:
    params.require(param, params.CcmParams, "CK_CCM_PARAMS")
    low, high = modes_crypto.CCM_NONCE_RANGE
    if not low <= len(param.nonce) <= high:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"CCM nonce of {len(param.nonce)} bytes (7..13)")
    if param.mac_len not in modes_crypto.CCM_TAG_LENGTHS:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"CCM MAC of {param.mac_len} bytes")
    # SP 800-38C: the length field (15 - nonce bytes) must hold ulDataLen.
    if param.data_len >= 1 << (8 * (15 - len(param.nonce))):
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "ulDataLen does not fit the nonce's length field")


def _ccm_encrypt(material: Any, param: params.CcmParams) -> BufferedDecryptOp:
    key = AES.key(material)

    def run(data: bytes) -> bytes:
        if len(data) != param.data_len:
            raise PKCS11Error(CKR.DATA_LEN_RANGE, "input length differs from ulDataLen")
        return modes_crypto.ccm_encrypt(key, param.nonce, param.aad, data, param.mac_len)

    return BufferedDecryptOp(run, 0, CKR.DATA_LEN_RANGE)


def _ccm_decrypt(material: Any, param: params.CcmParams) -> BufferedDecryptOp:
    key = AES.key(material)

    def run(data: bytes) -> bytes:
        if len(data) != param.data_len + param.mac_len:
            raise PKCS11Error(CKR.ENCRYPTED_DATA_LEN_RANGE, "input length differs from ulDataLen + ulMACLen")
        return modes_crypto.ccm_decrypt(key, param.nonce, param.aad, data, param.mac_len)

    return BufferedDecryptOp(run, param.mac_len)


# --- CBC-MAC -------------------------------------------------------------------------------------

def _cbc_mac(general: bool) -> tuple[Any, Any]:
    def context(material: Any) -> mac_crypto.CbcMacContext:
        return mac_crypto.CbcMacContext(AES.key(material))

    def sign(material: Any, param: Any) -> MacSignOp:
        return MacSignOp(context(material), param if general else BLOCK // 2)

    def verify(material: Any, param: Any) -> MacVerifyOp:
        return MacVerifyOp(context(material), param if general else BLOCK // 2)

    return sign, verify


def register(registry: Registry) -> None:
    sizes = {"min_key": MIN_KEY, "max_key": MAX_KEY, "key_types": KEY_TYPES}
    iv16 = iv_validator(BLOCK)
    registry.add(MechanismSpec(mechanism=Mechanism.AES_OFB, flags=CIPHER, param_kind="bytes", validate=iv16,
                               encrypt=_ofb, decrypt=_ofb, **sizes))
    for mechanism, bits in ((Mechanism.AES_CFB8, 8), (Mechanism.AES_CFB128, 128)):
        registry.add(MechanismSpec(mechanism=mechanism, flags=CIPHER, param_kind="bytes", validate=iv16,
                                   encrypt=_cfb(bits, True), decrypt=_cfb(bits, False), **sizes))
    registry.add(MechanismSpec(mechanism=Mechanism.AES_CTS, flags=CIPHER, param_kind="bytes", validate=iv16,
                               encrypt=_cts(True), decrypt=_cts(False), **sizes))
    registry.add(MechanismSpec(
        mechanism=constants.CKM_AES_XTS, flags=CIPHER, min_key=32, max_key=64,
        key_types=frozenset({constants.CKK_AES_XTS}), param_kind="bytes", validate=iv16,
        encrypt=_xts(True), decrypt=_xts(False),
        # An XTS key is two AES keys of one size, which must differ (IEEE 1619).
        failure_codes={"encrypt": failures.KEY_SIZE, "decrypt": failures.KEY_SIZE}))
    registry.add(MechanismSpec(
        mechanism=constants.CKM_AES_XTS_KEY_GEN, flags=F.GENERATE, min_key=32, max_key=64,
        generate=_xts_generate, generated_key_types=(constants.CKK_AES_XTS,)))
    registry.add(MechanismSpec(
        mechanism=Mechanism.AES_CCM, flags=CIPHER | constants.CKF_MESSAGE_ENCRYPT | constants.CKF_MESSAGE_DECRYPT,
        param_kind="ccm", validate=validate_ccm, encrypt=_ccm_encrypt, decrypt=_ccm_decrypt,
        message_encrypt=aead.factory("ccm", True, AES.key), message_decrypt=aead.factory("ccm", False, AES.key),
        **sizes))
    for mechanism, general in ((Mechanism.AES_MAC, False), (Mechanism.AES_MAC_GENERAL, True)):
        sign, verify = _cbc_mac(general)
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=F.SIGN | F.VERIFY, param_kind="ulong" if general else "none",
            **({"validate": general_length(BLOCK)} if general else {}), sign=sign, verify=verify, **sizes))

