"""Argument checks come before the mechanism through the client library as in-process: C_GenerateKey
with a NULL template (count > 0) or a NULL key-handle pointer, and C_SetOperationState with no state,
are CKR_ARGUMENTS_BAD whatever the mechanism (an unknown one, one with a parameter)."""

from __future__ import annotations

import ctypes

import pytest

from hsenv import user_session
from p11ctypes import CK_ATTRIBUTE, CK_MECHANISM

from pkcs11_shim.constants import CKR, Attribute, Mechanism

UL = ctypes.c_ulong


@pytest.mark.parametrize("mechanism", [Mechanism.AES_KEY_GEN, 0x80001234, Mechanism.PKCS5_PBKD2],
                         ids=["AES_KEY_GEN", "unknown", "PKCS5_PBKD2"])
def test_generate_key_and_set_operation_state_arguments(server, token, mechanism: int) -> None:
    with user_session(server, token, "C_GenerateKey", "C_SetOperationState") as (so, session):
        mech, handle = CK_MECHANISM(mechanism, None, 0), UL(0)
        value_len = ctypes.c_ulong(16)
        template = CK_ATTRIBUTE(Attribute.VALUE_LEN, ctypes.cast(ctypes.pointer(value_len), ctypes.c_void_p),
                                ctypes.sizeof(value_len))
        assert so.C_GenerateKey(UL(session), ctypes.byref(mech), None, UL(2), ctypes.byref(handle)) == CKR.ARGUMENTS_BAD
        assert so.C_GenerateKey(UL(session), ctypes.byref(mech), ctypes.byref(template), UL(1), None) == CKR.ARGUMENTS_BAD
        assert so.C_SetOperationState(UL(session), None, UL(0), UL(0), UL(0)) == CKR.ARGUMENTS_BAD
