"""Key values as wrapping, unwrapping, derivation and generation see them.

- A secret key is wrapped as its value; a private key as PKCS#8 PrivateKeyInfo (PKCS#11 3.0 §2.x
  "wrapping/unwrapping private keys"); public keys are never wrapped.
- `target_kind` (the `unwrap` argument) is a material kind: `AES`, `DES`, `DES3`, `GENERIC`, `HMAC` for
  secret keys; for private keys a kind of `emulator.crypto.material.ASYMMETRIC_KINDS`, one of the
  key-type names `EC_EDWARDS` / `EC_MONTGOMERY` (either curve), or `PRIVATE` (any).
- Key types map onto secret material kinds by `SECRET_KINDS`.
"""

from __future__ import annotations

from typing import Any

from emulator.crypto.material import (
    ASYMMETRIC_KINDS,
    SECRET_KINDS,
    PrivateMaterial,
    SecretMaterial,
)

from ..constants import (
    CKK_AES_XTS,
    CKK_DES,
    CKK_HKDF,
    CKK_MD5_HMAC,
    CKK_SHA512_224_HMAC,
    CKK_SHA512_256_HMAC,
    CKR,
    KeyType,
)
from ..errors import PKCS11Error

#: CKK -> secret material kind.
SECRET_KINDS_BY_KEY_TYPE: dict[int, str] = {
    KeyType.AES: "AES",
    KeyType.DES3: "DES3",
    KeyType.GENERIC_SECRET: "GENERIC",
    KeyType.SHA_1_HMAC: "HMAC",
    KeyType.SHA224_HMAC: "HMAC",
    KeyType.SHA256_HMAC: "HMAC",
    KeyType.SHA384_HMAC: "HMAC",
    KeyType.SHA512_HMAC: "HMAC",
    KeyType.SHA3_224_HMAC: "HMAC",
    KeyType.SHA3_256_HMAC: "HMAC",
    KeyType.SHA3_384_HMAC: "HMAC",
    KeyType.SHA3_512_HMAC: "HMAC",
    CKK_SHA512_224_HMAC: "HMAC",
    CKK_SHA512_256_HMAC: "HMAC",
    # The legacy set nShield keeps behind its weak-algorithm assurances: single DES, HMAC-MD5.
    CKK_DES: "DES",
    CKK_MD5_HMAC: "HMAC",
    # AES-XTS keys (two AES keys side by side) and HKDF keys are plain secret values (3.0 §2.14.x,
    # §2.43): generic material whose key type says what it is for.
    CKK_AES_XTS: "GENERIC",
    CKK_HKDF: "GENERIC",
}
HMAC_KEY_TYPES = frozenset(k for k, kind in SECRET_KINDS_BY_KEY_TYPE.items() if kind == "HMAC")
#: Lengths a kind's value may have (None: any non-empty length).
VALID_LENGTHS: dict[str, tuple[int, ...] | None] = {"AES": (16, 24, 32), "DES": (8,), "DES3": (24,), "GENERIC": None,
                                                    "HMAC": None}
#: Kinds whose key type fixes the length (DES, DES3: no CKA_VALUE_LEN in their key tables).
FIXED_LENGTH: dict[str, int] = {kind: lengths[0] for kind, lengths in VALID_LENGTHS.items()
                                if lengths is not None and len(lengths) == 1}
#: Private-key target kinds that name more than one material kind.
PRIVATE_ALIASES = {"EC_EDWARDS": {"Ed25519", "Ed448"}, "EC_MONTGOMERY": {"X25519", "X448"},
                   "PRIVATE": set(ASYMMETRIC_KINDS)}


def secret_kind(key_type: int) -> str:
    try:
        return SECRET_KINDS_BY_KEY_TYPE[key_type]
    except KeyError:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"key type 0x{key_type:x} is not a secret key type") from None


def check_secret_length(kind: str, length: int, code: int = CKR.KEY_SIZE_RANGE) -> None:
    allowed = VALID_LENGTHS[kind]
    if length <= 0 or (allowed is not None and length not in allowed):
        raise PKCS11Error(code, f"{kind} key of {length} bytes")


def wrappable(target: Any, *, private_allowed: bool = True) -> bytes:
    """The bytes a wrap mechanism encrypts for `target`."""
    if isinstance(target, SecretMaterial):
        return target.value
    if isinstance(target, PrivateMaterial) and private_allowed:
        return target.to_bytes()
    raise PKCS11Error(CKR.KEY_NOT_WRAPPABLE, "this mechanism cannot wrap that key")


def zero_padded(value: bytes, block: int) -> bytes:
    """Secret keys wrapped by ECB/CBC/KW are padded with zeros to the block (PKCS#11 3.0 §2.14.x);
    unwrapping takes CKA_VALUE_LEN (or the key type's size) bytes back."""
    return value + bytes(-len(value) % block)


def unwrapped(value: bytes, target_kind: str, value_len: int | None, *, padded: bool = False) -> Any:
    """Material from unwrapped bytes. `padded`: the mechanism zero-padded secret values, so
    trailing bytes beyond CKA_VALUE_LEN (or the key type's length) are dropped."""
    if target_kind in SECRET_KINDS:
        if value_len is not None:
            if value_len <= 0 or value_len > len(value) or (not padded and value_len != len(value)):
                raise PKCS11Error(CKR.WRAPPED_KEY_INVALID, "unwrapped value does not match CKA_VALUE_LEN")
            value = value[:value_len]
        elif padded and target_kind in FIXED_LENGTH:
            value = value[:FIXED_LENGTH[target_kind]]
        check_secret_length(target_kind, len(value), CKR.WRAPPED_KEY_INVALID)
        return SecretMaterial(target_kind, value)
    material = PrivateMaterial.from_pkcs8(value)  # not PKCS#8: CKR_WRAPPED_KEY_INVALID (failures.BY_OPERATION)
    wanted = PRIVATE_ALIASES.get(target_kind, {target_kind})
    if material.kind not in wanted:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"unwrapped a {material.kind} key, template says {target_kind}")
    return material


def derived(key_type: int, value: bytes, value_len: int | None, *, keep: str = "leading") -> SecretMaterial:
    """A derived secret: `value` truncated to CKA_VALUE_LEN or the key type's length.

    keep="trailing" drops bytes from the leading end, as PKCS#11 says for ECDH1 derivation
    (3.0 §2.3.15: "the truncation removes bytes from the leading end of the secret value")."""
    kind = secret_kind(key_type)
    if value_len is None:
        allowed = VALID_LENGTHS[kind]
        if allowed is None or len(value) in allowed:
            value_len = len(value)
        elif kind in FIXED_LENGTH and len(value) >= FIXED_LENGTH[kind]:
            value_len = FIXED_LENGTH[kind]  # DES/DES3 keys have no CKA_VALUE_LEN: the key type fixes it
        else:
            raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, f"CKA_VALUE_LEN needed to derive a {kind} key")
    if value_len <= 0 or value_len > len(value):
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"cannot derive {value_len} bytes from {len(value)}")
    check_secret_length(kind, value_len, CKR.TEMPLATE_INCONSISTENT)
    out = value[len(value) - value_len:] if keep == "trailing" else value[:value_len]
    return SecretMaterial(kind, out)
