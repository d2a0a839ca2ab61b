"""A wrap length query through the client library is answered with the module's wrap, held for the
host's next call (native/client/held.c): one round trip per wrap instead of two. The held bytes are
the ones the data call would get, and they are handed out only while nothing they depend on can
have changed in this process; otherwise the data call is the module's to answer."""

from __future__ import annotations

import ctypes

from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from hsenv import session_aes_key as _aes, user_session
from p11ctypes import CK_ATTRIBUTE as Attr, CK_MECHANISM as Mech

from pkcs11_shim.constants import CKR, Attribute, KeyType, Mechanism, ObjectClass

UL, VP = ctypes.c_ulong, ctypes.c_void_p
KEK, TARGET, OTHER = bytes(range(32)), bytes(range(100, 132)), bytes(range(50, 74))
FUNCTIONS = ("C_CreateObject", "C_WrapKey", "C_DestroyObject", "C_SetAttributeValue")


def _keys(so, session: int) -> tuple[int, int, int]:
    kek = _aes(so, session, KEK, ((Attribute.WRAP, b"\x01"),))
    target = _aes(so, session, TARGET, ((Attribute.EXTRACTABLE, b"\x01"),))
    other = _aes(so, session, OTHER, ((Attribute.EXTRACTABLE, b"\x01"),))
    return kek, target, other


KWP = Mech(Mechanism.AES_KEY_WRAP_KWP, None, 0)


def _wrap(so, session: int, kek: int, key: int, out, length: UL) -> int:
    return so.C_WrapKey(UL(session), ctypes.byref(KWP), UL(kek), UL(key), out, ctypes.byref(length))


def test_query_then_data_call(server, token) -> None:
    with user_session(server, token, *FUNCTIONS) as (so, session):
        kek, target, _other = _keys(so, session)
        length = UL(0)
        assert _wrap(so, session, kek, target, None, length) == CKR.OK and length.value == 40
        short = ctypes.create_string_buffer(8)
        small = UL(8)
        # A short buffer: CKR_BUFFER_TOO_SMALL and the length, the result kept (§5.2).
        assert _wrap(so, session, kek, target, short, small) == CKR.BUFFER_TOO_SMALL and small.value == 40
        out = ctypes.create_string_buffer(40)
        assert _wrap(so, session, kek, target, out, length) == CKR.OK and length.value == 40
        assert aes_key_unwrap_with_padding(KEK, out.raw) == TARGET


def test_other_arguments_are_not_answered_from_the_held_result(server, token) -> None:
    with user_session(server, token, *FUNCTIONS) as (so, session):
        kek, target, other = _keys(so, session)
        length = UL(0)
        assert _wrap(so, session, kek, target, None, length) == CKR.OK and length.value == 40
        out, size = ctypes.create_string_buffer(64), UL(64)
        assert _wrap(so, session, kek, other, out, size) == CKR.OK and size.value == 32
        assert aes_key_unwrap_with_padding(KEK, out.raw[:32]) == OTHER


def test_a_change_in_between_reaches_the_module(server, token) -> None:
    """The target destroyed, or made unextractable, between the query and the data call: the module
    answers the data call, as in-process (the held result is stale)."""
    with user_session(server, token, *FUNCTIONS) as (so, session):
        kek, target, other = _keys(so, session)
        length = UL(0)
        assert _wrap(so, session, kek, target, None, length) == CKR.OK
        assert so.C_DestroyObject(UL(session), UL(target)) == CKR.OK
        out = ctypes.create_string_buffer(40)
        assert _wrap(so, session, kek, target, out, length) == CKR.KEY_HANDLE_INVALID
        assert _wrap(so, session, kek, other, None, length) == CKR.OK
        # CKA_WRAP of the wrapping key taken away (a reducible attribute): the module refuses.
        false = ctypes.create_string_buffer(b"\x00", 1)
        attr = Attr(Attribute.WRAP, ctypes.cast(false, VP), 1)
        assert so.C_SetAttributeValue(UL(session), UL(kek), ctypes.byref(attr), UL(1)) == CKR.OK
        assert _wrap(so, session, kek, other, out, length) == CKR.KEY_FUNCTION_NOT_PERMITTED
