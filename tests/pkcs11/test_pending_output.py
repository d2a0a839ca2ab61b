"""A length query (or a too-small buffer) computes the output and keeps the operation active (PKCS#11
§5.8 C_Encrypt); only the same call again may collect it. Any other call on that operation is refused
with CKR_OPERATION_ACTIVE, which (like every error but CKR_BUFFER_TOO_SMALL) ends the operation; never
CKR_GENERAL_ERROR from a consumed cipher context (what the C-ABI fuzzer found: a C_Encrypt length
query, then C_EncryptFinal)."""

from __future__ import annotations

import ctypes

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, ObjectClass
from p11ctypes import CK_MECHANISM
from pkcs11_shim.constants import CKR, Mechanism, SessionFlag

KEY = bytes(range(16))


def _ecb(data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(KEY), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


@pytest.fixture
def encrypting(raw, token):
    """(raw session handle, AES key handle) with C_EncryptInit(CKM_AES_ECB) done."""
    with token.open(user_pin=USER_PIN, rw=True) as session:
        key = session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: False,
            Attribute.VALUE: KEY, Attribute.ENCRYPT: True})
        handle = ctypes.c_ulong()
        assert raw.C_OpenSession(ctypes.c_ulong(token.slot.slot_id), SessionFlag.SERIAL_SESSION | SessionFlag.RW_SESSION, None,
                                 None, ctypes.byref(handle)) == CKR.OK
        assert _init(raw, handle, key.handle) == CKR.OK
        yield handle, key.handle
        raw.C_CloseSession(handle)


def _init(raw, session, key: int) -> int:
    mech = CK_MECHANISM(Mechanism.AES_ECB, None, 0)
    return raw.C_EncryptInit(session, ctypes.byref(mech), ctypes.c_ulong(key))


def _encrypt(raw, session, data: bytes, *, query: bool = False) -> tuple[int, bytes]:
    size = ctypes.c_ulong(0 if query else 64)
    out = None if query else ctypes.create_string_buffer(64)
    rv = raw.C_Encrypt(session, data, ctypes.c_ulong(len(data)), out, ctypes.byref(size))
    return rv, b"" if out is None else out.raw[:size.value]


def test_final_after_a_single_part_length_query_is_refused_and_ends_the_operation(raw, encrypting):
    session, key = encrypting
    data = b"sixteen byte msg"
    assert _encrypt(raw, session, data, query=True)[0] == CKR.OK
    size = ctypes.c_ulong(0)
    rv = raw.C_EncryptFinal(session, None, ctypes.byref(size))
    assert rv == CKR.OPERATION_ACTIVE, hex(rv)
    assert _encrypt(raw, session, data)[0] == CKR.OPERATION_NOT_INITIALIZED
    assert _init(raw, session, key) == CKR.OK
    assert _encrypt(raw, session, data) == (CKR.OK, _ecb(data))


def test_empty_input_length_query_then_final_is_not_a_general_error(raw, encrypting):
    # The fuzzer's program: C_Encrypt(pData="", pEncryptedData=NULL), then C_EncryptFinal.
    session, _key = encrypting
    assert _encrypt(raw, session, b"", query=True)[0] == CKR.OK
    size = ctypes.c_ulong(0)
    rv = raw.C_EncryptFinal(session, None, ctypes.byref(size))
    assert rv not in (CKR.OK, CKR.GENERAL_ERROR) and rv == CKR.OPERATION_ACTIVE, hex(rv)


def test_the_same_call_collects_the_output_other_data_is_refused(raw, encrypting):
    session, key = encrypting
    first, other = b"A" * 16, b"B" * 32
    assert _encrypt(raw, session, first, query=True) == (CKR.OK, b"")
    assert _encrypt(raw, session, first) == (CKR.OK, _ecb(first))
    assert _init(raw, session, key) == CKR.OK
    assert _encrypt(raw, session, first, query=True)[0] == CKR.OK
    assert _encrypt(raw, session, other)[0] == CKR.OPERATION_ACTIVE
