"""A few PKCS#11 calls through ctypes, for what python-pkcs11 0.10.1 cannot express: the 3.2
functions other than C_EncapsulateKey/C_DecapsulateKey, mechanisms its enum lacks
(CKM_HASH_ML_DSA*), and the CK_SIGN_ADDITIONAL_CONTEXT parameters.

It calls the library's exported C_* symbols in this process, so it shares the library state
python-pkcs11 set up (C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED, which is fine).
"""

from __future__ import annotations

import ctypes as C
from typing import Any

from pkcs11_shim.constants import CKR, Attribute

ULONG = C.c_ulong


class CK_MECHANISM(C.Structure):
    _fields_ = [("mechanism", ULONG), ("pParameter", C.c_void_p), ("ulParameterLen", ULONG)]


class CK_ATTRIBUTE(C.Structure):
    _fields_ = [("type", ULONG), ("pValue", C.c_void_p), ("ulValueLen", ULONG)]


class CK_SIGN_ADDITIONAL_CONTEXT(C.Structure):
    _fields_ = [("hedgeVariant", ULONG), ("pContext", C.c_void_p), ("ulContextLen", ULONG)]


class CK_HASH_SIGN_ADDITIONAL_CONTEXT(C.Structure):
    _fields_ = [("hedgeVariant", ULONG), ("pContext", C.c_void_p), ("ulContextLen", ULONG), ("hash", ULONG)]


class CK_GCM_PARAMS(C.Structure):
    _fields_ = [("pIv", C.c_void_p), ("ulIvLen", ULONG), ("ulIvBits", ULONG), ("pAAD", C.c_void_p),
                ("ulAADLen", ULONG), ("ulTagBits", ULONG)]


class P11Failed(Exception):
    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function}: 0x{rv:x}")
        self.rv = rv


def buffer(data: bytes) -> Any:
    return C.create_string_buffer(data, len(data)) if data else None


