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


# --- issue-4 readers -----------------------------------------------------------------------------

def test_ccm() -> None:
    s, n = make("CK_CCM_PARAMS", ulDataLen=5, pNonce=buf(bytes(12)), ulNonceLen=12, pAAD=buf(b"aad"), ulAADLen=3,
                ulMACLen=16)
    assert read_param(ffi, "ccm", s, n) == params.CcmParams(5, bytes(12), b"aad", 16)
    invalid("ccm", s, n - 1)
    s, n = make("CK_CCM_PARAMS", ulDataLen=5, pNonce=ffi.NULL, ulNonceLen=12, ulMACLen=16)
    invalid("ccm", s, n)


def test_hkdf() -> None:
    s, n = make("CK_HKDF_PARAMS", bExtract=1, bExpand=1, prfHashMechanism=Mechanism.SHA256, ulSaltType=4,
                hSaltKey=42, pInfo=buf(b"info"), ulInfoLen=4)
    assert read_param(ffi, "hkdf", s, n) == params.HkdfParams(True, True, Mechanism.SHA256, 4, b"", 42, b"info")
    s, n = make("CK_HKDF_PARAMS", bExtract=1, pSalt=ffi.NULL, ulSaltLen=8)
    invalid("hkdf", s, n)
    invalid("hkdf", ffi.NULL, n)


def test_pbkd2() -> None:
    s, n = make("CK_PKCS5_PBKD2_PARAMS2", saltSource=1, pSaltSourceData=buf(b"salt"), ulSaltSourceDataLen=4,
                iterations=1000, prf=4, pPassword=buf(b"pw"), ulPasswordLen=2)
    assert read_param(ffi, "pbkd2", s, n) == params.Pbkd2Params(1, b"salt", 1000, 4, b"", b"pw")
    s, n = make("CK_PKCS5_PBKD2_PARAMS2", saltSource=1, iterations=1, prf=4, pPassword=ffi.NULL, ulPasswordLen=9)
    invalid("pbkd2", s, n)


def test_sp800_108() -> None:
    counter = ffi.new("CK_SP800_108_COUNTER_FORMAT *", {"bLittleEndian": 0, "ulWidthInBits": 32})
    dkm = ffi.new("CK_SP800_108_DKM_LENGTH_FORMAT *", {"dkmLengthMethod": 1, "bLittleEndian": 1, "ulWidthInBits": 16})
    label = buf(b"label")
    items = ffi.new("CK_PRF_DATA_PARAM[3]", [
        {"type": 1, "pValue": counter, "ulValueLen": ffi.sizeof("CK_SP800_108_COUNTER_FORMAT")},
        {"type": 4, "pValue": label, "ulValueLen": 5},
        {"type": 3, "pValue": dkm, "ulValueLen": ffi.sizeof("CK_SP800_108_DKM_LENGTH_FORMAT")}])
    _KEEP.extend([counter, dkm, items])
    s, n = make("CK_SP800_108_KDF_PARAMS", prfType=Mechanism.SHA256_HMAC, ulNumberOfDataParams=3, pDataParams=items)
    got = read_param(ffi, "sp800_108", s, n)
    assert got.prf == Mechanism.SHA256_HMAC and got.additional_keys == 0
    assert got.data_params == (params.PrfDataParam(1, width_bits=32), params.PrfDataParam(4, value=b"label"),
                               params.PrfDataParam(3, little_endian=True, width_bits=16, method=1))
    s, n = make("CK_SP800_108_KDF_PARAMS", prfType=Mechanism.SHA256_HMAC, ulNumberOfDataParams=2, pDataParams=ffi.NULL)
    invalid("sp800_108", s, n)
    bad = ffi.new("CK_PRF_DATA_PARAM[1]", [{"type": 1, "pValue": counter, "ulValueLen": 3}])  # wrong struct size
    _KEEP.append(bad)
    s, n = make("CK_SP800_108_KDF_PARAMS", prfType=Mechanism.SHA256_HMAC, ulNumberOfDataParams=1, pDataParams=bad)
    invalid("sp800_108", s, n)
    odd = ffi.new("CK_PRF_DATA_PARAM[1]", [{"type": 9, "pValue": ffi.NULL, "ulValueLen": 0}])
    _KEEP.append(odd)
    s, n = make("CK_SP800_108_KDF_PARAMS", prfType=Mechanism.SHA256_HMAC, ulNumberOfDataParams=1, pDataParams=odd)
    invalid("sp800_108", s, n)


def test_message_params() -> None:
    from pkcs11_shim.abi.mechanism_params import read_message_param, write_message_param

    iv, tag = ffi.new("CK_BYTE[12]"), ffi.new("CK_BYTE[16]")
    s, n = make("CK_GCM_MESSAGE_PARAMS", pIv=iv, ulIvLen=12, ulIvFixedBits=32, ivGenerator=2, pTag=tag, ulTagBits=128)
    p = read_message_param(ffi, "gcm", s, n)
    assert (p.iv, p.fixed_bits, p.generator, p.tag_len) == (bytes(12), 32, 2, 16)
    write_message_param(ffi, p, b"\x01" * 12, b"\x02" * 16)
    assert bytes(ffi.buffer(iv)) == b"\x01" * 12 and bytes(ffi.buffer(tag)) == b"\x02" * 16
    s, n = make("CK_GCM_MESSAGE_PARAMS", pIv=iv, ulIvLen=12, pTag=tag, ulTagBits=100)
    with pytest.raises(PKCS11Error) as err:
        read_message_param(ffi, "gcm", s, n)
    assert err.value.rv == CKR.MECHANISM_PARAM_INVALID
    s, n = make("CK_CCM_MESSAGE_PARAMS", ulDataLen=3, pNonce=iv, ulNonceLen=12, pMAC=ffi.NULL, ulMACLen=8)
    with pytest.raises(PKCS11Error) as err:
        read_message_param(ffi, "ccm", s, n)
    assert err.value.rv == CKR.MECHANISM_PARAM_INVALID
