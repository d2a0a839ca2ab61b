"""The two-call convention of C_WrapKey / C_WrapKeyAuthenticated through the client library: a length
query (NULL output buffer) with CKM_AES_GCM answers the wrapped length, as the in-process library
does (PKCS#11 3.0 §5.2), and the data call that follows delivers exactly that many bytes."""

from __future__ import annotations

import ctypes

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsenv import session_aes_key as _aes, user_session
from p11ctypes import CK_ATTRIBUTE as Attr, CK_GCM_PARAMS as Gcm, CK_MECHANISM as Mech

from pkcs11_shim.constants import CKR, Attribute, KeyType, Mechanism, ObjectClass

UL, VP = ctypes.c_ulong, ctypes.c_void_p
KEK, TARGET = bytes(range(32)), bytes(range(100, 116))


@pytest.mark.parametrize("authenticated", [False, True], ids=["C_WrapKey", "C_WrapKeyAuthenticated"])
@pytest.mark.parametrize("preset", [0, 0xFFFFFFFFFFFFFFFF], ids=["len=0", "len=garbage"])
def test_gcm_wrap_length_query(server, token, authenticated: bool, preset: int) -> None:
    with user_session(server, token, "C_CreateObject", "C_WrapKey", "C_WrapKeyAuthenticated") as (so, session):
        kek = _aes(so, session, KEK, ((Attribute.WRAP, b"\x01"),))
        target = _aes(so, session, TARGET, ((Attribute.EXTRACTABLE, b"\x01"),))
        iv = ctypes.create_string_buffer(bytes(range(12)), 12)
        param = Gcm(ctypes.cast(iv, VP), 12, 96, None, 0, 128)
        mech = Mech(Mechanism.AES_GCM, ctypes.cast(ctypes.pointer(param), VP), ctypes.sizeof(param))
        ad = b"associated"

        def wrap(out, length) -> int:
            if authenticated:
                return so.C_WrapKeyAuthenticated(UL(session), ctypes.byref(mech), UL(kek), UL(target), ad,
                                                 UL(len(ad)), out, ctypes.byref(length))
            return so.C_WrapKey(UL(session), ctypes.byref(mech), UL(kek), UL(target), out, ctypes.byref(length))

        length = UL(preset)
        assert wrap(None, length) == CKR.OK
        assert length.value == len(TARGET) + 16
        out = ctypes.create_string_buffer(length.value)
        assert wrap(out, length) == CKR.OK and length.value == len(TARGET) + 16
        expected = AESGCM(KEK).encrypt(iv.raw, TARGET, ad if authenticated else None)
        assert out.raw == expected
