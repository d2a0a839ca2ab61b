"""Decoded mechanism parameters.

`abi.mechanism_params.read_param` turns a CK_MECHANISM's pParameter into one of these (or into
`None`, `bytes` for an opaque octet parameter such as an IV, or `int` for CK_MAC_GENERAL_PARAMS);
each registry row names the reader by its `param_kind` and checks the values in its `validate`.
Mechanism, MGF and KDF fields keep the raw CK_ULONG numbers, so a value python-pkcs11's enums do not
know still reaches `validate` and is refused there with CKR_MECHANISM_PARAM_INVALID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..constants import CKR
from ..errors import PKCS11Error

T = TypeVar("T")


def require(param: Any, kind: type[T], struct: str) -> T:
    """`param` when the mechanism's parameter was read as `kind` (the C struct `struct`), else
    CKR_MECHANISM_PARAM_INVALID: a row's `validate` starts here."""
    if not isinstance(param, kind):
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"{struct} required")
    return param


@dataclass(frozen=True)
class OaepParams:
    """CK_RSA_PKCS_OAEP_PARAMS (PKCS#11 3.0 §2.1.8)."""

    hash_alg: int
    mgf: int
    source: int
    source_data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class PssParams:
    """CK_RSA_PKCS_PSS_PARAMS (§2.1.9)."""

    hash_alg: int
    mgf: int
    salt_len: int


@dataclass(frozen=True)
class RsaAesKeyWrapParams:
    """CK_RSA_AES_KEY_WRAP_PARAMS (§2.1.20)."""

    aes_key_bits: int
    oaep: OaepParams


@dataclass(frozen=True)
class Ecdh1DeriveParams:
    """CK_ECDH1_DERIVE_PARAMS (§2.3.10)."""

    kdf: int
    shared_data: bytes
    public_data: bytes


@dataclass(frozen=True)
class AesCtrParams:
    """CK_AES_CTR_PARAMS (§2.14.3)."""

    counter_bits: int
    counter_block: bytes


@dataclass(frozen=True)
class GcmParams:
    """CK_GCM_PARAMS (§2.14.3). `iv_bits` is carried but, as 3.0 says, ulIvLen is the one used."""

    iv: bytes
    iv_bits: int
    aad: bytes
    tag_bits: int


@dataclass(frozen=True)
class EddsaParams:
    """CK_EDDSA_PARAMS (§2.3.13)."""

    prehash: bool
    context: bytes


@dataclass(frozen=True)
class AesCbcEncryptDataParams:
    """CK_AES_CBC_ENCRYPT_DATA_PARAMS (§2.14.5)."""

    iv: bytes
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class CcmParams:
    """CK_CCM_PARAMS (§2.14.x): the total data length is fixed up front (CCM needs it)."""

    data_len: int
    nonce: bytes
    aad: bytes
    mac_len: int


@dataclass(frozen=True)
class HkdfParams:
    """CK_HKDF_PARAMS (§2.43.1). `salt_key` is the handle of the salt key (CKF_HKDF_SALT_KEY)."""

    extract: bool
    expand: bool
    prf_hash: int
    salt_type: int
    salt: bytes
    salt_key: int
    info: bytes


@dataclass(frozen=True)
class Pbkd2Params:
    """CK_PKCS5_PBKD2_PARAMS2 (§2.36.x)."""

    salt_source: int
    salt: bytes
    iterations: int
    prf: int
    prf_data: bytes
    password: bytes = field(repr=False)


@dataclass(frozen=True)
class PrfDataParam:
    """One CK_PRF_DATA_PARAM of CK_SP800_108_KDF_PARAMS, decoded by type: the counter format
    (little_endian, width_bits), the DKM length format (method, little_endian, width_bits), or the
    byte array (value)."""

    type: int
    little_endian: bool = False
    width_bits: int = 0
    method: int = 0
    value: bytes = b""


@dataclass(frozen=True)
class Sp800108Params:
    """CK_SP800_108_KDF_PARAMS (§2.42.1); additional derived keys are not supported (count only)."""

    prf: int
    data_params: tuple[PrfDataParam, ...]
    additional_keys: int


@dataclass(frozen=True)
class MessageParams:
    """A per-message AEAD parameter (CK_GCM_MESSAGE_PARAMS / CK_CCM_MESSAGE_PARAMS) as read from C.

    `iv` is the nonce as the caller passed it; `fixed_bits`/`generator` say which part the token
    generates; `tag_len` the tag (MAC) length in bytes; `data_len` the CCM total length (0 for GCM).
    `tag` is what the caller's tag buffer holds (the tag to check, on decryption). `struct` is the C
    structure itself, which only the C boundary touches (`MessageParamAccess.write`)."""

    iv: bytes
    fixed_bits: int
    generator: int
    tag_len: int
    data_len: int = 0
    tag: bytes = field(default=b"", repr=False)
    struct: object = field(default=None, repr=False, compare=False)


class MessageParamAccess(Protocol):
    """One call's per-message parameter, which the token reads and writes back into (a generated IV,
    the tag of an encryption): the C boundary gives the message operations this instead of pointers
    (`abi.mechanism_params.CMessageParam`)."""

    def read(self, kind: str) -> MessageParams: ...

    def write(self, param: MessageParams, iv: bytes | None, tag: bytes | None) -> None: ...


@dataclass(frozen=True)
class SignAdditionalContext:
    """CK_SIGN_ADDITIONAL_CONTEXT / CK_HASH_SIGN_ADDITIONAL_CONTEXT (3.2); `hash_alg` only in the
    latter (the CKM_ number of the hash the caller applied)."""

    hedge: int
    context: bytes = field(default=b"")
    hash_alg: int | None = None
