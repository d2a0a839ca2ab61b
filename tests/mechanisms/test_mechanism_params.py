"""The C parameter readers (`abi.mechanism_params.read_param`) against structures built with a standalone
cffi FFI that parses our own `native/pkcs11_types.h`: every kind, NULL pointers, wrong lengths and
inconsistent embedded pointer/length pairs (CKR_MECHANISM_PARAM_INVALID, checked before dereferencing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cffi
import pytest

from pkcs11_shim.abi.mechanism_params import READERS, read_param
from pkcs11_shim.constants import CKR, KDF, MGF, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim.mechanisms.registry import REGISTRY

HEADER = Path(__file__).resolve().parents[2] / "native" / "pkcs11_types.h"

ffi = cffi.FFI()
ffi.cdef(HEADER.read_text())

# Buffers referenced by structures must outlive the structures: keep them here.
_KEEP: list[Any] = []


def buf(data: bytes) -> Any:
    b = ffi.new("CK_BYTE[]", data or b"\0")
    _KEEP.append(b)
    return b


def make(ctype: str, **fields: Any) -> tuple[Any, int]:
    s = ffi.new(f"{ctype} *", fields)
    _KEEP.append(s)
    return s, ffi.sizeof(ctype)


def invalid(kind: str, ptr: Any, length: int) -> None:
    with pytest.raises(PKCS11Error) as err:
        read_param(ffi, kind, ptr, length)
    assert err.value.rv == CKR.MECHANISM_PARAM_INVALID


def oaep_struct(label: bytes = b"label") -> tuple[Any, int]:
    return make("CK_RSA_PKCS_OAEP_PARAMS", hashAlg=Mechanism.SHA256, mgf=MGF.SHA256, source=1,
                pSourceData=buf(label), ulSourceDataLen=len(label))


def test_every_row_names_a_reader() -> None:
    assert {spec.param_kind for spec in REGISTRY.all()} <= set(READERS)


def test_none() -> None:
    assert read_param(ffi, "none", ffi.NULL, 0) is None
    assert read_param(ffi, "none", buf(b"ignored"), 0) is None  # pParameter ignored with length 0
    invalid("none", buf(b"x"), 1)


def test_bytes() -> None:
    iv = bytes(range(16))
    assert read_param(ffi, "bytes", buf(iv), 16) == iv
    assert read_param(ffi, "bytes", ffi.NULL, 0) is None
    invalid("bytes", ffi.NULL, 16)
    invalid("bytes", buf(iv), 1 << 31)


def test_ulong() -> None:
    value = ffi.new("CK_ULONG *", 12)
    assert read_param(ffi, "ulong", value, ffi.sizeof("CK_ULONG")) == 12
    invalid("ulong", value, 4)
    invalid("ulong", ffi.NULL, ffi.sizeof("CK_ULONG"))


def test_oaep() -> None:
    s, size = oaep_struct()
    assert read_param(ffi, "oaep", s, size) == params.OaepParams(Mechanism.SHA256, MGF.SHA256, 1, b"label")
    invalid("oaep", ffi.NULL, size)
    invalid("oaep", s, size - 8)
    invalid("oaep", s, size + 8)
    no_label, size = make("CK_RSA_PKCS_OAEP_PARAMS", hashAlg=Mechanism.SHA_1, mgf=MGF.SHA1, source=1,
                          pSourceData=ffi.NULL, ulSourceDataLen=0)
    assert read_param(ffi, "oaep", no_label, size).source_data == b""
    dangling, size = make("CK_RSA_PKCS_OAEP_PARAMS", hashAlg=Mechanism.SHA_1, mgf=MGF.SHA1, source=1,
                          pSourceData=ffi.NULL, ulSourceDataLen=5)
    invalid("oaep", dangling, size)


def test_pss() -> None:
    s, size = make("CK_RSA_PKCS_PSS_PARAMS", hashAlg=Mechanism.SHA384, mgf=MGF.SHA384, sLen=48)
    assert read_param(ffi, "pss", s, size) == params.PssParams(Mechanism.SHA384, MGF.SHA384, 48)
    invalid("pss", s, size - 1)
    invalid("pss", ffi.NULL, size)


def test_rsa_aes_key_wrap() -> None:
    oaep, _ = oaep_struct(b"")
    s, size = make("CK_RSA_AES_KEY_WRAP_PARAMS", ulAESKeyBits=256, pOAEPParams=oaep)
    decoded = read_param(ffi, "rsa_aes_key_wrap", s, size)
    assert decoded == params.RsaAesKeyWrapParams(256, params.OaepParams(Mechanism.SHA256, MGF.SHA256, 1, b""))
    missing, size = make("CK_RSA_AES_KEY_WRAP_PARAMS", ulAESKeyBits=256, pOAEPParams=ffi.NULL)
    invalid("rsa_aes_key_wrap", missing, size)
    bad_label, _ = make("CK_RSA_PKCS_OAEP_PARAMS", hashAlg=Mechanism.SHA256, mgf=MGF.SHA256, source=1,
                        pSourceData=ffi.NULL, ulSourceDataLen=3)
    nested, size = make("CK_RSA_AES_KEY_WRAP_PARAMS", ulAESKeyBits=128, pOAEPParams=bad_label)
    invalid("rsa_aes_key_wrap", nested, size)
    invalid("rsa_aes_key_wrap", s, size * 2)


def test_ecdh1() -> None:
    point = b"\x04" + bytes(range(64))
    s, size = make("CK_ECDH1_DERIVE_PARAMS", kdf=KDF.SHA256, ulSharedDataLen=4, pSharedData=buf(b"info"),
                   ulPublicDataLen=len(point), pPublicData=buf(point))
    assert read_param(ffi, "ecdh1", s, size) == params.Ecdh1DeriveParams(KDF.SHA256, b"info", point)
    for shared, public in ((ffi.NULL, buf(point)), (buf(b"info"), ffi.NULL)):
        broken, size = make("CK_ECDH1_DERIVE_PARAMS", kdf=KDF.SHA256, ulSharedDataLen=4, pSharedData=shared,
                            ulPublicDataLen=len(point), pPublicData=public)
        invalid("ecdh1", broken, size)
    huge, size = make("CK_ECDH1_DERIVE_PARAMS", kdf=KDF.NULL, ulSharedDataLen=0, pSharedData=ffi.NULL,
                      ulPublicDataLen=1 << 40, pPublicData=buf(point))
    invalid("ecdh1", huge, size)


def test_aes_ctr() -> None:
    block = bytes(range(16))
    s, size = make("CK_AES_CTR_PARAMS", ulCounterBits=32, cb=list(block))
    assert read_param(ffi, "aes_ctr", s, size) == params.AesCtrParams(32, block)
    invalid("aes_ctr", s, 16)
    invalid("aes_ctr", ffi.NULL, size)


def test_gcm() -> None:
    iv, aad = bytes(12), b"header"
    s, size = make("CK_GCM_PARAMS", pIv=buf(iv), ulIvLen=12, ulIvBits=96, pAAD=buf(aad), ulAADLen=len(aad),
                   ulTagBits=128)
    assert read_param(ffi, "gcm", s, size) == params.GcmParams(iv, 96, aad, 128)
    no_aad, size = make("CK_GCM_PARAMS", pIv=buf(iv), ulIvLen=12, ulIvBits=0, pAAD=ffi.NULL, ulAADLen=0,
                        ulTagBits=96)
    assert read_param(ffi, "gcm", no_aad, size).aad == b""
    null_iv, size = make("CK_GCM_PARAMS", pIv=ffi.NULL, ulIvLen=12, ulIvBits=96, pAAD=ffi.NULL, ulAADLen=0,
                         ulTagBits=128)
    invalid("gcm", null_iv, size)
    null_aad, size = make("CK_GCM_PARAMS", pIv=buf(iv), ulIvLen=12, ulIvBits=96, pAAD=ffi.NULL, ulAADLen=8,
                          ulTagBits=128)
    invalid("gcm", null_aad, size)
    invalid("gcm", s, size - 8)  # e.g. a 2.40-era CK_GCM_PARAMS without ulIvBits


def test_eddsa() -> None:
    assert read_param(ffi, "eddsa", ffi.NULL, 0) is None
    s, size = make("CK_EDDSA_PARAMS", phFlag=1, ulContextDataLen=3, pContextData=buf(b"ctx"))
    assert read_param(ffi, "eddsa", s, size) == params.EddsaParams(True, b"ctx")
    broken, size = make("CK_EDDSA_PARAMS", phFlag=0, ulContextDataLen=3, pContextData=ffi.NULL)
    invalid("eddsa", broken, size)
    invalid("eddsa", ffi.NULL, size)


def test_key_derivation_string() -> None:
    data = bytes(32)
    s, size = make("CK_KEY_DERIVATION_STRING_DATA", pData=buf(data), ulLen=32)
    assert read_param(ffi, "key_derivation_string", s, size) == data
    broken, size = make("CK_KEY_DERIVATION_STRING_DATA", pData=ffi.NULL, ulLen=32)
    invalid("key_derivation_string", broken, size)


def test_aes_cbc_encrypt_data() -> None:
    iv, data = bytes(range(16)), bytes(32)
    s, size = make("CK_AES_CBC_ENCRYPT_DATA_PARAMS", iv=list(iv), pData=buf(data), length=32)
    assert read_param(ffi, "aes_cbc_encrypt_data", s, size) == params.AesCbcEncryptDataParams(iv, data)
    broken, size = make("CK_AES_CBC_ENCRYPT_DATA_PARAMS", iv=list(iv), pData=ffi.NULL, length=32)
    invalid("aes_cbc_encrypt_data", broken, size)
    invalid("aes_cbc_encrypt_data", s, size - 1)


def test_read_then_validate_then_run() -> None:
    """A CK_GCM_PARAMS read from C drives the registry row end to end."""
    from emulator.crypto.material import SecretMaterial

    iv, aad = bytes(range(12)), b"aad"
    s, size = make("CK_GCM_PARAMS", pIv=buf(iv), ulIvLen=12, ulIvBits=96, pAAD=buf(aad), ulAADLen=3,
                   ulTagBits=128)
    spec = REGISTRY.get(Mechanism.AES_GCM)
    param = read_param(ffi, spec.param_kind, s, size)
    spec.validate(param)
    key = SecretMaterial("AES", bytes(16))
    sealed = spec.encrypt(key, param).oneshot(b"hello")
    assert spec.decrypt(key, param).oneshot(sealed) == b"hello"
