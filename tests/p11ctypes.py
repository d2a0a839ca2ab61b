"""The tests' one ctypes PKCS#11 caller: the C structures, the raw calls and three small clients.

A test reaches the library through the exported C symbols when python-pkcs11 cannot express what it
checks: C-level arguments (NULLs, lengths, templates) chosen by the test, application mutex
callbacks in CK_C_INITIALIZE_ARGS, the 3.2 functions and parameters python-pkcs11 0.10.1 lacks, or
the exact CK_RV of a call. Every number comes from `pkcs11_shim.constants`.

- `Client`: loads the .so RTLD_LOCAL as a C host would; each call raises `CkError` unless CKR_OK
  (the crash children, the load test, the fuzzer, the secret tests).
- `Raw`: the library already loaded in this process (python-pkcs11's), mechanism parameters as
  structures; raises `P11Failed` unless the call answers one of the codes allowed.
- `RawClient`: the hardserver client library; each call returns its CK_RV for the test to compare.

tests/conftest.py puts this folder on sys.path; a child process started by a test inserts it itself.
"""

from __future__ import annotations

import ctypes
import os
import re
from ctypes import POINTER, Structure, byref, c_char, c_ubyte, c_ulong, c_void_p, sizeof
from pathlib import Path
from typing import Any

from pkcs11.mechanisms import MLKEMParameterSet

from pkcs11_shim import constants
from pkcs11_shim.constants import (CKR, Attribute, InitFlag, InterfaceFlag, KeyType, Mechanism, MechanismFlag,
                                   ObjectClass, SessionFlag, TokenFlag, UserType)

ROOT = Path(__file__).resolve().parents[1]
SO = ROOT / "build" / "libsoftshield-pkcs11.so"
CLIENT_SO = ROOT / "build" / "libsoftshield-client.so"

CK_ULONG = c_ulong
CK_RV = c_ulong
ULONG = CK_ULONG


