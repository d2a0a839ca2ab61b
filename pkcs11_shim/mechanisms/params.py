"""Decoded mechanism parameters.

`abi.mechanism_params.read_param` turns a CK_MECHANISM's pParameter into one of these (or into
`None`, `bytes` for an opaque octet parameter such as an IV, or `int` for CK_MAC_GENERAL_PARAMS);
each registry row names the reader by its `param_kind` and checks the values in its `validate`.
Mechanism, MGF and KDF fields keep the raw CK_ULONG numbers, so a value python-pkcs11's enums do not
know still reaches `validate` and is refused there with CKR_MECHANISM_PARAM_INVALID.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
