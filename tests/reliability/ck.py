"""A minimal ctypes PKCS#11 caller: the .so is loaded RTLD_LOCAL, as a C host would, and every call
goes through the exported C symbols with C-level arguments (NULLs, lengths, templates) we choose.

Used by the crash children, the load test (application mutex callbacks need a C-level
CK_C_INITIALIZE_ARGS, which python-pkcs11 never passes) and the fuzzer.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, Structure, byref, c_char, c_ubyte, c_ulong, c_void_p, sizeof
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SO = ROOT / "build" / "libsoftshield-pkcs11.so"

CK_ULONG = c_ulong
CK_RV = c_ulong

# Numbers (PKCS#11 3.0 pkcs11t.h); only what these tests use.
CKR_OK = 0
CKR_PIN_INCORRECT = 0xA0
CKR_PIN_LOCKED = 0xA4
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_GENERAL_ERROR = 0x5
CKR_BUFFER_TOO_SMALL = 0x150
CKF_RW_SESSION, CKF_SERIAL_SESSION = 0x2, 0x4
CKF_OS_LOCKING_OK = 0x2
CKU_SO, CKU_USER = 0, 1
CKO_SECRET_KEY = 4
CKK_AES, CKK_GENERIC_SECRET = 0x1F, 0x10
CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL = 0x0, 0x1, 0x2, 0x3
CKA_VALUE, CKA_KEY_TYPE, CKA_ID, CKA_SENSITIVE = 0x11, 0x100, 0x102, 0x103
CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY = 0x104, 0x105, 0x108, 0x10A
CKA_VALUE_LEN, CKA_EXTRACTABLE = 0x161, 0x162
CKM_AES_KEY_GEN, CKM_AES_ECB, CKM_AES_CBC_PAD, CKM_AES_CMAC, CKM_AES_GCM = 0x1080, 0x1081, 0x1085, 0x108A, 0x1087
CKM_SHA256 = 0x250
CKM_GENERIC_SECRET_KEY_GEN, CKM_SHA256_HMAC = 0x350, 0x251


class CK_ATTRIBUTE(Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", c_void_p), ("ulValueLen", CK_ULONG)]


class CK_MECHANISM(Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", c_void_p), ("ulParameterLen", CK_ULONG)]


class CK_VERSION(Structure):
    _fields_ = [("major", c_ubyte), ("minor", c_ubyte)]


class CK_TOKEN_INFO(Structure):
    _fields_ = [("label", c_char * 32), ("manufacturerID", c_char * 32), ("model", c_char * 16),
                ("serialNumber", c_char * 16), ("flags", CK_ULONG), ("ulMaxSessionCount", CK_ULONG),
                ("ulSessionCount", CK_ULONG), ("ulMaxRwSessionCount", CK_ULONG),
                ("ulRwSessionCount", CK_ULONG), ("ulMaxPinLen", CK_ULONG), ("ulMinPinLen", CK_ULONG),
                ("ulTotalPublicMemory", CK_ULONG), ("ulFreePublicMemory", CK_ULONG),
                ("ulTotalPrivateMemory", CK_ULONG), ("ulFreePrivateMemory", CK_ULONG),
                ("hardwareVersion", CK_VERSION), ("firmwareVersion", CK_VERSION), ("utcTime", c_char * 16)]


CREATE_MUTEX = ctypes.CFUNCTYPE(CK_RV, POINTER(c_void_p))
MUTEX_FN = ctypes.CFUNCTYPE(CK_RV, c_void_p)


class CK_C_INITIALIZE_ARGS(Structure):
    _fields_ = [("CreateMutex", CREATE_MUTEX), ("DestroyMutex", MUTEX_FN), ("LockMutex", MUTEX_FN),
                ("UnlockMutex", MUTEX_FN), ("flags", CK_ULONG), ("pReserved", c_void_p)]


def load(path: Path = SO) -> ctypes.CDLL:
    """dlopen(RTLD_LOCAL|RTLD_NOW); every C_* returns CK_RV (ctypes releases the GIL per call)."""
    lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
    return lib


def rv(value: int) -> int:
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
    if code != CKR_OK:
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
            if not self.token_info(slot).flags & 0x400:  # CKF_TOKEN_INITIALIZED
                return slot
        raise LookupError("no uninitialised slot")

    def init_token(self, slot: int, so_pin: bytes, label: str) -> None:
        label32 = (c_ubyte * 32)(*label.encode().ljust(32, b" ")[:32])
        call(self.lib, "C_InitToken", CK_ULONG(slot), so_pin, CK_ULONG(len(so_pin)), label32)

    def open(self, slot: int, rw: bool = True) -> int:
        handle = CK_ULONG(0)
        flags = CKF_SERIAL_SESSION | (CKF_RW_SESSION if rw else 0)
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