# --- structures (PKCS#11 3.2 pkcs11t.h, LP64) ---------------------------------------------------------
class CK_ATTRIBUTE(Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", c_void_p), ("ulValueLen", CK_ULONG)]


class CK_MECHANISM(Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", c_void_p), ("ulParameterLen", CK_ULONG)]


class CK_VERSION(Structure):
    _fields_ = [("major", c_ubyte), ("minor", c_ubyte)]


class CK_INFO(Structure):
    _fields_ = [("cryptokiVersion", CK_VERSION), ("manufacturerID", c_char * 32), ("flags", CK_ULONG),
                ("libraryDescription", c_char * 32), ("libraryVersion", CK_VERSION)]


class CK_SLOT_INFO(Structure):
    _fields_ = [("slotDescription", c_char * 64), ("manufacturerID", c_char * 32), ("flags", CK_ULONG),
                ("hardwareVersion", CK_VERSION), ("firmwareVersion", CK_VERSION)]


class CK_TOKEN_INFO(Structure):
    _fields_ = [("label", c_char * 32), ("manufacturerID", c_char * 32), ("model", c_char * 16),
                ("serialNumber", c_char * 16), ("flags", CK_ULONG), ("ulMaxSessionCount", CK_ULONG),
                ("ulSessionCount", CK_ULONG), ("ulMaxRwSessionCount", CK_ULONG),
                ("ulRwSessionCount", CK_ULONG), ("ulMaxPinLen", CK_ULONG), ("ulMinPinLen", CK_ULONG),
                ("ulTotalPublicMemory", CK_ULONG), ("ulFreePublicMemory", CK_ULONG),
                ("ulTotalPrivateMemory", CK_ULONG), ("ulFreePrivateMemory", CK_ULONG),
                ("hardwareVersion", CK_VERSION), ("firmwareVersion", CK_VERSION), ("utcTime", c_char * 16)]


class CK_SESSION_INFO(Structure):
    _fields_ = [("slotID", CK_ULONG), ("state", CK_ULONG), ("flags", CK_ULONG), ("ulDeviceError", CK_ULONG)]


CREATE_MUTEX = ctypes.CFUNCTYPE(CK_RV, POINTER(c_void_p))
MUTEX_FN = ctypes.CFUNCTYPE(CK_RV, c_void_p)


class CK_C_INITIALIZE_ARGS(Structure):
    _fields_ = [("CreateMutex", CREATE_MUTEX), ("DestroyMutex", MUTEX_FN), ("LockMutex", MUTEX_FN),
                ("UnlockMutex", MUTEX_FN), ("flags", CK_ULONG), ("pReserved", c_void_p)]


class CK_GCM_PARAMS(Structure):
    _fields_ = [("pIv", c_void_p), ("ulIvLen", CK_ULONG), ("ulIvBits", CK_ULONG), ("pAAD", c_void_p),
                ("ulAADLen", CK_ULONG), ("ulTagBits", CK_ULONG)]


class CK_CCM_PARAMS(Structure):
    _fields_ = [("ulDataLen", CK_ULONG), ("pNonce", c_void_p), ("ulNonceLen", CK_ULONG), ("pAAD", c_void_p),
                ("ulAADLen", CK_ULONG), ("ulMACLen", CK_ULONG)]


class CK_RSA_PKCS_OAEP_PARAMS(Structure):
    _fields_ = [("hashAlg", CK_ULONG), ("mgf", CK_ULONG), ("source", CK_ULONG), ("pSourceData", c_void_p),
                ("ulSourceDataLen", CK_ULONG)]


class CK_RSA_PKCS_PSS_PARAMS(Structure):
    _fields_ = [("hashAlg", CK_ULONG), ("mgf", CK_ULONG), ("sLen", CK_ULONG)]


class CK_RSA_AES_KEY_WRAP_PARAMS(Structure):
    _fields_ = [("ulAESKeyBits", CK_ULONG), ("pOAEPParams", POINTER(CK_RSA_PKCS_OAEP_PARAMS))]


class CK_EDDSA_PARAMS(Structure):
    _fields_ = [("phFlag", c_ubyte), ("ulContextDataLen", CK_ULONG), ("pContextData", c_void_p)]


class CK_HKDF_PARAMS(Structure):
    _fields_ = [("bExtract", c_ubyte), ("bExpand", c_ubyte), ("prfHashMechanism", CK_ULONG),
                ("ulSaltType", CK_ULONG), ("pSalt", c_void_p), ("ulSaltLen", CK_ULONG), ("hSaltKey", CK_ULONG),
                ("pInfo", c_void_p), ("ulInfoLen", CK_ULONG)]


class CK_PRF_DATA_PARAM(Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", c_void_p), ("ulValueLen", CK_ULONG)]


class CK_SP800_108_COUNTER_FORMAT(Structure):
    _fields_ = [("bLittleEndian", c_ubyte), ("ulWidthInBits", CK_ULONG)]


class CK_SP800_108_DKM_LENGTH_FORMAT(Structure):
    _fields_ = [("dkmLengthMethod", CK_ULONG), ("bLittleEndian", c_ubyte), ("ulWidthInBits", CK_ULONG)]


class CK_SP800_108_KDF_PARAMS(Structure):
    _fields_ = [("prfType", CK_ULONG), ("ulNumberOfDataParams", CK_ULONG),
                ("pDataParams", POINTER(CK_PRF_DATA_PARAM)), ("ulAdditionalDerivedKeys", CK_ULONG),
                ("pAdditionalDerivedKeys", c_void_p)]


class CK_PKCS5_PBKD2_PARAMS2(Structure):
    _fields_ = [("saltSource", CK_ULONG), ("pSaltSourceData", c_void_p), ("ulSaltSourceDataLen", CK_ULONG),
                ("iterations", CK_ULONG), ("prf", CK_ULONG), ("pPrfData", c_void_p), ("ulPrfDataLen", CK_ULONG),
                ("pPassword", c_void_p), ("ulPasswordLen", CK_ULONG)]


class CK_KEY_DERIVATION_STRING_DATA(Structure):
    _fields_ = [("pData", c_void_p), ("ulLen", CK_ULONG)]


class CK_GCM_MESSAGE_PARAMS(Structure):
    _fields_ = [("pIv", c_void_p), ("ulIvLen", CK_ULONG), ("ulIvFixedBits", CK_ULONG), ("ivGenerator", CK_ULONG),
                ("pTag", c_void_p), ("ulTagBits", CK_ULONG)]


class CK_CCM_MESSAGE_PARAMS(Structure):
    _fields_ = [("ulDataLen", CK_ULONG), ("pNonce", c_void_p), ("ulNonceLen", CK_ULONG),
                ("ulNonceFixedBits", CK_ULONG), ("nonceGenerator", CK_ULONG), ("pMAC", c_void_p),
                ("ulMACLen", CK_ULONG)]


class CK_SIGN_ADDITIONAL_CONTEXT(Structure):
    _fields_ = [("hedgeVariant", CK_ULONG), ("pContext", c_void_p), ("ulContextLen", CK_ULONG)]


class CK_HASH_SIGN_ADDITIONAL_CONTEXT(Structure):
    _fields_ = [("hedgeVariant", CK_ULONG), ("pContext", c_void_p), ("ulContextLen", CK_ULONG),
                ("hash", CK_ULONG)]


# --- raw calls --------------------------------------------------------------------------------------
def load(path: Path = SO) -> ctypes.CDLL:
    """dlopen(RTLD_LOCAL|RTLD_NOW); every C_* returns CK_RV (ctypes releases the GIL per call)."""
    lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
    return lib


def rv(value: int) -> int:
    """A C_* result as the unsigned CK_RV (ctypes' default restype is a signed int)."""
    return int(value) & 0xFFFFFFFFFFFFFFFF


class CkError(Exception):
    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} -> 0x{code:x}")
        self.name, self.code = name, code


def call(lib: ctypes.CDLL, name: str, *args) -> None:
    """Call C_<name>; raise CkError unless CKR_OK."""
    fn = getattr(lib, name)
    fn.restype = CK_RV
    code = rv(fn(*args))
    if code != CKR.OK:
        raise CkError(name, code)


def raw(lib: ctypes.CDLL, name: str, *args) -> int:
    fn = getattr(lib, name)
    fn.restype = CK_RV
    return rv(fn(*args))


class Template:
    """Keeps the value buffers alive as long as the CK_ATTRIBUTE array."""

    def __init__(self, items: list[tuple[int, object]]) -> None:
        self._keep = []
        self.array = (CK_ATTRIBUTE * max(len(items), 1))()
        self.count = len(items)
        for i, (atype, value) in enumerate(items):
            if isinstance(value, bool):
                data = bytes([1 if value else 0])
            elif isinstance(value, int):
                data = value.to_bytes(sizeof(CK_ULONG), "little")
            elif isinstance(value, str):
                data = value.encode()
            else:
                data = bytes(value)  # type: ignore[arg-type]
            buf = ctypes.create_string_buffer(data, len(data)) if data else None
            self._keep.append(buf)
            self.array[i].type = atype
            self.array[i].pValue = ctypes.cast(buf, c_void_p) if buf is not None else None
            self.array[i].ulValueLen = len(data)


def mechanism(number: int, param: bytes | None = None) -> tuple[CK_MECHANISM, object]:
    mech = CK_MECHANISM()
    mech.mechanism = number
    keep = None
    if param:
        keep = ctypes.create_string_buffer(param, len(param))
        mech.pParameter = ctypes.cast(keep, c_void_p)
        mech.ulParameterLen = len(param)
    return mech, keep


def buffer(data: bytes) -> Any:
    return ctypes.create_string_buffer(data, len(data)) if data else None


# --- Client: a C host's view, raising on every code but CKR_OK --------------------------------------
class Client:
    """Small conveniences over the raw calls for the crash, load and secret tests."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def initialize(self, args: CK_C_INITIALIZE_ARGS | None = None) -> None:
        call(self.lib, "C_Initialize", byref(args) if args is not None else None)

    def finalize(self) -> None:
        call(self.lib, "C_Finalize", None)

    def slots(self) -> list[int]:
        count = CK_ULONG(0)
        call(self.lib, "C_GetSlotList", c_ubyte(1), None, byref(count))
        array = (CK_ULONG * count.value)()
        call(self.lib, "C_GetSlotList", c_ubyte(1), array, byref(count))
        return list(array[:count.value])

    def token_info(self, slot: int) -> CK_TOKEN_INFO:
        info = CK_TOKEN_INFO()
        call(self.lib, "C_GetTokenInfo", CK_ULONG(slot), byref(info))
        return info

    def slot_by_label(self, label: str) -> int:
        for slot in self.slots():
            if self.token_info(slot).label.decode().rstrip() == label:
                return slot
        raise LookupError(label)

    def spare_slot(self) -> int:
        for slot in self.slots():
            if not self.token_info(slot).flags & TokenFlag.TOKEN_INITIALIZED:
                return slot
        raise LookupError("no uninitialised slot")

    def init_token(self, slot: int, so_pin: bytes, label: str) -> None:
        label32 = (c_ubyte * 32)(*label.encode().ljust(32, b" ")[:32])
        call(self.lib, "C_InitToken", CK_ULONG(slot), so_pin, CK_ULONG(len(so_pin)), label32)

    def open(self, slot: int, rw: bool = True) -> int:
        handle = CK_ULONG(0)
        flags = SessionFlag.SERIAL_SESSION | (SessionFlag.RW_SESSION if rw else 0)
        call(self.lib, "C_OpenSession", CK_ULONG(slot), CK_ULONG(flags), None, None, byref(handle))
        return handle.value

    def close(self, session: int) -> None:
        call(self.lib, "C_CloseSession", CK_ULONG(session))

    def login(self, session: int, user: int, pin: bytes) -> None:
        call(self.lib, "C_Login", CK_ULONG(session), CK_ULONG(user), pin, CK_ULONG(len(pin)))

    def init_pin(self, session: int, pin: bytes) -> None:
        call(self.lib, "C_InitPIN", CK_ULONG(session), pin, CK_ULONG(len(pin)))

    def generate_key(self, session: int, mech: int, items: list[tuple[int, object]]) -> int:
        m, _keep = mechanism(mech)
        t = Template(items)
        handle = CK_ULONG(0)
        call(self.lib, "C_GenerateKey", CK_ULONG(session), byref(m), t.array, CK_ULONG(t.count), byref(handle))
        return handle.value

    def set_attributes(self, session: int, handle: int, items: list[tuple[int, object]]) -> None:
        t = Template(items)
        call(self.lib, "C_SetAttributeValue", CK_ULONG(session), CK_ULONG(handle), t.array, CK_ULONG(t.count))

    def get_attribute(self, session: int, handle: int, atype: int) -> bytes:
        attr = CK_ATTRIBUTE(atype, None, 0)
        call(self.lib, "C_GetAttributeValue", CK_ULONG(session), CK_ULONG(handle), byref(attr), CK_ULONG(1))
        buf = ctypes.create_string_buffer(attr.ulValueLen or 1)
        attr.pValue = ctypes.cast(buf, c_void_p)
        call(self.lib, "C_GetAttributeValue", CK_ULONG(session), CK_ULONG(handle), byref(attr), CK_ULONG(1))
        return buf.raw[:attr.ulValueLen]

    def find(self, session: int, items: list[tuple[int, object]], limit: int = 1000) -> list[int]:
        t = Template(items)
        call(self.lib, "C_FindObjectsInit", CK_ULONG(session), t.array, CK_ULONG(t.count))
        found: list[int] = []
        try:
            array = (CK_ULONG * 64)()
            count = CK_ULONG(0)
            while len(found) < limit:
                call(self.lib, "C_FindObjects", CK_ULONG(session), array, CK_ULONG(64), byref(count))
                if count.value == 0:
                    break
                found.extend(array[:count.value])
        finally:
            call(self.lib, "C_FindObjectsFinal", CK_ULONG(session))
        return found

    def copy_object(self, session: int, handle: int, items: list[tuple[int, object]]) -> int:
        t = Template(items)
        new = CK_ULONG(0)
        call(self.lib, "C_CopyObject", CK_ULONG(session), CK_ULONG(handle), t.array, CK_ULONG(t.count), byref(new))
        return new.value

    def destroy(self, session: int, handle: int) -> None:
        call(self.lib, "C_DestroyObject", CK_ULONG(session), CK_ULONG(handle))

    def sign(self, session: int, mech: int, key: int, data: bytes) -> bytes:
        m, _keep = mechanism(mech)
        call(self.lib, "C_SignInit", CK_ULONG(session), byref(m), CK_ULONG(key))
        out = ctypes.create_string_buffer(512)
        length = CK_ULONG(512)
        call(self.lib, "C_Sign", CK_ULONG(session), data, CK_ULONG(len(data)), out, byref(length))
        return out.raw[:length.value]

    def encrypt(self, session: int, mech: int, key: int, data: bytes, param: bytes | None = None) -> bytes:
        m, _keep = mechanism(mech, param)
        call(self.lib, "C_EncryptInit", CK_ULONG(session), byref(m), CK_ULONG(key))
        out = ctypes.create_string_buffer(len(data) + 64)
        length = CK_ULONG(len(data) + 64)
        call(self.lib, "C_Encrypt", CK_ULONG(session), data, CK_ULONG(len(data)), out, byref(length))
        return out.raw[:length.value]


# --- Raw: beside python-pkcs11 in one process, for what python-pkcs11 0.10.1 cannot express ----------
class P11Failed(Exception):
    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function}: 0x{rv:x}")
        self.rv = rv


class Raw:
    """The library's exported C_* symbols in this process, sharing the library state python-pkcs11
    set up (C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED, which is fine): the 3.2 functions
    other than C_EncapsulateKey/C_DecapsulateKey, mechanisms its enum lacks (CKM_HASH_ML_DSA*) and
    the CK_SIGN_ADDITIONAL_CONTEXT parameters. Keeps every buffer it hands to C alive for its own
    lifetime."""

    def __init__(self, so: str) -> None:
        self.lib = ctypes.CDLL(so)
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
            return byref(self.keep(CK_MECHANISM(number, None, 0)))
        if isinstance(param, bytes):
            buf = self.keep(buffer(param))
            return byref(self.keep(CK_MECHANISM(number, ctypes.cast(buf, c_void_p), len(param))))
        self.keep(param)
        return byref(self.keep(CK_MECHANISM(number, ctypes.cast(ctypes.pointer(param), c_void_p), sizeof(param))))

    def context(self, hedge: int, context: bytes, hash_alg: int | None = None) -> Any:
        buf = self.keep(buffer(context))
        ptr = ctypes.cast(buf, c_void_p) if buf is not None else None
        if hash_alg is None:
            return CK_SIGN_ADDITIONAL_CONTEXT(hedge, ptr, len(context))
        return CK_HASH_SIGN_ADDITIONAL_CONTEXT(hedge, ptr, len(context), hash_alg)

    def gcm(self, iv: bytes, tag_bits: int = 128, aad: bytes = b"") -> CK_GCM_PARAMS:
        iv_buf, aad_buf = self.keep(buffer(iv)), self.keep(buffer(aad))
        return CK_GCM_PARAMS(ctypes.cast(iv_buf, c_void_p), len(iv), len(iv) * 8,
                             ctypes.cast(aad_buf, c_void_p) if aad_buf is not None else None, len(aad), tag_bits)

    def template(self, attrs: dict[int, Any]) -> tuple[Any, int]:
        arr = (CK_ATTRIBUTE * len(attrs))()
        for i, (attr, value) in enumerate(attrs.items()):
            if isinstance(value, dict):  # an attribute array (CKA_*_TEMPLATE): nested CK_ATTRIBUTEs
                nested, count = self.template(value)
                arr[i] = CK_ATTRIBUTE(int(attr), ctypes.cast(nested, c_void_p), count * sizeof(CK_ATTRIBUTE))
                continue
            if isinstance(value, bool):
                data = bytes([value])
            elif isinstance(value, int):
                data = int(value).to_bytes(sizeof(ULONG), "little")
            else:
                data = bytes(value)
            buf = self.keep(buffer(data))
            arr[i] = CK_ATTRIBUTE(int(attr), ctypes.cast(buf, c_void_p) if buf is not None else None, len(data))
        self.keep(arr)
        return arr, len(attrs)

    # --- sessions and objects ------------------------------------------------------------------
    def open_session(self, slot: int, pin: str) -> int:
        handle = ULONG()
        self.call("C_OpenSession", ULONG(slot), ULONG(SessionFlag.RW_SESSION | SessionFlag.SERIAL_SESSION),
                  None, None, byref(handle))
        self.call("C_Login", handle, ULONG(UserType.USER), pin.encode(), ULONG(len(pin)),
                  ok=(CKR.OK, CKR.USER_ALREADY_LOGGED_IN))
        return handle.value

    def create(self, session: int, attrs: dict[int, Any]) -> int:
        arr, count = self.template(attrs)
        handle = ULONG()
        self.call("C_CreateObject", ULONG(session), arr, ULONG(count), byref(handle))
        return handle.value

    def get(self, session: int, handle: int, attr: int) -> bytes:
        probe = CK_ATTRIBUTE(int(attr), None, 0)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), byref(probe), ULONG(1))
        buf = ctypes.create_string_buffer(probe.ulValueLen)
        probe.pValue = ctypes.cast(buf, c_void_p)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), byref(probe), ULONG(1))
        return buf.raw[: probe.ulValueLen]

    def get_template(self, session: int, handle: int, attr: int) -> dict[int, bytes]:
        """An attribute-array attribute in three calls: its size, its types and lengths, its values."""
        probe = CK_ATTRIBUTE(int(attr), None, 0)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), byref(probe), ULONG(1))
        nested = (CK_ATTRIBUTE * (probe.ulValueLen // sizeof(CK_ATTRIBUTE)))()
        probe.pValue = ctypes.cast(nested, c_void_p)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), byref(probe), ULONG(1))
        buffers = [ctypes.create_string_buffer(entry.ulValueLen) for entry in nested]
        for entry, buf in zip(nested, buffers):
            entry.pValue = ctypes.cast(buf, c_void_p)
        self.call("C_GetAttributeValue", ULONG(session), ULONG(handle), byref(probe), ULONG(1))
        return {entry.type: buf.raw[: entry.ulValueLen] for entry, buf in zip(nested, buffers)}

    def get_ulong(self, session: int, handle: int, attr: int) -> int:
        return int.from_bytes(self.get(session, handle, attr), "little")

    # --- operations ------------------------------------------------------------------------------
    def _two_call(self, name: str, *args: Any) -> bytes:
        length = ULONG()
        self.call(name, *args, None, byref(length))
        out = ctypes.create_string_buffer(length.value)
        self.call(name, *args, out, byref(length))
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
                  ULONG(priv_count), byref(pub), byref(priv))
        return pub.value, priv.value

    def encapsulate(self, session: int, mechanism: Any, key: int, attrs: dict[int, Any]) -> tuple[bytes, int]:
        """(ciphertext, new key handle), the ciphertext buffer sized by a first call."""
        arr, count = self.template(attrs)
        length, handle = ULONG(), ULONG()
        self.call("C_EncapsulateKey", ULONG(session), mechanism, ULONG(key), arr, ULONG(count), None,
                  byref(length), byref(handle))
        out = ctypes.create_string_buffer(length.value)
        self.call("C_EncapsulateKey", ULONG(session), mechanism, ULONG(key), arr, ULONG(count), out,
                  byref(length), byref(handle))
        return out.raw[: length.value], handle.value

    def decapsulate(self, session: int, mechanism: Any, key: int, ciphertext: bytes,
                    attrs: dict[int, Any]) -> int:
        arr, count = self.template(attrs)
        handle = ULONG()
        self.call("C_DecapsulateKey", ULONG(session), mechanism, ULONG(key), arr, ULONG(count), buffer(ciphertext),
                  ULONG(len(ciphertext)), byref(handle))
        return handle.value

    def unwrap(self, session: int, mechanism: Any, key: int, wrapped: bytes, attrs: dict[int, Any]) -> int:
        arr, count = self.template(attrs)
        handle = ULONG()
        self.call("C_UnwrapKey", ULONG(session), mechanism, ULONG(key), buffer(wrapped), ULONG(len(wrapped)), arr,
                  ULONG(count), byref(handle))
        return handle.value

    def secret_template(self, key_type: int, length: int) -> dict[int, Any]:
        return {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type, Attribute.VALUE_LEN: length,
                Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


# --- RawClient: the hardserver client library, every call answering its CK_RV --------------------
class RawClient:
    """The client library through ctypes (C only, safe in this process): exact CK_RVs."""

    def __init__(self, so: Path = CLIENT_SO) -> None:
        self.lib = ctypes.CDLL(str(so))
        for name in ("C_Initialize", "C_Finalize", "C_OpenSession", "C_CloseSession", "C_GetTokenInfo",
                     "C_GenerateRandom", "C_GetSlotList", "C_GetSessionInfo"):
            getattr(self.lib, name).restype = CK_RV

    def initialize(self, server: Any, timeout: int = 20) -> int:
        """C_Initialize against `server` (anything with a `.socket`), which the library reads from
        this process's environment at C_Initialize; never starting a server of its own."""
        os.environ["SOFTSHIELD_HARDSERVER"] = str(server.socket)
        os.environ["SOFTSHIELD_HARDSERVER_AUTOSTART"] = "0"
        os.environ["SOFTSHIELD_HARDSERVER_TIMEOUT"] = str(timeout)
        return self.lib.C_Initialize(None)

    def finalize(self) -> int:
        return self.lib.C_Finalize(None)

    def open_session(self, slot: int) -> tuple[int, int]:
        handle = CK_ULONG(0)
        rv = self.lib.C_OpenSession(CK_ULONG(slot), CK_ULONG(SessionFlag.RW_SESSION | SessionFlag.SERIAL_SESSION),
                                    None, None, byref(handle))
        return rv, handle.value

    def random(self, session: int, n: int = 16) -> tuple[int, bytes]:
        buf = ctypes.create_string_buffer(n)
        rv = self.lib.C_GenerateRandom(CK_ULONG(session), buf, CK_ULONG(n))
        return rv, buf.raw

    def session_count(self, slot: int) -> int:
        info = CK_TOKEN_INFO()
        rv = self.lib.C_GetTokenInfo(CK_ULONG(slot), byref(info))
        assert rv == CKR.OK, hex(rv)
        return info.ulSessionCount

    def slot_of(self, label: str) -> int:
        count = CK_ULONG(0)
        assert self.lib.C_GetSlotList(1, None, byref(count)) == CKR.OK
        slots = (CK_ULONG * count.value)()
        assert self.lib.C_GetSlotList(1, slots, byref(count)) == CKR.OK
        for slot in slots[: count.value]:
            info = CK_TOKEN_INFO()
            if self.lib.C_GetTokenInfo(CK_ULONG(slot), byref(info)) == CKR.OK:
                if info.label.decode().rstrip() == label:
                    return slot
        raise AssertionError(f"no token {label}")


# --- the C hosts' numbers -----------------------------------------------------------------------------
#: The enum each C name prefix numbers, for names `<prefix><member>`.
_C_PREFIXES = {"CKR_": CKR, "CKA_": Attribute, "CKM_": Mechanism, "CKK_": KeyType, "CKO_": ObjectClass,
               "CKU_": UserType}
#: C names whose prefix is shared by several enums (the CKF_ flags) or that name another enum's member.
_C_NAMES = {"CKF_RW_SESSION": SessionFlag.RW_SESSION, "CKF_SERIAL_SESSION": SessionFlag.SERIAL_SESSION,
            "CKF_OS_LOCKING_OK": InitFlag.OS_LOCKING_OK,
            "CKF_LIBRARY_CANT_CREATE_OS_THREADS": InitFlag.LIBRARY_CANT_CREATE_OS_THREADS,
            "CKF_INTERFACE_FORK_SAFE": InterfaceFlag.FORK_SAFE, "CKF_SIGN": MechanismFlag.SIGN,
            "CKP_ML_KEM_768": MLKEMParameterSet.ML_KEM_768}


def c_number(name: str) -> int:
    """The value of a PKCS#11 C name (CKR_OK, CKA_CLASS, CKF_SIGN, ...) from pkcs11_shim.constants."""
    if name in _C_NAMES:
        return int(_C_NAMES[name])
    if hasattr(constants, name):
        return int(getattr(constants, name))
    for prefix, enum in _C_PREFIXES.items():
        if name.startswith(prefix) and name[len(prefix):] in enum.__members__:
            return int(enum[name[len(prefix):]])
    raise LookupError(f"no number for {name} in pkcs11_shim.constants")


def c_header(source: Path, folder: Path) -> Path:
    """`folder`/ck_numbers.h: a `#define` from pkcs11_shim.constants for every PKCS#11 name the C
    source uses and does not define itself, so a C host carries no second copy of the numbers."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", source.read_text(), flags=re.S)  # names in comments are no uses
    own = set(re.findall(r"^#define (CK[A-Z]_\w+)", text, re.M))
    names = sorted(set(re.findall(r"\bCK[A-Z]_[A-Z0-9_]+\b", text)) - own)
    header = folder / "ck_numbers.h"
    header.write_text("/* Written by tests/p11ctypes.py from pkcs11_shim.constants. */\n"
                      + "".join(f"#define {name} {c_number(name):#x}UL\n" for name in names))
    return header
