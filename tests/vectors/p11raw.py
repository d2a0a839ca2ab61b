"""Raw mechanism parameters for python-pkcs11 0.10.1, which passes a `bytes` mechanism_param through
as pParameter: ctypes structures packed to bytes (the buffers they point into are kept alive in
`_KEEP`), and Mechanism/KeyType members for the 3.0 numbers its enums lack."""

from __future__ import annotations

import ctypes
from typing import Any

from p11ctypes import (CK_ATTRIBUTE, CK_CCM_PARAMS, CK_EDDSA_PARAMS, CK_GCM_PARAMS, CK_HKDF_PARAMS,
                       CK_KEY_DERIVATION_STRING_DATA, CK_PKCS5_PBKD2_PARAMS2, CK_PRF_DATA_PARAM,
                       CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, CK_RSA_PKCS_PSS_PARAMS,
                       CK_SP800_108_KDF_PARAMS)
from pkcs11 import KeyType, Mechanism

from pkcs11_shim.constants import CKZ_DATA_SPECIFIED, CKZ_SALT_SPECIFIED

_KEEP: list[Any] = []
ULONG, BYTE_P, VOID_P = ctypes.c_ulong, ctypes.c_char_p, ctypes.c_void_p


def _member(enum: Any, value: int, name: str) -> Any:
    """An enum member for a number the enum lacks (python-pkcs11 accepts only members)."""
    if value in enum._value2member_map_:
        return enum(value)
    member = int.__new__(enum, value)
    member._name_, member._value_ = name, value
    enum._value2member_map_[value] = member
    enum._member_map_[name] = member
    return member


def mechanism(value: int, name: str) -> Mechanism:
    return _member(Mechanism, value, name)


def key_type(value: int, name: str) -> KeyType:
    return _member(KeyType, value, name)


def buf(data: bytes) -> Any:
    """A C buffer holding `data` (NULL for empty), kept alive."""
    if not data:
        return None
    b = ctypes.create_string_buffer(data, len(data))
    _KEEP.append(b)
    return ctypes.cast(b, VOID_P)


def _pack(struct: ctypes.Structure) -> bytes:
    _KEEP.append(struct)
    return bytes(struct)


def gcm(iv: bytes, aad: bytes, tag_bits: int) -> bytes:
    return _pack(CK_GCM_PARAMS(buf(iv), len(iv), 8 * len(iv), buf(aad), len(aad), tag_bits))


def ccm(data_len: int, nonce: bytes, aad: bytes, mac_len: int) -> bytes:
    return _pack(CK_CCM_PARAMS(data_len, buf(nonce), len(nonce), buf(aad), len(aad), mac_len))


def oaep_struct(hash_alg: int, mgf: int, label: bytes = b"") -> CK_RSA_PKCS_OAEP_PARAMS:
    s = CK_RSA_PKCS_OAEP_PARAMS(hash_alg, mgf, CKZ_DATA_SPECIFIED, buf(label), len(label))
    _KEEP.append(s)
    return s


def oaep(hash_alg: int, mgf: int, label: bytes = b"") -> bytes:
    return _pack(oaep_struct(hash_alg, mgf, label))


def pss(hash_alg: int, mgf: int, salt_len: int) -> bytes:
    return _pack(CK_RSA_PKCS_PSS_PARAMS(hash_alg, mgf, salt_len))


def rsa_aes_key_wrap(aes_bits: int, hash_alg: int, mgf: int, label: bytes = b"") -> bytes:
    return _pack(CK_RSA_AES_KEY_WRAP_PARAMS(aes_bits, ctypes.pointer(oaep_struct(hash_alg, mgf, label))))


def eddsa(prehash: bool, context: bytes) -> bytes:
    return _pack(CK_EDDSA_PARAMS(int(prehash), len(context), buf(context)))


def hkdf(extract: bool, expand: bool, prf_hash: int, salt_type: int, salt: bytes = b"", salt_key: int = 0,
         info: bytes = b"") -> bytes:
    return _pack(CK_HKDF_PARAMS(int(extract), int(expand), prf_hash, salt_type, buf(salt), len(salt), salt_key,
                            buf(info), len(info)))


def sp800_108(prf: int, items: list[tuple[int, Any]]) -> bytes:
    """items: (CK_PRF_DATA_TYPE, value) with value bytes or a p11ctypes.CK_SP800_108_COUNTER_FORMAT /
    CK_SP800_108_DKM_LENGTH_FORMAT."""
    array = (CK_PRF_DATA_PARAM * len(items))()
    for i, (kind, value) in enumerate(items):
        if isinstance(value, bytes):
            array[i] = CK_PRF_DATA_PARAM(kind, buf(value), len(value))
        else:
            _KEEP.append(value)
            array[i] = CK_PRF_DATA_PARAM(kind, ctypes.cast(ctypes.pointer(value), VOID_P), ctypes.sizeof(value))
    _KEEP.append(array)
    return _pack(CK_SP800_108_KDF_PARAMS(prf, len(items), ctypes.cast(array, ctypes.POINTER(CK_PRF_DATA_PARAM)), 0, None))


def pbkd2(password: bytes, salt: bytes, iterations: int, prf: int) -> bytes:
    return _pack(CK_PKCS5_PBKD2_PARAMS2(CKZ_SALT_SPECIFIED, buf(salt), len(salt), iterations, prf, None, 0, buf(password),
                                       len(password)))


def derivation_string(data: bytes) -> bytes:
    return _pack(CK_KEY_DERIVATION_STRING_DATA(buf(data), len(data)))


def ulong(value: int) -> bytes:
    return bytes(ULONG(value))


def template_mapper() -> Any:
    """A python-pkcs11 AttributeMapper that can also send CKA_WRAP_TEMPLATE / CKA_UNWRAP_TEMPLATE
    (arrays of CK_ATTRIBUTE, which python-pkcs11 0.10.1 cannot pack)."""
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.attributes import AttributeMapper

    class Mapper(AttributeMapper):
        # python-pkcs11's unwrap template sets every capability, CKA_ENCRYPT/CKA_VERIFY/CKA_WRAP
        # included, also for private keys, where they are no attributes of the class (3.0 §4.9).
        def generic_key_template(self, base_template, **kwargs):
            template = super().generic_key_template(base_template, **kwargs)
            if template.get(Attribute.CLASS) == ObjectClass.PRIVATE_KEY:
                for attr in (Attribute.ENCRYPT, Attribute.VERIFY, Attribute.WRAP, Attribute.VERIFY_RECOVER):
                    template.pop(attr, None)
            return template

    mapper = Mapper()

    def pack(template: dict) -> bytes:
        array = (CK_ATTRIBUTE * len(template))()
        for i, (attr, value) in enumerate(template.items()):
            raw = mapper.pack_attribute(attr, value)
            array[i] = CK_ATTRIBUTE(int(attr), buf(raw), len(raw))
        _KEEP.append(array)
        return bytes(array)

    for attr in (Attribute.WRAP_TEMPLATE, Attribute.UNWRAP_TEMPLATE):
        mapper.register_handler(attr, pack, bytes)
    # CKA_ALLOWED_MECHANISMS: an array of CK_MECHANISM_TYPE.
    mapper.register_handler(Attribute.ALLOWED_MECHANISMS, lambda values: b"".join(bytes(ULONG(int(v))) for v in values),
                            bytes)
    return mapper
