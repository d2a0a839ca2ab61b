"""MAC mechanisms: HMAC over SHA-1/SHA-2 (SHA-512/224 and SHA-512/256 included)/SHA-3 (PKCS#11 3.0
§2.20+) and over MD5 (the legacy set nShield keeps behind its weak-algorithm assurances), AES-CMAC
(§2.14.9) and DES3-CMAC, each with its *_GENERAL variant, whose CK_MAC_GENERAL_PARAMS gives the
output length."""

from __future__ import annotations

from typing import Any

from emulator.crypto import digest as digest_crypto
from emulator.crypto import mac as mac_crypto
from emulator.crypto.material import SecretMaterial

from .. import constants
from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import failures
from .keybytes import check_secret_length
from .ops import MacSignOp, MacVerifyOp
from .registry import MechanismSpec, Registry, no_parameter

SIGN_VERIFY = MechanismFlag.SIGN | MechanismFlag.VERIFY

#: (HMAC mechanism, HMAC_GENERAL mechanism, hash, the key type made for it)
HMAC_ROWS = (
    (Mechanism.SHA_1_HMAC, Mechanism.SHA_1_HMAC_GENERAL, "SHA1", KeyType.SHA_1_HMAC),
    (Mechanism.SHA224_HMAC, Mechanism.SHA224_HMAC_GENERAL, "SHA224", KeyType.SHA224_HMAC),
    (Mechanism.SHA256_HMAC, Mechanism.SHA256_HMAC_GENERAL, "SHA256", KeyType.SHA256_HMAC),
    (Mechanism.SHA384_HMAC, Mechanism.SHA384_HMAC_GENERAL, "SHA384", KeyType.SHA384_HMAC),
    (Mechanism.SHA512_HMAC, Mechanism.SHA512_HMAC_GENERAL, "SHA512", KeyType.SHA512_HMAC),
    (Mechanism.SHA3_224_HMAC, Mechanism.SHA3_224_HMAC_GENERAL, "SHA3_224", KeyType.SHA3_224_HMAC),
    (Mechanism.SHA3_256_HMAC, Mechanism.SHA3_256_HMAC_GENERAL, "SHA3_256", KeyType.SHA3_256_HMAC),
    (Mechanism.SHA3_384_HMAC, Mechanism.SHA3_384_HMAC_GENERAL, "SHA3_384", KeyType.SHA3_384_HMAC),
    (Mechanism.SHA3_512_HMAC, Mechanism.SHA3_512_HMAC_GENERAL, "SHA3_512", KeyType.SHA3_512_HMAC),
    (constants.CKM_SHA512_224_HMAC, constants.CKM_SHA512_224_HMAC_GENERAL, "SHA512_224", constants.CKK_SHA512_224_HMAC),
    (constants.CKM_SHA512_256_HMAC, constants.CKM_SHA512_256_HMAC_GENERAL, "SHA512_256", constants.CKK_SHA512_256_HMAC),
)
#: HMAC over the legacy MD5 (RFC 2104, RFC 2202 vectors): registered like the others, but not a PRF
#: the KDF rows offer (`derive.PRFS` reads HMAC_ROWS only).
LEGACY_HMAC_ROWS = (
    (constants.CKM_MD5_HMAC, constants.CKM_MD5_HMAC_GENERAL, "MD5", constants.CKK_MD5_HMAC),
)
#: HMAC key sizes in bytes, as SoftHSM2 reports them for CK_MECHANISM_INFO (RFC 2104 allows any
#: length; keys longer than the hash block are hashed first).
HMAC_MIN_KEY, HMAC_MAX_KEY = 1, 512
CMAC_BLOCK = 16


def general_length(max_len: int) -> Any:
    """Validator of CK_MAC_GENERAL_PARAMS: an output length of 1..max_len bytes."""

    def validate(param: Any) -> None:
        if not isinstance(param, int) or not 1 <= param <= max_len:
            raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"MAC length must be 1..{max_len}")

    return validate


def _hmac_ops(hash_name: str, general: bool) -> tuple[Any, Any]:
    full = digest_crypto.digest_size(hash_name)

    def context(material: Any) -> mac_crypto.HmacContext:
        if not isinstance(material, SecretMaterial):
            raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "HMAC needs a secret key")
        value = material.value
        if not HMAC_MIN_KEY <= len(value) <= HMAC_MAX_KEY:
            raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"HMAC key of {len(value)} bytes")
        return mac_crypto.HmacContext(hash_name, value)

    def sign(material: Any, param: Any) -> MacSignOp:
        return MacSignOp(context(material), param if general else full)

    def verify(material: Any, param: Any) -> MacVerifyOp:
        return MacVerifyOp(context(material), param if general else full)

    return sign, verify


def _cmac_ops(general: bool, cipher: str = "AES", block: int = CMAC_BLOCK) -> tuple[Any, Any]:
    def context(material: Any) -> mac_crypto.CmacContext:
        if not isinstance(material, SecretMaterial):
            raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, f"CMAC needs an {cipher} key")
        check_secret_length(cipher, len(material.value))
        return mac_crypto.CmacContext(cipher, material.value)

    def sign(material: Any, param: Any) -> MacSignOp:
        return MacSignOp(context(material), param if general else block)

    def verify(material: Any, param: Any) -> MacVerifyOp:
        return MacVerifyOp(context(material), param if general else block)

    return sign, verify


#: A CMAC key of a length the cipher has no variant for.
CMAC_FAILURES = {"sign": failures.KEY_SIZE, "verify": failures.KEY_SIZE}


def register(registry: Registry) -> None:
    for plain, general, hash_name, key_type in HMAC_ROWS + LEGACY_HMAC_ROWS:
        key_types = frozenset({KeyType.GENERIC_SECRET, key_type})
        for mechanism, is_general in ((plain, False), (general, True)):
            sign, verify = _hmac_ops(hash_name, is_general)
            registry.add(MechanismSpec(
                mechanism=mechanism, flags=SIGN_VERIFY, min_key=HMAC_MIN_KEY, max_key=HMAC_MAX_KEY,
                key_types=key_types, param_kind="ulong" if is_general else "none",
                validate=general_length(digest_crypto.digest_size(hash_name)) if is_general
                else no_parameter,
                sign=sign, verify=verify))
    for mechanism, is_general in ((Mechanism.AES_CMAC, False), (Mechanism.AES_CMAC_GENERAL, True)):
        sign, verify = _cmac_ops(is_general)
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=SIGN_VERIFY, min_key=16, max_key=32,
            key_types=frozenset({KeyType.AES}), param_kind="ulong" if is_general else "none",
            validate=general_length(CMAC_BLOCK) if is_general
            else no_parameter,
            sign=sign, verify=verify, failure_codes=CMAC_FAILURES))
    # CKM_DES3_CMAC(_GENERAL) (PKCS#11 3.0 §2.x): SP 800-38B over three-key TDEA, 8-byte blocks; DES3
    # key sizes are fixed, so CK_MECHANISM_INFO carries 0/0 like the other DES3 rows.
    for mechanism, is_general in ((Mechanism.DES3_CMAC, False), (Mechanism.DES3_CMAC_GENERAL, True)):
        sign, verify = _cmac_ops(is_general, "DES3", 8)
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=SIGN_VERIFY, key_types=frozenset({KeyType.DES3}),
            param_kind="ulong" if is_general else "none",
            validate=general_length(8) if is_general else no_parameter, sign=sign, verify=verify,
            failure_codes=CMAC_FAILURES))
