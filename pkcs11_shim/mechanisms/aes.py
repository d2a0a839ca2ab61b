"""AES mechanisms (PKCS#11 3.0 §2.14): key generation, ECB, CBC, CBC-PAD, CTR, GCM, and key
derivation by encryption (AES_ECB_ENCRYPT_DATA, AES_CBC_ENCRYPT_DATA).

Key sizes in CK_MECHANISM_INFO are bytes for AES (the specification says so; SoftHSM2 agrees).
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import aes as aes_crypto
from emulator.crypto import kdf
from emulator.crypto.material import SecretMaterial

from .. import constants
from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import aead, keybytes, params
from .blockcipher import BlockCipher, iv_validator, mode
from .ops import BufferedDecryptOp, StreamCipherOp
from .registry import MechanismSpec, Registry

MIN_KEY, MAX_KEY = 16, 32
KEY_TYPES = frozenset({KeyType.AES})
CIPHER_FLAGS = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
WRAP_FLAGS = MechanismFlag.WRAP | MechanismFlag.UNWRAP

AES = BlockCipher("AES", aes_crypto.BLOCK_SIZE, aes_crypto.ecb, aes_crypto.cbc)


def generate(param: Any, key_type: int, value_len: int | None) -> SecretMaterial:
    if value_len is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN is required for an AES key")
    keybytes.check_secret_length("AES", value_len)
    return SecretMaterial("AES", aes_crypto.generate_key(value_len))


# --- CTR ---------------------------------------------------------------------------------------

def validate_ctr(param: Any) -> None:
    if not isinstance(param, params.AesCtrParams) or len(param.counter_block) != 16 \
            or not 1 <= param.counter_bits <= 128:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_AES_CTR_PARAMS: 1..128 counter bits and a 16-byte block")


def _ctr(material: Any, param: params.AesCtrParams) -> StreamCipherOp:
    # PKCS#11 3.0 §2.14.x: the low ulCounterBits bits of cb are the counter. `cryptography`
    # increments the whole block; as long as the counter part does not wrap the two agree, so the
    # input is bounded to the blocks left before the wrap (hand-written bound, CKR_DATA_LEN_RANGE).
    mask = (1 << param.counter_bits) - 1
    blocks_left = (1 << param.counter_bits) - (int.from_bytes(param.counter_block, "big") & mask)
    ctx = aes_crypto.ctr(AES.key(material), param.counter_block)
    return StreamCipherOp(ctx, limit=blocks_left * aes_crypto.BLOCK_SIZE)


# --- GCM ---------------------------------------------------------------------------------------

def validate_gcm(param: Any) -> None:
    params.require(param, params.GcmParams, "CK_GCM_PARAMS")
    low, high = aes_crypto.GCM_IV_RANGE
    if not low <= len(param.iv) <= high:
        # PKCS#11 allows 1..2^32-1 bytes; `cryptography` implements 8..128.
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"GCM IV of {len(param.iv)} bytes (supported: {low}..{high})")
    tag_low, tag_high = aes_crypto.GCM_TAG_RANGE
    if param.tag_bits % 8 or not 8 * tag_low <= param.tag_bits <= 8 * tag_high:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"GCM tag of {param.tag_bits} bits")


def _gcm_encrypt(material: Any, param: params.GcmParams) -> StreamCipherOp:
    return StreamCipherOp(aes_crypto.GcmEncryptor(AES.key(material), param.iv, param.aad, param.tag_bits // 8))


def _gcm_decrypt(material: Any, param: params.GcmParams) -> BufferedDecryptOp:
    key, tag_len = AES.key(material), param.tag_bits // 8
    return BufferedDecryptOp(lambda data: aes_crypto.gcm_decrypt(key, param.iv, param.aad, data, tag_len), tag_len)


def _gcm_wrap(wrapping: Any, param: params.GcmParams, target: Any) -> bytes:
    return aes_crypto.gcm_encrypt(AES.key(wrapping), param.iv, param.aad, keybytes.wrappable(target),
                                  param.tag_bits // 8)


def _gcm_unwrap(unwrapping: Any, param: params.GcmParams, wrapped: bytes, target_kind: str,
                value_len: int | None) -> Any:
    tag_len = param.tag_bits // 8
    if len(wrapped) <= tag_len:
        raise PKCS11Error(CKR.WRAPPED_KEY_LEN_RANGE, "wrapped key shorter than the tag")
    value = aes_crypto.gcm_decrypt(AES.key(unwrapping), param.iv, param.aad, wrapped, tag_len)
    return keybytes.unwrapped(value, target_kind, value_len)


# --- derivation by encryption -----------------------------------------------------------------

def _whole_blocks(data: bytes) -> None:
    if not data or len(data) % aes_crypto.BLOCK_SIZE:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "derivation data must be a non-empty multiple of 16 bytes")


def validate_ecb_encrypt_data(param: Any) -> None:
    if not isinstance(param, bytes):
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_KEY_DERIVATION_STRING_DATA required")
    _whole_blocks(param)


def validate_cbc_encrypt_data(param: Any) -> None:
    if not isinstance(param, params.AesCbcEncryptDataParams) or len(param.iv) != 16:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_AES_CBC_ENCRYPT_DATA_PARAMS required")
    _whole_blocks(param.data)


def _data_long_enough(data: bytes, value_len: int | None) -> None:
    """*_ENCRYPT_DATA keys are the encrypted data itself: data shorter than the key is a bad parameter."""
    if value_len is not None and len(data) < value_len:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"{len(data)} bytes of data cannot make a {value_len}-byte key")


def _derive_ecb(base: Any, param: bytes, key_type: int, value_len: int | None,
                resolve_key: Any = None) -> SecretMaterial:
    _data_long_enough(param, value_len)
    return keybytes.derived(key_type, kdf.aes_ecb_encrypt_data(AES.key(base), param), value_len)


def _derive_cbc(base: Any, param: params.AesCbcEncryptDataParams, key_type: int,
                value_len: int | None, resolve_key: Any = None) -> SecretMaterial:
    _data_long_enough(param.data, value_len)
    return keybytes.derived(key_type, kdf.aes_cbc_encrypt_data(AES.key(base), param.iv, param.data), value_len)


def register(registry: Registry) -> None:
    registry.add(MechanismSpec(
        mechanism=Mechanism.AES_KEY_GEN, flags=MechanismFlag.GENERATE, min_key=MIN_KEY, max_key=MAX_KEY,
        generate=generate, generated_key_types=(KeyType.AES,)))
    for mechanism, cbc, pad in ((Mechanism.AES_ECB, False, False), (Mechanism.AES_CBC, True, False),
                                (Mechanism.AES_CBC_PAD, True, True)):
        impls = mode(AES, cbc=cbc, pad=pad)
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=CIPHER_FLAGS | WRAP_FLAGS, min_key=MIN_KEY, max_key=MAX_KEY,
            key_types=KEY_TYPES, param_kind="bytes" if cbc else "none",
            **({"validate": iv_validator(aes_crypto.BLOCK_SIZE)} if cbc else {}),
            encrypt=impls.encrypt, decrypt=impls.decrypt, wrap=impls.wrap, unwrap=impls.unwrap))
    registry.add(MechanismSpec(
        mechanism=Mechanism.AES_CTR, flags=CIPHER_FLAGS, min_key=MIN_KEY, max_key=MAX_KEY,
        key_types=KEY_TYPES, param_kind="aes_ctr", validate=validate_ctr, encrypt=_ctr, decrypt=_ctr))
    registry.add(MechanismSpec(
        mechanism=Mechanism.AES_GCM,
        flags=CIPHER_FLAGS | WRAP_FLAGS | constants.CKF_MESSAGE_ENCRYPT | constants.CKF_MESSAGE_DECRYPT,
        min_key=MIN_KEY, max_key=MAX_KEY, key_types=KEY_TYPES, param_kind="gcm", validate=validate_gcm,
        encrypt=_gcm_encrypt, decrypt=_gcm_decrypt, wrap=_gcm_wrap, unwrap=_gcm_unwrap,
        message_encrypt=aead.factory("gcm", True, AES.key), message_decrypt=aead.factory("gcm", False, AES.key)))
    registry.add(MechanismSpec(
        mechanism=Mechanism.AES_ECB_ENCRYPT_DATA, flags=MechanismFlag.DERIVE, min_key=MIN_KEY, max_key=MAX_KEY,
        key_types=KEY_TYPES, param_kind="key_derivation_string", validate=validate_ecb_encrypt_data,
        derive=_derive_ecb))
    registry.add(MechanismSpec(
        mechanism=Mechanism.AES_CBC_ENCRYPT_DATA, flags=MechanismFlag.DERIVE, min_key=MIN_KEY, max_key=MAX_KEY,
        key_types=KEY_TYPES, param_kind="aes_cbc_encrypt_data", validate=validate_cbc_encrypt_data,
        derive=_derive_cbc))
