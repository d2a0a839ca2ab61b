"""C readers for mechanism parameters: CK_MECHANISM.pParameter -> a value from `mechanisms.params`.

`read_param(ffi, kind, ptr, length)` picks the reader a registry row names (`param_kind`). Every
reader checks before it dereferences: the pointer is not NULL, `length` is exactly the structure's
size, and every embedded pointer/length pair is consistent (a NULL pointer only with length 0, no
absurd length). Anything else is CKR_MECHANISM_PARAM_INVALID (PKCS#11 3.0 §5.1.6; SoftHSM's
CKR_ARGUMENTS_BAD here is a known deviation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..constants import CKR
from ..errors import PKCS11Error
from ..mechanisms import params

#: No legitimate parameter field is this large; refused before any memory is touched.
MAX_FIELD_LEN = 1 << 30


def _invalid(message: str) -> PKCS11Error:
    return PKCS11Error(CKR.MECHANISM_PARAM_INVALID, message)


def _struct(ffi: Any, ctype: str, ptr: Any, length: int) -> Any:
    if ptr == ffi.NULL:
        raise _invalid(f"NULL {ctype}")
    if length != ffi.sizeof(ctype):
        raise _invalid(f"{ctype} of {length} bytes, expected {ffi.sizeof(ctype)}")
    return ffi.cast(_POINTER_TYPES.get((ffi, ctype)) or _pointer_type(ffi, ctype), ptr)[0]


#: (ffi, ctype name) -> the cffi pointer type: parsing "X *" per call is a third of a small struct read.
_POINTER_TYPES: dict[tuple[Any, str], Any] = {}


def _pointer_type(ffi: Any, ctype: str) -> Any:
    made = _POINTER_TYPES[(ffi, ctype)] = ffi.typeof(f"{ctype} *")
    return made


def _octets(ffi: Any, ptr: Any, length: int, what: str) -> bytes:
    """An embedded pointer/length pair."""
    length = int(length)
    if length == 0:
        return b""
    if ptr == ffi.NULL:
        raise _invalid(f"{what}: NULL pointer with length {length}")
    if length > MAX_FIELD_LEN:
        raise _invalid(f"{what}: length {length} refused")
    return ffi.buffer(ffi.cast("CK_BYTE *", ptr), length)[:]


def _none(ffi: Any, ptr: Any, length: int) -> None:
    # A mechanism without a parameter: pParameter is ignored when ulParameterLen is 0.
    if length != 0:
        raise _invalid("this mechanism takes no parameter")


def _bytes(ffi: Any, ptr: Any, length: int) -> bytes | None:
    """An opaque octet string (IV, KW initial value); absent (length 0) is None."""
    if length == 0:
        return None
    return _octets(ffi, ptr, length, "parameter")


def _ulong(ffi: Any, ptr: Any, length: int) -> int:
    """CK_MAC_GENERAL_PARAMS and other single CK_ULONG parameters."""
    return int(_struct(ffi, "CK_ULONG", ptr, length))


#: Decoded parameters by their field values: clients pass the same OAEP / RSA-AES parameters on
#: every call, and building the frozen dataclasses costs more than reading the C fields. Returning
#: one object per distinct value also lets per-session caches key on it. Bounded (labels are data).
_MEMO: dict[tuple, Any] = {}
_MEMO_MAX = 256


def _memo(key: tuple, make: Callable[[], Any]) -> Any:
    value = _MEMO.get(key)
    if value is None:
        value = make()
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = value
    return value


def _oaep_values(ffi: Any, s: Any) -> tuple[int, int, int, bytes]:
    return (int(s.hashAlg), int(s.mgf), int(s.source),
            _octets(ffi, s.pSourceData, s.ulSourceDataLen, "OAEP source data"))


def _oaep_fields(ffi: Any, s: Any) -> params.OaepParams:
    values = _oaep_values(ffi, s)
    return _memo(("oaep",) + values, lambda: params.OaepParams(*values))


def _oaep(ffi: Any, ptr: Any, length: int) -> params.OaepParams:
    return _oaep_fields(ffi, _struct(ffi, "CK_RSA_PKCS_OAEP_PARAMS", ptr, length))


def _pss(ffi: Any, ptr: Any, length: int) -> params.PssParams:
    s = _struct(ffi, "CK_RSA_PKCS_PSS_PARAMS", ptr, length)
    return params.PssParams(hash_alg=int(s.hashAlg), mgf=int(s.mgf), salt_len=int(s.sLen))


def _rsa_aes_key_wrap(ffi: Any, ptr: Any, length: int) -> params.RsaAesKeyWrapParams:
    s = _struct(ffi, "CK_RSA_AES_KEY_WRAP_PARAMS", ptr, length)
    if s.pOAEPParams == ffi.NULL:
        raise _invalid("CK_RSA_AES_KEY_WRAP_PARAMS.pOAEPParams is NULL")
    values = (int(s.ulAESKeyBits),) + _oaep_values(ffi, s.pOAEPParams[0])
    # Keyed by the plain values: hashing the dataclasses themselves costs more than reading them.
    return _memo(("rsa_aes",) + values, lambda: params.RsaAesKeyWrapParams(
        aes_key_bits=values[0], oaep=params.OaepParams(*values[1:])))


def _ecdh1(ffi: Any, ptr: Any, length: int) -> params.Ecdh1DeriveParams:
    s = _struct(ffi, "CK_ECDH1_DERIVE_PARAMS", ptr, length)
    return params.Ecdh1DeriveParams(
        kdf=int(s.kdf),
        shared_data=_octets(ffi, s.pSharedData, s.ulSharedDataLen, "ECDH shared data"),
        public_data=_octets(ffi, s.pPublicData, s.ulPublicDataLen, "ECDH public data"))


def _aes_ctr(ffi: Any, ptr: Any, length: int) -> params.AesCtrParams:
    s = _struct(ffi, "CK_AES_CTR_PARAMS", ptr, length)
    return params.AesCtrParams(counter_bits=int(s.ulCounterBits), counter_block=bytes(ffi.buffer(s.cb)))


def _gcm(ffi: Any, ptr: Any, length: int) -> params.GcmParams:
    s = _struct(ffi, "CK_GCM_PARAMS", ptr, length)
    return params.GcmParams(
        iv=_octets(ffi, s.pIv, s.ulIvLen, "GCM IV"), iv_bits=int(s.ulIvBits),
        aad=_octets(ffi, s.pAAD, s.ulAADLen, "GCM AAD"), tag_bits=int(s.ulTagBits))


def _eddsa(ffi: Any, ptr: Any, length: int) -> params.EddsaParams | None:
    """CK_EDDSA_PARAMS is optional (PKCS#11 3.0 §2.3.14): absent means pure EdDSA."""
    if length == 0:
        return None
    s = _struct(ffi, "CK_EDDSA_PARAMS", ptr, length)
    return params.EddsaParams(prehash=bool(s.phFlag),
                              context=_octets(ffi, s.pContextData, s.ulContextDataLen, "EdDSA context"))


def _key_derivation_string(ffi: Any, ptr: Any, length: int) -> bytes:
    s = _struct(ffi, "CK_KEY_DERIVATION_STRING_DATA", ptr, length)
    return _octets(ffi, s.pData, s.ulLen, "key derivation data")


def _aes_cbc_encrypt_data(ffi: Any, ptr: Any, length: int) -> params.AesCbcEncryptDataParams:
    s = _struct(ffi, "CK_AES_CBC_ENCRYPT_DATA_PARAMS", ptr, length)
    return params.AesCbcEncryptDataParams(iv=bytes(ffi.buffer(s.iv)),
                                          data=_octets(ffi, s.pData, s.length, "derivation data"))


def _ccm(ffi: Any, ptr: Any, length: int) -> params.CcmParams:
    s = _struct(ffi, "CK_CCM_PARAMS", ptr, length)
    return params.CcmParams(data_len=int(s.ulDataLen), nonce=_octets(ffi, s.pNonce, s.ulNonceLen, "CCM nonce"),
                            aad=_octets(ffi, s.pAAD, s.ulAADLen, "CCM AAD"), mac_len=int(s.ulMACLen))


def _hkdf(ffi: Any, ptr: Any, length: int) -> params.HkdfParams:
    s = _struct(ffi, "CK_HKDF_PARAMS", ptr, length)
    return params.HkdfParams(
        extract=bool(s.bExtract), expand=bool(s.bExpand), prf_hash=int(s.prfHashMechanism),
        salt_type=int(s.ulSaltType), salt=_octets(ffi, s.pSalt, s.ulSaltLen, "HKDF salt"),
        salt_key=int(s.hSaltKey), info=_octets(ffi, s.pInfo, s.ulInfoLen, "HKDF info"))


def _pbkd2(ffi: Any, ptr: Any, length: int) -> params.Pbkd2Params:
    s = _struct(ffi, "CK_PKCS5_PBKD2_PARAMS2", ptr, length)
    return params.Pbkd2Params(
        salt_source=int(s.saltSource), salt=_octets(ffi, s.pSaltSourceData, s.ulSaltSourceDataLen, "PBKD2 salt"),
        iterations=int(s.iterations), prf=int(s.prf), prf_data=_octets(ffi, s.pPrfData, s.ulPrfDataLen, "PRF data"),
        password=_octets(ffi, s.pPassword, s.ulPasswordLen, "password"))


#: SP 800-108 data parameter types (CK_PRF_DATA_TYPE) -> the structure its pValue points to.
_PRF_DATA_STRUCTS = {0x1: "CK_SP800_108_COUNTER_FORMAT", 0x2: "CK_SP800_108_COUNTER_FORMAT",
                     0x3: "CK_SP800_108_DKM_LENGTH_FORMAT"}
MAX_DATA_PARAMS = 64


def _prf_data_param(ffi: Any, p: Any) -> params.PrfDataParam:
    kind = int(p.type)
    ctype = _PRF_DATA_STRUCTS.get(kind)
    if kind == 0x4:  # CK_SP800_108_BYTE_ARRAY
        return params.PrfDataParam(type=kind, value=_octets(ffi, p.pValue, p.ulValueLen, "byte array"))
    if ctype is None:
        raise _invalid(f"SP 800-108 data parameter type 0x{kind:x}")
    if kind == 0x2 and p.pValue == ffi.NULL and int(p.ulValueLen) == 0:
        return params.PrfDataParam(type=kind)
    f = _struct(ffi, ctype, p.pValue, int(p.ulValueLen))
    if kind == 0x3:
        return params.PrfDataParam(type=kind, method=int(f.dkmLengthMethod), little_endian=bool(f.bLittleEndian),
                                   width_bits=int(f.ulWidthInBits))
    return params.PrfDataParam(type=kind, little_endian=bool(f.bLittleEndian), width_bits=int(f.ulWidthInBits))


def _sp800_108(ffi: Any, ptr: Any, length: int) -> params.Sp800108Params:
    s = _struct(ffi, "CK_SP800_108_KDF_PARAMS", ptr, length)
    count = int(s.ulNumberOfDataParams)
    if count > MAX_DATA_PARAMS or (count and s.pDataParams == ffi.NULL):
        raise _invalid(f"{count} SP 800-108 data parameters")
    items = tuple(_prf_data_param(ffi, s.pDataParams[i]) for i in range(count))
    return params.Sp800108Params(prf=int(s.prfType), data_params=items,
                                 additional_keys=int(s.ulAdditionalDerivedKeys))


def _ulong_or_none(ffi: Any, ptr: Any, length: int) -> int | None:
    """An optional CK_ULONG (CK_MAC_GENERAL_PARAMS-like); absent is None."""
    if length == 0:
        return None
    return _ulong(ffi, ptr, length)


def read_message_param(ffi: Any, kind: str, ptr: Any, length: int) -> params.MessageParams:
    """CK_GCM_MESSAGE_PARAMS (kind "gcm") or CK_CCM_MESSAGE_PARAMS ("ccm") of one message; the
    IV/nonce and tag/MAC buffers stay the caller's (they are written back)."""
    if kind == "gcm":
        s = _struct(ffi, "CK_GCM_MESSAGE_PARAMS", ptr, length)
        iv_ptr, iv_len, tag_ptr, tag_len = s.pIv, int(s.ulIvLen), s.pTag, int(s.ulTagBits)
        if tag_len % 8:
            raise _invalid("GCM tag length must be whole bytes")
        tag_len //= 8
        fixed, generator, data_len = int(s.ulIvFixedBits), int(s.ivGenerator), 0
    else:
        s = _struct(ffi, "CK_CCM_MESSAGE_PARAMS", ptr, length)
        iv_ptr, iv_len, tag_ptr, tag_len = s.pNonce, int(s.ulNonceLen), s.pMAC, int(s.ulMACLen)
        fixed, generator, data_len = int(s.ulNonceFixedBits), int(s.nonceGenerator), int(s.ulDataLen)
    if iv_len == 0 or iv_ptr == ffi.NULL or tag_ptr == ffi.NULL or tag_len == 0:
        raise _invalid("message parameter needs an IV buffer and a tag buffer")
    return params.MessageParams(iv=_octets(ffi, iv_ptr, iv_len, "IV"), fixed_bits=fixed, generator=generator,
                                tag_len=tag_len, data_len=data_len, tag=bytes(ffi.buffer(tag_ptr, tag_len)),
                                struct=s)


def write_message_param(ffi: Any, param: params.MessageParams, iv: bytes | None, tag: bytes | None) -> None:
    """Write a generated IV and/or the tag back into the caller's message parameter structure."""
    s = param.struct
    iv_ptr, tag_ptr = (s.pIv, s.pTag) if hasattr(s, "pIv") else (s.pNonce, s.pMAC)
    if iv is not None:
        ffi.memmove(iv_ptr, iv, len(iv))
    if tag is not None:
        ffi.memmove(tag_ptr, tag, len(tag))


class CMessageParam:
    """`params.MessageParamAccess` over one call's C pointer: what the message operations read
    and write back, without the mechanism layer touching C."""

    __slots__ = ("_ffi", "_ptr", "_length")

    def __init__(self, ffi: Any, ptr: Any, length: int) -> None:
        self._ffi, self._ptr, self._length = ffi, ptr, int(length)

    def read(self, kind: str) -> params.MessageParams:
        return read_message_param(self._ffi, kind, self._ptr, self._length)

    def write(self, param: params.MessageParams, iv: bytes | None, tag: bytes | None) -> None:
        write_message_param(self._ffi, param, iv, tag)


#: param_kind -> reader. A registry row's `param_kind` must be one of these names.
READERS: dict[str, Callable[[Any, Any, int], object]] = {
    "none": _none,
    "bytes": _bytes,
    "ulong": _ulong,
    "oaep": _oaep,
    "pss": _pss,
    "rsa_aes_key_wrap": _rsa_aes_key_wrap,
    "ecdh1": _ecdh1,
    "aes_ctr": _aes_ctr,
    "gcm": _gcm,
    "eddsa": _eddsa,
    "key_derivation_string": _key_derivation_string,
    "aes_cbc_encrypt_data": _aes_cbc_encrypt_data,
    "ccm": _ccm,
    "hkdf": _hkdf,
    "pbkd2": _pbkd2,
    "sp800_108": _sp800_108,
    "ulong_or_none": _ulong_or_none,
}


def _rsa_aes_key_wrap_image(ffi: Any, ptr: Any, length: int) -> bytes | None:
    """The bytes a CK_RSA_AES_KEY_WRAP_PARAMS without an OAEP label is made of: the outer struct's
    ulAESKeyBits and the whole CK_RSA_PKCS_OAEP_PARAMS it points to. None (read it field by field)
    for anything else, so every refusal still comes from the reader."""
    layout = _RSA_AES_LAYOUT.get(ffi) or _rsa_aes_layout(ffi)
    if ptr == ffi.NULL or length != layout[0]:
        return None
    inner = ffi.cast(layout[3], ptr).pOAEPParams
    if inner == ffi.NULL or inner.ulSourceDataLen != 0:
        return None
    return ffi.buffer(ptr, layout[1])[:] + ffi.buffer(inner, layout[2])[:]


#: ffi -> (sizeof the outer struct, sizeof CK_ULONG, sizeof the OAEP struct, outer pointer type).
_RSA_AES_LAYOUT: dict[Any, tuple[int, int, int, Any]] = {}


def _rsa_aes_layout(ffi: Any) -> tuple[int, int, int, Any]:
    layout = _RSA_AES_LAYOUT[ffi] = (ffi.sizeof("CK_RSA_AES_KEY_WRAP_PARAMS"), ffi.sizeof("CK_ULONG"),
                                     ffi.sizeof("CK_RSA_PKCS_OAEP_PARAMS"),
                                     ffi.typeof("CK_RSA_AES_KEY_WRAP_PARAMS *"))
    return layout


#: param_kind -> the raw image of a parameter that fully determines it (no pointer is followed
#: later), or None. `read_param` answers a known image from `_MEMO` without decoding: clients repeat
#: the same parameter on every call, and decoding it costs more than the image.
IMAGES: dict[str, Callable[[Any, Any, int], bytes | None]] = {
    "rsa_aes_key_wrap": _rsa_aes_key_wrap_image,
}


# PKCS#11 3.2 signature parameters: CK_SIGN_ADDITIONAL_CONTEXT (optional, for CKM_ML_DSA and
# CKM_HASH_ML_DSA_<hash>) and CK_HASH_SIGN_ADDITIONAL_CONTEXT (CKM_HASH_ML_DSA).
def _sign_additional_context(ffi: Any, ptr: Any, length: int) -> params.SignAdditionalContext | None:
    """Absent (length 0) is hedge-preferred with an empty context (3.2 CKM_ML_DSA)."""
    if length == 0:
        return None
    s = _struct(ffi, "CK_SIGN_ADDITIONAL_CONTEXT", ptr, length)
    return params.SignAdditionalContext(int(s.hedgeVariant), _octets(ffi, s.pContext, s.ulContextLen, "context"))


def _hash_sign_additional_context(ffi: Any, ptr: Any, length: int) -> params.SignAdditionalContext:
    s = _struct(ffi, "CK_HASH_SIGN_ADDITIONAL_CONTEXT", ptr, length)
    return params.SignAdditionalContext(int(s.hedgeVariant), _octets(ffi, s.pContext, s.ulContextLen, "context"),
                                        int(s.hash))


READERS["sign_additional_context"] = _sign_additional_context
READERS["hash_sign_additional_context"] = _hash_sign_additional_context


def read_param(ffi: Any, kind: str, ptr: Any, length: int) -> object:
    """Decode CK_MECHANISM.pParameter/ulParameterLen as the parameter kind `kind`."""
    length = int(length)
    if length < 0 or length > MAX_FIELD_LEN:
        raise _invalid(f"parameter length {length} refused")
    image_of = IMAGES.get(kind)
    if image_of is not None:
        image = image_of(ffi, ptr, length)
        if image is not None:
            known = _MEMO.get((kind, image))
            return known if known is not None else _memo((kind, image), lambda: READERS[kind](ffi, ptr, length))
    return READERS[kind](ffi, ptr, length)
