"""The C boundary, driven by a C host (tests/pkcs11/c/host.c) that dlopen()s the library with
RTLD_LOCAL|RTLD_NOW, the way that breaks naive cffi embeddings.

The host is compiled once per session into a temporary folder and runs one scenario per process.
Every line it prints is `<check> 0x<rv> [key=value ...]`; this module holds the exact return code
the PKCS#11 3.0 specification asks for at every check (section numbers in the comments), and the
extra values some checks report (lengths, states, counters). Each test compares one section of one
scenario and lists every mismatch at once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from p11ctypes import c_header
from pkcs11_shim.constants import CK_UNAVAILABLE_INFORMATION, CKR, KeyType

from p11env import ROOT, SO_PIN, USER_PIN, init_token

HOST_SOURCE = Path(__file__).resolve().parent / "c" / "host.c"
NATIVE = ROOT / "native"
UNAVAILABLE = str(CK_UNAVAILABLE_INFORMATION)  # as the host prints it (%lu)
UNAVAILABLE_HEX = hex(CK_UNAVAILABLE_INFORMATION)  # ... and with %lx

# ---- the functions, as the host names them --------------------------------------------------
GLOBAL_FUNCTIONS = ["C_GetInfo", "C_GetSlotList", "C_WaitForSlotEvent"]
SLOT_FUNCTIONS = ["C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
                  "C_InitToken", "C_OpenSession", "C_CloseAllSessions"]
SESSION_FUNCTIONS_2_40 = [
    "C_InitPIN", "C_SetPIN", "C_CloseSession", "C_GetSessionInfo", "C_GetOperationState",
    "C_SetOperationState", "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject", "C_DestroyObject",
    "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue", "C_FindObjectsInit",
    "C_FindObjects", "C_FindObjectsFinal", "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate",
    "C_EncryptFinal", "C_DecryptInit", "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal",
    "C_DigestInit", "C_Digest", "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_SignInit",
    "C_Sign", "C_SignUpdate", "C_SignFinal", "C_SignRecoverInit", "C_SignRecover", "C_VerifyInit",
    "C_Verify", "C_VerifyUpdate", "C_VerifyFinal", "C_VerifyRecoverInit", "C_VerifyRecover",
    "C_DigestEncryptUpdate", "C_DecryptDigestUpdate", "C_SignEncryptUpdate", "C_DecryptVerifyUpdate",
    "C_GenerateKey", "C_GenerateKeyPair", "C_WrapKey", "C_UnwrapKey", "C_DeriveKey", "C_SeedRandom",
    "C_GenerateRandom", "C_GetFunctionStatus", "C_CancelFunction",
]
SESSION_FUNCTIONS_3_0 = [
    "C_LoginUser", "C_SessionCancel", "C_MessageEncryptInit", "C_EncryptMessage",
    "C_EncryptMessageBegin", "C_EncryptMessageNext", "C_MessageEncryptFinal", "C_MessageDecryptInit",
    "C_DecryptMessage", "C_DecryptMessageBegin", "C_DecryptMessageNext", "C_MessageDecryptFinal",
    "C_MessageSignInit", "C_SignMessage", "C_SignMessageBegin", "C_SignMessageNext",
    "C_MessageSignFinal", "C_MessageVerifyInit", "C_VerifyMessage", "C_VerifyMessageBegin",
    "C_VerifyMessageNext", "C_MessageVerifyFinal",
]
SESSION_FUNCTIONS = SESSION_FUNCTIONS_2_40 + SESSION_FUNCTIONS_3_0
#: Every function the library forwards to Python, except C_Initialize (host order).
PYTHON_FUNCTIONS = GLOBAL_FUNCTIONS + SLOT_FUNCTIONS + SESSION_FUNCTIONS + ["C_Finalize"]


# ---- expectations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    codes: frozenset[int]
    extras: dict[str, Any] = field(default_factory=dict)  # value: str, or predicate on the str


def E(*codes: int, **extras: Any) -> Expect:
    """The check must return one of `codes` (one, unless the spec allows several) and these extras."""
    return Expect(frozenset(int(c) for c in codes), extras)


def at_least(n: int) -> Callable[[str], bool]:
    fn = lambda v: int(v) >= n  # noqa: E731
    fn.__doc__ = f">= {n}"
    return fn


def every(prefix: str, names: list[str], code: int) -> dict[str, Expect]:
    return {f"{prefix}.{name}": E(code) for name in names}


OK = CKR.OK
ARGS = CKR.ARGUMENTS_BAD
NOT_INIT = CKR.CRYPTOKI_NOT_INITIALIZED

EXPECTED: dict[str, dict[str, Expect]] = {}

EXPECTED["tables"] = {
    "tables.symbols": E(OK, get_function_list="1", get_interface_list="1", get_interface="1"),
    "tables.getfunctionlist": E(OK, major="2", minor="40"),
    "tables.getfunctionlist.null": E(ARGS),
    # Every exported C_* is the function in its table slot (OASIS order), in both tables.
    "tables.symbols-3.0": E(OK, missing="0", mismatched="0"),
    "tables.table-2.40": E(OK, mismatched="0"),
    # §5.4.5: two-call count convention; OpenSC's p11test wants ARGUMENTS_BAD for a NULL count.
    "tables.interfacelist.null-count": E(ARGS),
    "tables.interfacelist.count": E(OK, count="3"),
    "tables.interfacelist.too-small": E(CKR.BUFFER_TOO_SMALL, count="3"),
    "tables.interfacelist": E(OK, count="3"),
    # 3.2 first, then 3.0, then 2.40 (the same table C_GetFunctionList hands out).
    "tables.interface0": E(OK, name="PKCS 11", major="3", minor="2", flags="0", same_as_getfunctionlist="0"),
    "tables.interface1": E(OK, name="PKCS 11", major="3", minor="0", flags="0", same_as_getfunctionlist="0"),
    "tables.interface2": E(OK, name="PKCS 11", major="2", minor="40", flags="0", same_as_getfunctionlist="1"),
    "done": E(OK),
}

EXPECTED["before-init"] = {
    # §5.4.4-5.4.6: the table functions are the ones allowed before C_Initialize.
    "getfunctionlist": E(OK, major="2", minor="40"),
    "getinterfacelist.count": E(OK, count="3"),
    "getinterface.default": E(OK, name="PKCS 11", major="3", minor="2"),
    "getinterface.name-only": E(OK, name="PKCS 11", major="3", minor="2"),
    "getinterface.v2.40": E(OK, name="PKCS 11", major="2", minor="40"),
    "getinterface.v3.0": E(OK, name="PKCS 11", major="3", minor="0"),
    "getinterface.v3.0-no-name": E(OK, name="PKCS 11", major="3", minor="0"),
    "getinterface.unknown-name": E(ARGS),
    "getinterface.unknown-version": E(ARGS),
    "getinterface.old-version": E(ARGS),
    "getinterface.null-out": E(ARGS),
    # §5.1.6 (CKR_CRYPTOKI_NOT_INITIALIZED): every other function before C_Initialize.
    **every("before", PYTHON_FUNCTIONS, NOT_INIT),
    "before.v2.C_GetInfo": E(NOT_INIT),
    "after.C_Initialize": E(OK),
    "after.C_GetInfo": E(OK),
    "after.C_Finalize": E(OK),
    "done": E(OK),
}

EXPECTED["init-args"] = {
    # §5.4.1: pReserved must be NULL; callbacks all or none; a refused C_Initialize initialises nothing.
    "init.reserved-non-null": E(ARGS),
    "init.reserved-non-null.then-getinfo": E(NOT_INIT),
    "init.two-of-four-callbacks": E(ARGS),
    "init.three-of-four-callbacks": E(ARGS),
    "init.one-callback-with-os-locking": E(ARGS),
    "init.partial.then-getinfo": E(NOT_INIT),
    # Case 3: callbacks without CKF_OS_LOCKING_OK -> the library must use the application's mutexes.
    "init.app-mutex": E(OK),
    "init.app-mutex.calls": E(OK),
    "init.app-mutex.threads": E(OK, failures="0"),
    "init.app-mutex.counts": E(OK, created=at_least(1), locked=at_least(1)),
    "init.second-initialize": E(CKR.CRYPTOKI_ALREADY_INITIALIZED),
    "init.second-initialize-with-args": E(CKR.CRYPTOKI_ALREADY_INITIALIZED),
    "finalize.reserved-non-null": E(ARGS),  # §5.4.2
    "finalize.app-mutex": E(OK),
    "finalize.app-mutex.counts": E(OK),
    **every("after-finalize", PYTHON_FUNCTIONS, NOT_INIT),
    # Case 2: the flag alone -> OS locks; the application's callbacks are not used any more.
    "init.os-locking": E(OK),
    "init.os-locking.calls": E(OK),
    "init.os-locking.threads": E(OK, failures="0"),
    "init.os-locking.app-locks": E(OK, used="0"),
    "finalize.os-locking": E(OK),
    "init.both": E(OK),
    "init.both.calls": E(OK),
    "finalize.both": E(OK),
    # The library creates no threads, so CKF_LIBRARY_CANT_CREATE_OS_THREADS is satisfiable.
    "init.cant-create-threads": E(OK),
    "init.cant-create-threads.calls": E(OK),
    "finalize.cant-create-threads": E(OK),
    # Case 1 (NULL / all zero): the library still locks its own state (python-pkcs11 does this).
    "init.null": E(OK),
    "init.null.threads": E(OK, failures="0"),
    "finalize.null": E(OK),
    "init.zeroed": E(OK),
    "finalize.zeroed": E(OK),
    "finalize.twice": E(NOT_INIT),
    "after-all.C_GetInfo": E(NOT_INIT),
    "done": E(OK),
}

EXPECTED["python-failed"] = {
    # The table functions are answered in C and still work...
    "pyfail.getfunctionlist": E(OK, major="2", minor="40"),
    "pyfail.getinterfacelist": E(OK, count="3"),
    "pyfail.getinterface": E(OK, name="PKCS 11", major="3", minor="2"),
    # ...every other entry point answers CKR_GENERAL_ERROR, never the 0 cffi would return.
    "pyfail.C_Initialize": E(CKR.GENERAL_ERROR),
    "pyfail.C_Initialize.again": E(CKR.GENERAL_ERROR),
    **every("pyfail", PYTHON_FUNCTIONS, CKR.GENERAL_ERROR),
    "pyfail.v2.C_Initialize": E(CKR.GENERAL_ERROR),
    "done": E(OK),
}

EXPECTED["bad-input"] = {
    "setup.C_Initialize": E(OK),
    "setup.slot": E(OK),
    # NULL output pointers (§5.1.6 CKR_ARGUMENTS_BAD).
    "null.C_GetInfo": E(ARGS),
    "null.C_GetSlotList.count": E(ARGS),
    "null.C_GetSlotList.both": E(ARGS),
    "null.C_GetSlotInfo": E(ARGS),
    "null.C_GetTokenInfo": E(ARGS),
    "null.C_GetMechanismList": E(ARGS),
    "null.C_GetMechanismInfo": E(ARGS),
    "null.C_OpenSession": E(ARGS),
    "null.C_WaitForSlotEvent": E(ARGS),
    "waitforslotevent.reserved": E(ARGS),  # §5.5.4: pReserved must be NULL
    "waitforslotevent.dont-block": E(CKR.NO_EVENT),
    # §5.2 on the list functions.
    "slotlist.length": E(OK, count=at_least(2)),
    "slotlist.too-small": E(CKR.BUFFER_TOO_SMALL),
    "mechanismlist.length": E(OK, count=at_least(1)),
    "mechanismlist.too-small": E(CKR.BUFFER_TOO_SMALL),
    **every("badslot", SLOT_FUNCTIONS, CKR.SLOT_ID_INVALID),
    # §5.6.1
    "session.not-serial": E(CKR.SESSION_PARALLEL_NOT_SUPPORTED),
    "session.open-rw": E(OK),
    "session.open-ro": E(OK),
    "null.C_GetSessionInfo": E(ARGS),
    # §5.1.2 / §5.1.7: an invalid handle wins over everything but the universal codes.
    **every("badsession", SESSION_FUNCTIONS, CKR.SESSION_HANDLE_INVALID),
    **every("zerosession", SESSION_FUNCTIONS, CKR.SESSION_HANDLE_INVALID),
    # §5.6.8-5.6.10
    "login.bad-user-type": E(CKR.USER_TYPE_INVALID),
    "logout.not-logged-in": E(CKR.USER_NOT_LOGGED_IN),
    "login.context-specific-without-operation": E(CKR.OPERATION_NOT_INITIALIZED),
    "create.private-logged-out": E(CKR.USER_NOT_LOGGED_IN),
    "login.so-with-ro-session": E(CKR.SESSION_READ_ONLY_EXISTS),
    "login.wrong-pin": E(CKR.PIN_INCORRECT),
    "login.null-pin": E(ARGS),  # no CKF_PROTECTED_AUTHENTICATION_PATH
    "login.user": E(OK),
    "login.twice": E(CKR.USER_ALREADY_LOGGED_IN),
    "login.twice-other-session": E(CKR.USER_ALREADY_LOGGED_IN),  # login is per application
    "sessioninfo.ro-after-login": E(OK, state="1", flags="4"),  # CKS_RO_USER_FUNCTIONS
    "sessioninfo.rw-after-login": E(OK, state="3", flags="6", slot_ok="1"),  # CKS_RW_USER_FUNCTIONS
    "readonly.create-token-object": E(CKR.SESSION_READ_ONLY),
    "readonly.generate-token-key": E(CKR.SESSION_READ_ONLY),
    # NULL pointers, NULL templates, NULL data.
    "null.C_CreateObject.handle": E(ARGS),
    "null.C_GenerateKey.handle": E(ARGS),
    "null.C_CreateObject.template": E(ARGS),
    "null.C_GenerateKey.template": E(ARGS),
    "null.C_GenerateKey.mechanism": E(ARGS),
    "null.C_FindObjectsInit.template": E(ARGS),
    # A NULL value with a length inside a template: a bad argument or a bad attribute value.
    "null.C_CreateObject.attribute-value": E(ARGS, CKR.ATTRIBUTE_VALUE_INVALID),
    "setup.data-object": E(OK),
    "null.C_GetAttributeValue.template": E(ARGS),
    "null.C_SetAttributeValue.template": E(ARGS),
    "null.C_GetObjectSize": E(ARGS),
    "find.init": E(OK),
    "null.C_FindObjects.handles": E(ARGS),
    "null.C_FindObjects.count": E(ARGS),
    "find.init-twice": E(CKR.OPERATION_ACTIVE),
    "find.objects": E(OK, count=at_least(1)),
    "find.final": E(OK),
    "null.C_GenerateRandom": E(ARGS),
    "null.C_SeedRandom": E(ARGS),
    "generaterandom.zero": E(OK),
    "generaterandom": E(OK),
    "digest.init": E(OK),
    "null.C_Digest.data": E(ARGS),
    # §5.12.2: C_Digest always terminates the operation unless it returns CKR_BUFFER_TOO_SMALL or
    # is a successful length query, so a new C_DigestInit must succeed.
    "digest.after-error.reinit": E(OK),
    "null.C_DigestUpdate.data": E(ARGS),
    "null.C_Digest.length": E(ARGS),
    "digest.sha256-abc": E(OK, len="32", kat="1"),
    # Huge lengths with small buffers and huge template counts are refused, not read.
    "huge.C_Digest": E(ARGS),
    "huge.C_DigestUpdate": E(ARGS),
    "huge.C_GenerateRandom": E(ARGS),
    "huge.C_SeedRandom": E(ARGS),
    "huge.C_CreateObject.count": E(ARGS),
    "huge.C_FindObjectsInit.count": E(ARGS),
    "huge.C_GetAttributeValue.count": E(ARGS),
    "huge.C_SetAttributeValue.count": E(ARGS),
    "huge.C_GenerateKey.count": E(ARGS),
    "huge.C_CreateObject.value-len": E(ARGS, CKR.ATTRIBUTE_VALUE_INVALID),
    "huge.C_Login.pin-len": E(ARGS, CKR.PIN_LEN_RANGE, CKR.USER_ALREADY_LOGGED_IN),
    "huge.still-alive": E(OK),
    # §4.1.1 object creation scenarios.
    "template.empty": E(CKR.TEMPLATE_INCOMPLETE),
    "template.class-len-3": E(CKR.ATTRIBUTE_VALUE_INVALID),
    "template.class-unknown": E(CKR.ATTRIBUTE_VALUE_INVALID),
    "template.unknown-attribute": E(CKR.ATTRIBUTE_TYPE_INVALID),
    "template.aes-without-value": E(CKR.TEMPLATE_INCOMPLETE),
    "template.secret-without-key-type": E(CKR.TEMPLATE_INCOMPLETE),
    "template.same-attribute-twice": E(CKR.TEMPLATE_INCONSISTENT),  # two different values
    # CKA_LOCAL: footnote 2 (must not be given to C_CreateObject), i.e. read-only (§4.1.1 item 3).
    "template.read-only-local": E(CKR.ATTRIBUTE_READ_ONLY, CKR.TEMPLATE_INCONSISTENT),
    "template.aes-15-byte-value": E(CKR.ATTRIBUTE_VALUE_INVALID),  # AES keys are 16/24/32 bytes
    "template.generate-without-value-len": E(CKR.TEMPLATE_INCOMPLETE),  # footnote 3
    "setup.kat-key": E(OK),
    "setup.wrap-key": E(OK),
    "setup.sensitive-key": E(OK),
    "setup.rsa-pair": E(OK),
    "setup.rsa-pair-nosign": E(OK),
    # §5.7.5
    "getattr.sensitive-value": E(CKR.ATTRIBUTE_SENSITIVE, len=UNAVAILABLE_HEX),
    "getattr.sensitive-and-key-type": E(CKR.ATTRIBUTE_SENSITIVE, len0=UNAVAILABLE_HEX, len1="8",
                                        key_type=f"{KeyType.AES:#x}"),
    "getattr.rsa-private-exponent": E(CKR.ATTRIBUTE_SENSITIVE, len=UNAVAILABLE_HEX),
    "getattr.rsa-modulus-length": E(OK, len="256"),
    "getattr.unknown-attribute": E(CKR.ATTRIBUTE_TYPE_INVALID, len=UNAVAILABLE_HEX),
    "getattr.too-small": E(CKR.BUFFER_TOO_SMALL, len=UNAVAILABLE_HEX),
    "getattr.null-value": E(OK, len="11"),
    "getattr.label": E(OK, len="11", match="1"),
    "getattr.plain-value": E(OK, len="16", match="1"),
    # Handles.
    "badobject.C_GetAttributeValue": E(CKR.OBJECT_HANDLE_INVALID),
    "badobject.C_SetAttributeValue": E(CKR.OBJECT_HANDLE_INVALID),
    "badobject.C_GetObjectSize": E(CKR.OBJECT_HANDLE_INVALID),
    "badobject.C_CopyObject": E(CKR.OBJECT_HANDLE_INVALID),
    "badobject.C_DestroyObject": E(CKR.OBJECT_HANDLE_INVALID),
    "badobject.C_DestroyObject.zero": E(CKR.OBJECT_HANDLE_INVALID),
    "badkey.C_EncryptInit": E(CKR.KEY_HANDLE_INVALID),
    "badkey.C_DecryptInit": E(CKR.KEY_HANDLE_INVALID),
    "badkey.C_SignInit": E(CKR.KEY_HANDLE_INVALID),
    "badkey.C_VerifyInit": E(CKR.KEY_HANDLE_INVALID),
    "badkey.C_EncryptInit.zero": E(CKR.KEY_HANDLE_INVALID),
    "digest.init-for-digestkey": E(OK),
    "badkey.C_DigestKey": E(CKR.KEY_HANDLE_INVALID),
    "badkey.C_WrapKey.wrapping": E(CKR.WRAPPING_KEY_HANDLE_INVALID),
    "badkey.C_WrapKey.target": E(CKR.KEY_HANDLE_INVALID),
    "badkey.C_UnwrapKey": E(CKR.UNWRAPPING_KEY_HANDLE_INVALID),
    # Operations that were never initialised.
    **every("notinit", ["C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_Decrypt", "C_DecryptFinal",
                        "C_Sign", "C_SignUpdate", "C_SignFinal", "C_Verify", "C_VerifyFinal", "C_Digest",
                        "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_FindObjects",
                        "C_FindObjectsFinal", "C_GetOperationState"],  # §5.6.6 for the last
            CKR.OPERATION_NOT_INITIALIZED),
    "setoperationstate.garbage": E(CKR.SAVED_STATE_INVALID),  # §5.6.7
    "mechanism.unknown.C_EncryptInit": E(CKR.MECHANISM_INVALID),
    "mechanism.unknown.C_DigestInit": E(CKR.MECHANISM_INVALID),
    "mechanism.unknown.C_GenerateKey": E(CKR.MECHANISM_INVALID),
    "mechanism.unknown.C_GetMechanismInfo": E(CKR.MECHANISM_INVALID),
    "mechanism.not-a-digest.C_DigestInit": E(CKR.MECHANISM_INVALID),
    # 3.0 §5.8.1: C_EncryptInit with pMechanism NULL terminates the active encryption operation.
    "terminate.encrypt-init": E(OK),
    "terminate.encrypt-init-null": E(OK),
    "terminate.then-encrypt": E(CKR.OPERATION_NOT_INITIALIZED),
    "keytype.aes-with-rsa-pkcs": E(CKR.KEY_TYPE_INCONSISTENT),
    "keytype.aes-with-sha256-rsa-pkcs": E(CKR.KEY_TYPE_INCONSISTENT),
    "keytype.rsa-with-aes-ecb": E(CKR.KEY_TYPE_INCONSISTENT),
    "function.sign-without-cka-sign": E(CKR.KEY_FUNCTION_NOT_PERMITTED),
    "function.encrypt-without-cka-encrypt": E(CKR.KEY_FUNCTION_NOT_PERMITTED),
    "param.cbc-iv-5": E(CKR.MECHANISM_PARAM_INVALID),
    "param.cbc-iv-null": E(CKR.MECHANISM_PARAM_INVALID),
    "param.cbc-iv-huge": E(CKR.MECHANISM_PARAM_INVALID, ARGS),
    "param.gcm-null": E(CKR.MECHANISM_PARAM_INVALID),
    "active.encrypt-init": E(OK),
    "active.encrypt-init-again": E(CKR.OPERATION_ACTIVE),
    "active.encrypt-finish": E(OK),
    "active.digest-init": E(OK),
    "active.digest-init-again": E(CKR.OPERATION_ACTIVE),
    "active.digest-finish": E(OK),
    "ecb.init-15": E(OK),
    "ecb.encrypt-15-bytes": E(CKR.DATA_LEN_RANGE),
    "ecb.after-error.reinit": E(OK),  # §5.8.2: the failed C_Encrypt ended the operation
    "ecb.decrypt-init-15": E(OK),
    "ecb.decrypt-15-bytes": E(CKR.ENCRYPTED_DATA_LEN_RANGE),
    # §5.2 two-call convention on C_Encrypt, and §5.8.2 termination.
    "twocall.init": E(OK),
    "twocall.length-query": E(OK, len=at_least(32)),
    "twocall.too-small": E(CKR.BUFFER_TOO_SMALL, len=at_least(32)),
    "twocall.encrypt": E(OK, len="32"),
    "twocall.after-success": E(CKR.OPERATION_NOT_INITIALIZED),
    "twocall.decrypt-init": E(OK),
    "twocall.decrypt": E(OK, len="32", match="1"),
    "kat.init": E(OK),
    "kat.aes128-ecb": E(OK, len="16", match="1"),  # FIPS-197 appendix C.1
    "multipart.init": E(OK),
    "multipart.encrypt": E(OK, len="32", match="1"),
    # Signatures.
    "sign.init": E(OK),
    "sign.init-again": E(CKR.OPERATION_ACTIVE),
    "sign.length-query": E(OK, len=at_least(256)),
    "sign.too-small": E(CKR.BUFFER_TOO_SMALL, len=at_least(256)),
    "sign.sign": E(OK, len="256"),
    "verify.init": E(OK),
    "verify.good": E(OK),
    "verify.after-success": E(CKR.OPERATION_NOT_INITIALIZED),
    "verify.bad.init": E(OK),
    "verify.bad-signature": E(CKR.SIGNATURE_INVALID),
    "verify.short.init": E(OK),
    "verify.short-signature": E(CKR.SIGNATURE_LEN_RANGE),
    "verify.multipart.init": E(OK),
    "verify.multipart": E(OK),
    "sign.multipart.init": E(OK),
    "sign.multipart": E(OK, len="256", same="1"),
    "sign.public-key.init": E(CKR.KEY_TYPE_INCONSISTENT, CKR.KEY_FUNCTION_NOT_PERMITTED),
    # §5.18.3-5.18.4, §6 AES key wrap (RFC 3394: input a multiple of 8 bytes, at least 16).
    "wrap.unextractable": E(CKR.KEY_UNEXTRACTABLE),
    "wrap.length-query": E(OK, len=at_least(24)),
    "wrap.too-small": E(CKR.BUFFER_TOO_SMALL, len=at_least(24)),
    "wrap.wrap": E(OK, len="24"),
    "unwrap.good": E(OK),
    "unwrap.value": E(OK, len="16", match="1"),
    "unwrap.garbage-24": E(CKR.WRAPPED_KEY_INVALID),
    "unwrap.garbage-13": E(CKR.WRAPPED_KEY_LEN_RANGE),
    "unwrap.garbage-8": E(CKR.WRAPPED_KEY_LEN_RANGE),
    "null.C_UnwrapKey.wrapped": E(ARGS),
    "null.C_WrapKey.length": E(ARGS),
    # Teardown.
    "logout": E(OK),
    "logout.twice": E(CKR.USER_NOT_LOGGED_IN),
    "close.ro": E(OK),
    "close.ro-twice": E(CKR.SESSION_HANDLE_INVALID),
    "login.user-again": E(OK),
    "login.so-while-user": E(CKR.USER_ANOTHER_ALREADY_LOGGED_IN),
    "closeall": E(OK),
    "closeall.then-session-info": E(CKR.SESSION_HANDLE_INVALID),
    "teardown.C_Finalize": E(OK),
    "done": E(OK),
}


# ---- running the host -----------------------------------------------------------------------
LINE = re.compile(r"^(?P<name>\S+) 0x(?P<rv>[0-9a-f]+)(?P<rest>.*)$")
EXTRA = re.compile(r'(?P<key>[A-Za-z_][\w.-]*)=(?:"(?P<quoted>[^"]*)"|(?P<bare>\S*))')


@dataclass
class Run:
    scenario: str
    returncode: int
    stdout: str
    stderr: str
    checks: dict[str, tuple[int, dict[str, str]]]
    duplicates: list[str]

    def tail(self) -> str:
        return f"--- stdout (last lines) ---\n{_tail(self.stdout)}\n--- stderr (last lines) ---\n{_tail(self.stderr)}"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def parse(scenario: str, proc: subprocess.CompletedProcess) -> Run:
    checks: dict[str, tuple[int, dict[str, str]]] = {}
    duplicates = []
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        extras = {e["key"]: e["quoted"] if e["quoted"] is not None else e["bare"]
                  for e in EXTRA.finditer(m["rest"])}
        if m["name"] in checks:
            duplicates.append(m["name"])
        checks[m["name"]] = (int(m["rv"], 16), extras)
    return Run(scenario, proc.returncode, proc.stdout, proc.stderr, checks, duplicates)


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory, so_path: str) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("no C compiler (gcc) to build tests/pkcs11/c/host.c")
    out = tmp_path_factory.mktemp("c-host") / "host"
    # Deliberately no libpython and no -rdynamic: the host is a plain C program.
    c_header(HOST_SOURCE, out.parent)
    cmd = [gcc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", str(NATIVE), "-I", str(out.parent),
           "-o", str(out), str(HOST_SOURCE), "-ldl", "-lpthread"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"compiling the C host failed:\n{' '.join(cmd)}\n{result.stderr}"
    return out


def run_host(host: Path, so_path: str, scenario: str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> Run:
    environment = {**os.environ, **(env or {})}
    environment.pop("HOST_SKIP_HUGE", None)
    command = [str(host), so_path, scenario, *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=environment,
                              cwd=str(host.parent), timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # a hang (deadlock) still reports what ran before it
        def text(value: bytes | str | None) -> str:
            return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")

        proc = subprocess.CompletedProcess(command, -9, text(exc.stdout),
                                           text(exc.stderr) + f"\nTIMEOUT after {timeout}s")
    return parse(scenario, proc)


_RUNS: dict[str, Run] = {}


@pytest.fixture
def scenario_run(request: pytest.FixtureRequest, host: Path, so_path: str) -> Callable[[str], Run]:
    """Runs each scenario once per session (a fresh token for bad-input), on demand."""

    def get(scenario: str) -> Run:
        if scenario not in _RUNS:
            if scenario == "bad-input":
                try:
                    label = init_token()
                except AssertionError as exc:  # remembered: one attempt per session
                    _RUNS[scenario] = exc  # type: ignore[assignment]
                    raise
                _RUNS[scenario] = run_host(host, so_path, scenario, label, SO_PIN, USER_PIN)
            elif scenario == "python-failed":
                # The embedded init code then cannot import the project (or anything else of ours).
                _RUNS[scenario] = run_host(host, so_path, scenario,
                                           env={"SOFTSHIELD_PYTHONPATH": "/nonexistent"})
            else:
                _RUNS[scenario] = run_host(host, so_path, scenario)
        run = _RUNS[scenario]
        if isinstance(run, BaseException):
            pytest.fail(f"setting up {scenario} failed earlier: {run}")
        return run

    return get


def section_of(check: str) -> str:
    return check.split(".", 1)[0]


def _sections() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for scenario, checks in EXPECTED.items():
        for check in checks:
            key = (scenario, section_of(check))
            if key not in seen:
                seen.append(key)
    return seen


def describe(value: int) -> str:
    try:
        return f"{CKR(value).name} (0x{value:x})"
    except ValueError:
        return f"0x{value:x}"


def _extra_ok(expected: Any, actual: str | None) -> bool:
    if actual is None:
        return False
    if callable(expected):
        try:
            return bool(expected(actual))
        except ValueError:
            return False
    return actual == expected


# ---- the tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_scenario_runs_to_completion(scenario_run, scenario: str) -> None:
    run = scenario_run(scenario)
    assert "done" in run.checks and run.returncode == 0, (
        f"host {scenario} did not finish (exit {run.returncode}); a crash or a fatal setup step\n{run.tail()}"
    )
    assert not run.duplicates, f"checks printed twice: {run.duplicates}"


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_every_check_has_an_expectation(scenario_run, scenario: str) -> None:
    run = scenario_run(scenario)
    unexpected = sorted(set(run.checks) - set(EXPECTED[scenario]))
    assert not unexpected, f"the host printed checks this table does not know: {unexpected}\n{run.tail()}"


@pytest.mark.parametrize(("scenario", "section"), _sections(),
                         ids=[f"{s}:{sec}" for s, sec in _sections()])
def test_return_codes(scenario_run, scenario: str, section: str) -> None:
    run = scenario_run(scenario)
    problems = []
    for check, expect in EXPECTED[scenario].items():
        if section_of(check) != section:
            continue
        if check not in run.checks:
            problems.append(f"{check}: not reported (host stopped early?)")
            continue
        rv, extras = run.checks[check]
        if rv not in expect.codes:
            wanted = " or ".join(describe(c) for c in sorted(expect.codes))
            problems.append(f"{check}: expected {wanted}, got {describe(rv)}")
        for key, wanted_value in expect.extras.items():
            if not _extra_ok(wanted_value, extras.get(key)):
                shown = getattr(wanted_value, "__doc__", None) if callable(wanted_value) else wanted_value
                problems.append(f"{check}: {key} expected {shown}, got {extras.get(key)}")
    assert not problems, f"{scenario} / {section}:\n  " + "\n  ".join(problems) + f"\n{run.tail()}"


def test_python_failed_never_returns_ok(scenario_run) -> None:
    """Whatever else happens, no Python-backed entry point may answer CKR_OK without Python."""
    run = scenario_run("python-failed")
    ok = [name for name, (rv, _) in run.checks.items()
          if rv == CKR.OK and name.startswith("pyfail.C_")]
    assert not ok, f"answered CKR_OK although Python could not start: {ok}"


def test_host_is_a_plain_c_program(host: Path) -> None:
    """The RTLD_LOCAL case only means something if the host itself does not bring libpython."""
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("ldd not available")
    out = subprocess.run([ldd, str(host)], capture_output=True, text=True).stdout
    assert "libpython" not in out, out
