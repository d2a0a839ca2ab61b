"""Argument checks come before the mechanism through the client library as in-process: C_GenerateKey
with a NULL template (count > 0) or a NULL key-handle pointer, and C_SetOperationState with no state,
are CKR_ARGUMENTS_BAD whatever the mechanism (an unknown one, one with a parameter)."""

from __future__ import annotations

import ctypes

import pytest

from hsenv import CKR_OK, USER_PIN, RawClient
from pkcs11_shim.constants import CKR
from test_client_wrap_length import Attr, Mech

UL = ctypes.c_ulong


@pytest.mark.parametrize("mechanism", [0x1080, 0x80001234, 0x3B0], ids=["AES_KEY_GEN", "unknown", "PKCS5_PBKD2"])
def test_generate_key_and_set_operation_state_arguments(server, token, mechanism: int) -> None:
    raw = RawClient()
    assert raw.initialize(server) == CKR_OK
    so = raw.lib
    for name in ("C_GenerateKey", "C_SetOperationState", "C_Login"):
        getattr(so, name).restype = UL
    try:
        rv, session = raw.open_session(raw.slot_of(token))
        assert rv == CKR_OK
        assert so.C_Login(UL(session), UL(1), USER_PIN.encode(), UL(len(USER_PIN))) in (CKR_OK, CKR.USER_ALREADY_LOGGED_IN)
        mech, handle = Mech(mechanism, None, 0), UL(0)
        value_len = ctypes.c_ulong(16)
        template = Attr(0x161, ctypes.cast(ctypes.pointer(value_len), ctypes.c_void_p), ctypes.sizeof(value_len))
        assert so.C_GenerateKey(UL(session), ctypes.byref(mech), None, UL(2), ctypes.byref(handle)) == CKR.ARGUMENTS_BAD
        assert so.C_GenerateKey(UL(session), ctypes.byref(mech), ctypes.byref(template), UL(1), None) == CKR.ARGUMENTS_BAD
        assert so.C_SetOperationState(UL(session), None, UL(0), UL(0), UL(0)) == CKR.ARGUMENTS_BAD
    finally:
        raw.finalize()