class Raw:
    """Keeps every buffer it hands to C alive for its own lifetime."""

    def __init__(self, so: str) -> None:
        self.lib = C.CDLL(so)
        self._keep: list[Any] = []
        rv = self.lib.C_Initialize(None)
        if rv not in (CKR.OK, CKR.CRYPTOKI_ALREADY_INITIALIZED):
            raise P11Failed("C_Initialize", rv)

    def call(self, name: str, *args: Any, ok: tuple[int, ...] = (CKR.OK,)) -> int:
        rv = getattr(self.lib, name)(*args)
        if rv not in ok:
            raise P11Failed(name, rv)
        return rv

    def keep(self, obj: Any) -> Any:
        self._keep.append(obj)
        return obj

    def mechanism(self, number: int, param: Any = None) -> Any:
        if param is None:
            return C.byref(self.keep(CK_MECHANISM(number, None, 0)))
        if isinstance(param, bytes):
            buf = self.keep(buffer(param))
            return C.byref(self.keep(CK_MECHANISM(number, C.cast(buf, C.c_void_p), len(param))))
        self.keep(param)
        return C.byref(self.keep(CK_MECHANISM(number, C.cast(C.pointer(param), C.c_void_p), C.sizeof(param))))

    def context(self, hedge: int, context: bytes, hash_alg: int | None = None) -> Any:
        buf = self.keep(buffer(context))
        ptr = C.cast(buf, C.c_void_p) if buf is not None else None
        if hash_alg is None:
            return CK_SIGN_ADDITIONAL_CONTEXT(hedge, ptr, len(context))
        return CK_HASH_SIGN_ADDITIONAL_CONTEXT(hedge, ptr, len(context), hash_alg)

    def gcm(self, iv: bytes, tag_bits: int = 128, aad: bytes = b"") -> CK_GCM_PARAMS:
        iv_buf, aad_buf = self.keep(buffer(iv)), self.keep(buffer(aad))
        return CK_GCM_PARAMS(C.cast(iv_buf, C.c_void_p), len(iv), len(iv) * 8,
                             C.cast(aad_buf, C.c_void_p) if aad_buf is not None else None, len(aad), tag_bits)

    def template(self, attrs: dict[int, Any]) -> tuple[Any, int]:
        arr = (CK_ATTRIBUTE * len(attrs))()
        for i, (attr, value) in enumerate(attrs.items()):
            if isinstance(value, dict):  # an attribute array (CKA_*_TEMPLATE): nested CK_ATTRIBUTEs
                nested, count = self.template(value)
                arr[i] = CK_ATTRIBUTE(int(attr), C.cast(nested, C.c_void_p), count * C.sizeof(CK_ATTRIBUTE))
                continue
            if isinstance(value, bool):
                raw = bytes([value])
            elif isinstance(value, int):
                raw = int(value).to_bytes(C.sizeof(ULONG), "little")
            else:
                raw = bytes(value)
            buf = self.keep(buffer(raw))
            arr[i] = CK_ATTRIBUTE(int(attr), C.cast(buf, C.c_void_p) if buf is not None else None, len(raw))
        self.keep(arr)
        return arr, len(attrs)

    # --- sessions and objects ------------------------------------------------------------------
    def open_session(self, slot: int, pin: str) -> int:
        handle = ULONG()
        self.call("C_OpenSession", ULONG(slot), ULONG(0x6), None, None, C.byref(handle))  # RW | SERIAL
        self.call("C_Login", handle, ULONG(1), pin.encode(), ULONG(len(pin)),
                  ok=(CKR.OK, CKR.USER_ALREADY_LOGGED_IN))
        return handle.value

    def create(self, session: int, attrs: dict[int, Any]) -> int:
        arr, count = self.template(attrs)
        handle = ULONG()
        self.call("C_CreateObject", ULONG(session), arr, ULONG(count), C.byref(handle))
        return handle.value

    def get(self, session: int, handle: int, attr: int) -> bytes:
        probe = CK_ATTRIBUTE(int(attr), None, 0)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), C.byref(probe), ULONG(1))
        buf = C.create_string_buffer(probe.ulValueLen)
        probe.pValue = C.cast(buf, C.c_void_p)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), C.byref(probe), ULONG(1))
        return buf.raw[: probe.ulValueLen]

    def get_template(self, session: int, handle: int, attr: int) -> dict[int, bytes]:
        """An attribute-array attribute in three calls: its size, its types and lengths, its values."""
        probe = CK_ATTRIBUTE(int(attr), None, 0)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), C.byref(probe), ULONG(1))
        nested = (CK_ATTRIBUTE * (probe.ulValueLen // C.sizeof(CK_ATTRIBUTE)))()
        probe.pValue = C.cast(nested, C.c_void_p)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), C.byref(probe), ULONG(1))
        buffers = [C.create_string_buffer(entry.ulValueLen) for entry in nested]
        for entry, buf in zip(nested, buffers):
            entry.pValue = C.cast(buf, C.c_void_p)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), C.byref(probe), ULONG(1))
        return {entry.type: buf.raw[: entry.ulValueLen] for entry, buf in zip(nested, buffers)}

    def get_ulong(self, session: int, handle: int, attr: int) -> int:
        return int.from_bytes(self.get(session, handle, attr), "little")

    # --- operations ------------------------------------------------------------------------------
    def _two_call(self, name: str, *args: Any) -> bytes:
        length = ULONG()
        self.call(name, *args, None, C.byref(length))
        out = C.create_string_buffer(length.value)
        self.call(name, *args, out, C.byref(length))
        return out.raw[: length.value]

    def sign(self, session: int, mechanism: Any, key: int, data: bytes) -> bytes:
        self.call("C_SignInit", ULONG(session), mechanism, ULONG(key))
        return self._two_call("C_Sign", ULONG(session), buffer(data), ULONG(len(data)))

    def verify(self, session: int, mechanism: Any, key: int, data: bytes, signature: bytes) -> int:
        self.call("C_VerifyInit", ULONG(session), mechanism, ULONG(key))
        return self.call("C_Verify", ULONG(session), buffer(data), ULONG(len(data)), buffer(signature),
                         ULONG(len(signature)), ok=(CKR.OK, CKR.SIGNATURE_INVALID, CKR.SIGNATURE_LEN_RANGE))

    def verify_signature(self, session: int, mechanism: Any, key: int, signature: bytes,
                         parts: list[bytes] | None = None, data: bytes = b"") -> int:
        """C_VerifySignatureInit, then C_VerifySignature (parts None) or Update*/Final."""
        self.call("C_VerifySignatureInit", ULONG(session), mechanism, ULONG(key), buffer(signature),
                  ULONG(len(signature)))
        outcomes = (CKR.OK, CKR.SIGNATURE_INVALID, CKR.SIGNATURE_LEN_RANGE)
        if parts is None:
            return self.call("C_VerifySignature", ULONG(session), buffer(data), ULONG(len(data)), ok=outcomes)
        for part in parts:
            self.call("C_VerifySignatureUpdate", ULONG(session), buffer(part), ULONG(len(part)))
        return self.call("C_VerifySignatureFinal", ULONG(session), ok=outcomes)

    def generate_pair(self, session: int, mechanism: Any, public: dict[int, Any],
                      private: dict[int, Any]) -> tuple[int, int]:
        pub_arr, pub_count = self.template(public)
        priv_arr, priv_count = self.template(private)
        pub, priv = ULONG(), ULONG()
        self.call("C_GenerateKeyPair", ULONG(session), mechanism, pub_arr, ULONG(pub_count), priv_arr,
                  ULONG(priv_count), C.byref(pub), C.byref(priv))
        return pub.value, priv.value

    def encapsulate(self, session: int, mechanism: Any, key: int, attrs: dict[int, Any]) -> tuple[bytes, int]:
        """(ciphertext, new key handle), the ciphertext buffer sized by a first call."""
        arr, count = self.template(attrs)
        length, handle = ULONG(), ULONG()
        self.call("C_EncapsulateKey", ULONG(session), mechanism, ULONG(key), arr, ULONG(count), None,
                  C.byref(length), C.byref(handle))
        out = C.create_string_buffer(length.value)
        self.call("C_EncapsulateKey", ULONG(session), mechanism, ULONG(key), arr, ULONG(count), out,
                  C.byref(length), C.byref(handle))
        return out.raw[: length.value], handle.value

    def decapsulate(self, session: int, mechanism: Any, key: int, ciphertext: bytes,
                    attrs: dict[int, Any]) -> int:
        arr, count = self.template(attrs)
        handle = ULONG()
        self.call("C_DecapsulateKey", ULONG(session), mechanism, ULONG(key), arr, ULONG(count), buffer(ciphertext),
                  ULONG(len(ciphertext)), C.byref(handle))
        return handle.value

    def unwrap(self, session: int, mechanism: Any, key: int, wrapped: bytes, attrs: dict[int, Any]) -> int:
        arr, count = self.template(attrs)
        handle = ULONG()
        self.call("C_UnwrapKey", ULONG(session), mechanism, ULONG(key), buffer(wrapped), ULONG(len(wrapped)), arr,
                  ULONG(count), C.byref(handle))
        return handle.value

    def secret_template(self, key_type: int, length: int) -> dict[int, Any]:
        return {Attribute.CLASS: 4, Attribute.KEY_TYPE: key_type, Attribute.VALUE_LEN: length,
                Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
