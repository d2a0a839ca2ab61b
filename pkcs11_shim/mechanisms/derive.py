"""Key derivation mechanisms (PKCS#11 3.0 §2.42 SP 800-108, §2.43 HKDF, §2.36 PBKDF2, §2.x
"miscellaneous simple key derivation"): CKM_HKDF_DERIVE / CKM_HKDF_DATA / CKM_HKDF_KEY_GEN,
CKM_SP800_108_COUNTER_KDF, CKM_PKCS5_PBKD2, CKM_CONCATENATE_BASE_AND_KEY / _BASE_AND_DATA /
_DATA_AND_BASE, CKM_XOR_BASE_AND_DATA, CKM_EXTRACT_KEY_FROM_KEY.

Rules taken from the specification:
- HKDF: bExtract and/or bExpand; the salt (CKF_HKDF_SALT_NULL / _DATA / _KEY) matters only when
  extracting; extract-only yields the PRK (hash length); expand needs CKA_VALUE_LEN (or a key type
  that fixes it), at most 255 hash lengths (RFC 5869 §2.3). Base keys: CKK_HKDF or generic secret.
- SP 800-108 counter mode: exactly one CK_SP800_108_ITERATION_VARIABLE (the counter, 8..32 bits),
  at most one CK_SP800_108_DKM_LENGTH, any CK_SP800_108_BYTE_ARRAYs, in the caller's order.
  Additional derived keys (pAdditionalDerivedKeys) are refused with CKR_MECHANISM_PARAM_INVALID.
  PRFs: HMAC over SHA-1/SHA-2/SHA-3 (generic secret or HMAC keys) and AES-CMAC (AES keys).
- CONCATENATE_BASE_AND_KEY and the HKDF salt key name a second key; `keymgmt.derive_key` hands in
  `resolve_key(handle)`, which applies the same checks as for the base key (secret key, CKA_DERIVE,
  the module's ACL) before it returns the material.
- XOR_BASE_AND_DATA: the result is as long as the shorter of the two. EXTRACT_KEY_FROM_KEY: bits from
  the bit index on, wrapping around the base key's value.
Key-generation sizes (HKDF_KEY_GEN, PKCS5_PBKD2) are bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.crypto import digest as digest_crypto
from emulator.crypto import kdf as kdf_crypto
from emulator.crypto import mac as mac_crypto
from emulator.crypto.material import SecretMaterial

from .. import constants
from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import failures, keybytes, params
from .hashes import DIGEST_MECHANISMS
from .mac import HMAC_ROWS
from .registry import MechanismSpec, Registry

F = MechanismFlag
SECRET_BASES = frozenset(keybytes.SECRET_KINDS_BY_KEY_TYPE)
HKDF_BASES = frozenset({constants.CKK_HKDF, KeyType.GENERIC_SECRET})
MAX_LEN = 0x10000


def _invalid(message: str) -> PKCS11Error:
    return PKCS11Error(CKR.MECHANISM_PARAM_INVALID, message)


def _secret(material: Any) -> bytes:
    if not isinstance(material, SecretMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "a secret base key is needed")
    return material.value


def _length(key_type: int, value_len: int | None, default: int | None = None) -> int:
    """The number of bytes to derive: CKA_VALUE_LEN, or what the key type fixes, or `default`."""
    if value_len is not None:
        return value_len
    allowed = keybytes.VALID_LENGTHS[keybytes.secret_kind(key_type)]
    if allowed is not None and len(allowed) == 1:
        return allowed[0]
    if default is not None:
        return default
    raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN is needed for this derivation")


# --- HKDF ------------------------------------------------------------------------------------------

def validate_hkdf(param: Any) -> None:
    params.require(param, params.HkdfParams, "CK_HKDF_PARAMS")
    if not (param.extract or param.expand):
        raise _invalid("bExtract and bExpand are both FALSE")
    if param.prf_hash not in DIGEST_MECHANISMS:
        raise _invalid(f"prfHashMechanism 0x{param.prf_hash:x}")
    if param.extract:
        if param.salt_type not in (constants.CKF_HKDF_SALT_NULL, constants.CKF_HKDF_SALT_DATA, constants.CKF_HKDF_SALT_KEY):
            raise _invalid(f"ulSaltType 0x{param.salt_type:x}")
        if param.salt_type == constants.CKF_HKDF_SALT_DATA and not param.salt:
            raise _invalid("CKF_HKDF_SALT_DATA without salt")
        if param.salt_type != constants.CKF_HKDF_SALT_DATA and param.salt:
            raise _invalid("salt data given with another salt type")


def _hkdf(base: Any, param: params.HkdfParams, key_type: int, value_len: int | None,
          resolve_key: Callable[[int], Any] | None = None) -> SecretMaterial:
    hash_name = DIGEST_MECHANISMS[param.prf_hash]
    hash_len = digest_crypto.digest_size(hash_name)
    ikm = _secret(base)
    if param.extract:
        salt: bytes | None = None
        if param.salt_type == constants.CKF_HKDF_SALT_DATA:
            salt = param.salt
        elif param.salt_type == constants.CKF_HKDF_SALT_KEY:
            if resolve_key is None:
                raise _invalid("no salt key can be resolved here")
            salt = _secret(resolve_key(param.salt_key))
        prk = kdf_crypto.hkdf_extract(hash_name, salt, ikm)
    else:
        prk = ikm
    if not param.expand:
        length = _length(key_type, value_len, hash_len)
        if length != hash_len:
            raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "extract-only HKDF yields exactly the hash length")
        return keybytes.derived(key_type, prk, length)
    length = _length(key_type, value_len)
    if not 1 <= length <= 255 * hash_len:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"HKDF cannot expand to {length} bytes")
    return keybytes.derived(key_type, kdf_crypto.hkdf_expand(hash_name, prk, param.info, length), length)


def _hkdf_key_gen(param: Any, key_type: int, value_len: int | None) -> SecretMaterial:
    if value_len is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN is required")
    if not 1 <= value_len <= MAX_LEN:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"HKDF key of {value_len} bytes")
    return SecretMaterial("GENERIC", mac_crypto.generate_secret(value_len))


# --- SP 800-108 counter mode -------------------------------------------------------------------

#: prfType -> (PRF kind, hash name or cipher)
PRFS: dict[int, tuple[str, str]] = {
    **{plain: ("HMAC", hash_name) for plain, _general, hash_name, _kt in HMAC_ROWS},
    Mechanism.AES_CMAC: ("CMAC", "AES"),
}


def validate_sp800_108(param: Any) -> None:
    params.require(param, params.Sp800108Params, "CK_SP800_108_KDF_PARAMS")
    if param.prf not in PRFS:
        raise _invalid(f"prfType 0x{param.prf:x}")
    if param.additional_keys:
        raise _invalid("additional derived keys are not supported")
    kinds = [d.type for d in param.data_params]
    if kinds.count(constants.CK_SP800_108_ITERATION_VARIABLE) != 1 or kinds.count(constants.CK_SP800_108_DKM_LENGTH) > 1:
        raise _invalid("counter mode needs one iteration variable and at most one DKM length")
    for d in param.data_params:
        if d.type == constants.CK_SP800_108_OPTIONAL_COUNTER:
            raise _invalid("CK_SP800_108_OPTIONAL_COUNTER belongs to the feedback/pipeline modes")
        if d.type == constants.CK_SP800_108_ITERATION_VARIABLE and d.width_bits not in (8, 16, 24, 32):
            raise _invalid(f"counter of {d.width_bits} bits")
        if d.type == constants.CK_SP800_108_DKM_LENGTH:
            if d.width_bits not in range(8, 65, 8):
                raise _invalid(f"DKM length of {d.width_bits} bits")
            if d.method not in (constants.CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
                                constants.CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS):
                raise _invalid(f"DKM length method {d.method}")


def _encode(value: int, width_bits: int, little: bool) -> bytes:
    return value.to_bytes(width_bits // 8, "little" if little else "big")


def _sp800_108(base: Any, param: params.Sp800108Params, key_type: int, value_len: int | None,
               resolve_key: Any = None) -> SecretMaterial:
    kind, name = PRFS[param.prf]
    key = _secret(base)
    length = _length(key_type, value_len)
    if not 1 <= length <= MAX_LEN:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"cannot derive {length} bytes")
    if kind == "HMAC":
        block = digest_crypto.digest_size(name)
        make = lambda: mac_crypto.HmacContext(name, key)
    else:
        block = 16
        make = lambda: mac_crypto.CmacContext(name, key)
    make()  # a CMAC key of a length AES lacks fails here, before any output (the row's failure_codes)
    if kind == "HMAC" and not key:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, "empty HMAC key")
    segments = -(-length // block)
    for d in param.data_params:
        if d.type == constants.CK_SP800_108_ITERATION_VARIABLE and segments >= 1 << d.width_bits:
            raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "the counter is too narrow for this length")

    def prf(data: bytes) -> bytes:
        ctx = make()
        ctx.update(data)
        return ctx.finalize()

    def build_input(i: int) -> bytes:
        out = bytearray()
        for d in param.data_params:
            if d.type == constants.CK_SP800_108_ITERATION_VARIABLE:
                out += _encode(i, d.width_bits, d.little_endian)
            elif d.type == constants.CK_SP800_108_DKM_LENGTH:
                bits = 8 * (length if d.method == constants.CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS else segments * block)
                out += _encode(bits, d.width_bits, d.little_endian)
            else:
                out += d.value
        return bytes(out)

    return keybytes.derived(key_type, kdf_crypto.sp800_108_counter(prf, length, build_input), length)


# --- PBKDF2 ----------------------------------------------------------------------------------------

PBKD2_PRFS = {
    constants.CKP_PKCS5_PBKD2_HMAC_SHA1: "SHA1", constants.CKP_PKCS5_PBKD2_HMAC_SHA224: "SHA224",
    constants.CKP_PKCS5_PBKD2_HMAC_SHA256: "SHA256", constants.CKP_PKCS5_PBKD2_HMAC_SHA384: "SHA384",
    constants.CKP_PKCS5_PBKD2_HMAC_SHA512: "SHA512", constants.CKP_PKCS5_PBKD2_HMAC_SHA512_224: "SHA512_224",
    constants.CKP_PKCS5_PBKD2_HMAC_SHA512_256: "SHA512_256",
}
PBKD2_KEY_TYPES = (KeyType.GENERIC_SECRET, KeyType.AES, KeyType.DES3, *sorted(keybytes.HMAC_KEY_TYPES))


def validate_pbkd2(param: Any) -> None:
    params.require(param, params.Pbkd2Params, "CK_PKCS5_PBKD2_PARAMS2")
    if param.salt_source != constants.CKZ_SALT_SPECIFIED:
        raise _invalid("saltSource must be CKZ_SALT_SPECIFIED")
    if param.prf not in PBKD2_PRFS or param.prf_data:
        raise _invalid(f"PRF 0x{param.prf:x} (with no PRF data) not supported")
    if not 1 <= param.iterations <= 10_000_000:
        raise _invalid(f"{param.iterations} iterations")


def _pbkd2(param: params.Pbkd2Params, key_type: int, value_len: int | None) -> SecretMaterial:
    length = _length(key_type, value_len)
    kind = keybytes.secret_kind(key_type)
    keybytes.check_secret_length(kind, length, CKR.KEY_SIZE_RANGE)
    value = kdf_crypto.pbkdf2(PBKD2_PRFS[param.prf], param.password, param.salt, param.iterations, length)
    return SecretMaterial(kind, value)


# --- simple derivations ------------------------------------------------------------------------

def _validate_data(param: Any) -> None:
    if not isinstance(param, bytes) or not param:
        raise _invalid("CK_KEY_DERIVATION_STRING_DATA with data required")


def _validate_handle(param: Any) -> None:
    if not isinstance(param, int) or param == 0:
        raise _invalid("a key handle is required")


def _validate_bit_index(param: Any) -> None:
    if not isinstance(param, int):
        raise _invalid("CK_EXTRACT_PARAMS required")


def _concatenate(order: str) -> Any:
    def derive(base: Any, param: Any, key_type: int, value_len: int | None,
               resolve_key: Callable[[int], Any] | None = None) -> SecretMaterial:
        value = _secret(base)
        if order == "key":
            if resolve_key is None:
                raise _invalid("no second key can be resolved here")
            joined = value + _secret(resolve_key(param))
        elif order == "base+data":
            joined = value + param
        else:
            joined = param + value
        return keybytes.derived(key_type, joined, value_len)

    return derive


def _xor(base: Any, param: bytes, key_type: int, value_len: int | None, resolve_key: Any = None) -> SecretMaterial:
    value = _secret(base)
    return keybytes.derived(key_type, bytes(a ^ b for a, b in zip(value, param)), value_len)


def _extract(base: Any, param: int, key_type: int, value_len: int | None, resolve_key: Any = None) -> SecretMaterial:
    value = _secret(base)
    length = _length(key_type, value_len)
    nbits = 8 * len(value)
    if length * 8 > nbits:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "cannot extract more bits than the base key has")
    number = int.from_bytes(value, "big")
    bits = [(number >> (nbits - 1 - ((param + i) % nbits))) & 1 for i in range(8 * length)]
    out = int("".join(map(str, bits)), 2).to_bytes(length, "big")
    return keybytes.derived(key_type, out, length)


def register(registry: Registry) -> None:
    for mechanism in (constants.CKM_HKDF_DERIVE, constants.CKM_HKDF_DATA):
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=F.DERIVE, min_key=1, max_key=MAX_LEN, key_types=HKDF_BASES,
            param_kind="hkdf", validate=validate_hkdf, derive=_hkdf))
    registry.add(MechanismSpec(
        mechanism=constants.CKM_HKDF_KEY_GEN, flags=F.GENERATE, min_key=1, max_key=MAX_LEN, generate=_hkdf_key_gen,
        generated_key_types=(constants.CKK_HKDF,)))
    registry.add(MechanismSpec(
        mechanism=constants.CKM_SP800_108_COUNTER_KDF, flags=F.DERIVE, min_key=1, max_key=MAX_LEN,
        key_types=frozenset({KeyType.GENERIC_SECRET, KeyType.AES, constants.CKK_HKDF, *keybytes.HMAC_KEY_TYPES}),
        param_kind="sp800_108", validate=validate_sp800_108, derive=_sp800_108,
        failure_codes={"derive": failures.KEY_SIZE}))
    registry.add(MechanismSpec(
        mechanism=Mechanism.PKCS5_PBKD2, flags=F.GENERATE, min_key=1, max_key=MAX_LEN, param_kind="pbkd2",
        validate=validate_pbkd2, generate=_pbkd2, generated_key_types=PBKD2_KEY_TYPES))
    simple = {"min_key": 1, "max_key": MAX_LEN, "key_types": SECRET_BASES}
    registry.add(MechanismSpec(
        mechanism=Mechanism.CONCATENATE_BASE_AND_KEY, flags=F.DERIVE, param_kind="ulong", validate=_validate_handle,
        derive=_concatenate("key"), **simple))
    for mechanism, order in ((Mechanism.CONCATENATE_BASE_AND_DATA, "base+data"),
                             (Mechanism.CONCATENATE_DATA_AND_BASE, "data+base")):
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=F.DERIVE, param_kind="key_derivation_string", validate=_validate_data,
            derive=_concatenate(order), **simple))
    registry.add(MechanismSpec(
        mechanism=Mechanism.XOR_BASE_AND_DATA, flags=F.DERIVE, param_kind="key_derivation_string",
        validate=_validate_data, derive=_xor, **simple))
    registry.add(MechanismSpec(
        mechanism=Mechanism.EXTRACT_KEY_FROM_KEY, flags=F.DERIVE, param_kind="ulong", validate=_validate_bit_index,
        derive=_extract, **simple))
