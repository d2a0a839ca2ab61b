"""An in-process C_WrapKey length query is answered with the module's wrap, held in C for the host's
next call (native/front/held_wrap.c with native/client/held.c's slots): python-pkcs11's two calls
per wrap enter Python once. The held bytes are the ones the data call would get, handed out only to
the same session with the same mechanism, parameter and keys, and only while no other entry point
ran; otherwise the data call is Python's to answer.

Python's C_WrapKey handler is wrapped with a counter (the library runs in this process), so each
test shows which side answered. C_WrapKey is called with ctypes, one call at a time."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from p11env import USER_PIN, in_forked_child
from pkcs11 import Attribute, KeyType, ObjectClass

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from p11ctypes import CK_MECHANISM, CK_RSA_AES_KEY_WRAP_PARAMS, CK_RSA_PKCS_OAEP_PARAMS  # noqa: E402
from pkcs11_shim.constants import CKM_RSA_AES_KEY_WRAP, CKR, CKZ_DATA_SPECIFIED, MGF, Mechanism  # noqa: E402

UL = ctypes.c_ulong
KEK, TARGET, OTHER = bytes(range(32)), bytes(range(100, 132)), bytes(range(50, 74))
KWP = CK_MECHANISM(Mechanism.AES_KEY_WRAP_KWP, None, 0)
KW = CK_MECHANISM(Mechanism.AES_KEY_WRAP, None, 0)


@pytest.fixture
def python_calls(count_python_calls):
    """How many C_WrapKey calls reached Python while the test ran."""
    return count_python_calls("C_WrapKey")


def _aes(session, value: bytes, *usage: Attribute):
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: False,
        Attribute.VALUE: value, Attribute.SENSITIVE: False, **dict.fromkeys(usage, True)})


@pytest.fixture
def keys(token):
    """(python-pkcs11 session, wrapping key, extractable target, another key: extractable and wrapping)."""
    with token.open(user_pin=USER_PIN, rw=True) as session:
        kek = _aes(session, KEK, Attribute.WRAP)
        target = _aes(session, TARGET, Attribute.EXTRACTABLE)
        other = _aes(session, OTHER, Attribute.EXTRACTABLE, Attribute.WRAP)
        yield session, kek, target, other


def _handles(keys) -> tuple:
    session, kek, target, other = keys
    return session, kek.handle, target.handle, other.handle


def _wrap(raw, session: int, mech, kek: int, key: int, size: int | None) -> tuple[int, int, bytes | None]:
    """(rv, *pulWrappedKeyLen, the buffer's first bytes): size None is a length query."""
    out = ctypes.create_string_buffer(size) if size is not None else None
    length = UL(size or 0)
    rv = raw.C_WrapKey(UL(session), ctypes.byref(mech), UL(kek), UL(key), out, ctypes.byref(length))
    return rv, length.value, out.raw[:length.value] if out is not None and rv == CKR.OK else None


def test_query_wraps_once_and_the_data_call_stays_in_c(raw, keys, python_calls) -> None:
    session, kek, target, _other = _handles(keys)
    assert _wrap(raw, session.handle, KWP, kek, target, None) == (CKR.OK, 40, None)
    assert python_calls[0] == 1
    # A short buffer: CKR_BUFFER_TOO_SMALL and the length, the result kept (PKCS#11 3.0 §5.2).
    assert _wrap(raw, session.handle, KWP, kek, target, 8) == (CKR.BUFFER_TOO_SMALL, 40, None)
    rv, length, out = _wrap(raw, session.handle, KWP, kek, target, 40)
    assert (rv, length, keywrap.aes_key_unwrap_with_padding(KEK, out)) == (CKR.OK, 40, TARGET)
    assert python_calls[0] == 1
    # Delivered: the next data call is the module's again.
    rv, length, out = _wrap(raw, session.handle, KWP, kek, target, 64)
    assert (rv, length, keywrap.aes_key_unwrap_with_padding(KEK, out)) == (CKR.OK, 40, TARGET)
    assert python_calls[0] == 2


def test_python_pkcs11_enters_python_once_per_wrap(keys, python_calls) -> None:
    _session, kek, target, other = keys
    blobs = [kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_KWP) for key in (target, target, other)]
    assert python_calls[0] == 3
    assert [keywrap.aes_key_unwrap_with_padding(KEK, b) for b in blobs] == [TARGET, TARGET, OTHER]


@pytest.mark.parametrize("change", ["key", "mechanism", "wrapping key", "session"])
def test_other_arguments_are_not_answered_from_the_held_result(raw, keys, token, python_calls, change) -> None:
    session, kek, target, other = _handles(keys)
    assert _wrap(raw, session.handle, KWP, kek, target, None) == (CKR.OK, 40, None)
    if change == "key":
        rv, length, out = _wrap(raw, session.handle, KWP, kek, other, 64)
        assert (rv, length, keywrap.aes_key_unwrap_with_padding(KEK, out)) == (CKR.OK, 32, OTHER)
    elif change == "mechanism":
        rv, length, out = _wrap(raw, session.handle, KW, kek, target, 64)
        assert (rv, length, keywrap.aes_key_unwrap(KEK, out)) == (CKR.OK, 40, TARGET)
        assert out != keywrap.aes_key_wrap_with_padding(KEK, TARGET)
    elif change == "wrapping key":
        rv, length, out = _wrap(raw, session.handle, KWP, other, target, 64)
        assert (rv, length, keywrap.aes_key_unwrap_with_padding(OTHER, out)) == (CKR.OK, 40, TARGET)
    else:
        with token.open(rw=True) as second:  # the login is the application's
            rv, length, out = _wrap(raw, second.handle, KWP, kek, target, 64)
            assert (rv, length, keywrap.aes_key_unwrap_with_padding(KEK, out)) == (CKR.OK, 40, TARGET)
    assert python_calls[0] == 2


def test_any_other_call_drops_the_held_result(raw, keys, python_calls) -> None:
    session, kek, target, _other = _handles(keys)
    assert _wrap(raw, session.handle, KWP, kek, target, None) == (CKR.OK, 40, None)
    info = (UL * 4)()
    assert raw.C_GetSessionInfo(UL(session.handle), info) == CKR.OK
    rv, length, out = _wrap(raw, session.handle, KWP, kek, target, 40)
    assert (rv, length, keywrap.aes_key_unwrap_with_padding(KEK, out)) == (CKR.OK, 40, TARGET)
    assert python_calls[0] == 2
    # The target destroyed between the query and the data call: the module answers, as without a
    # held result.
    assert _wrap(raw, session.handle, KWP, kek, target, None) == (CKR.OK, 40, None)
    assert raw.C_DestroyObject(UL(session.handle), UL(target)) == CKR.OK
    assert _wrap(raw, session.handle, KWP, kek, target, 40)[0] == CKR.KEY_HANDLE_INVALID
    assert python_calls[0] == 4


def test_a_refused_query_leaves_the_length_and_holds_nothing(raw, keys, python_calls) -> None:
    session, kek, target, _other = _handles(keys)
    length = UL(1234)
    rv = raw.C_WrapKey(UL(session.handle), ctypes.byref(KWP), UL(kek), UL(kek), None, ctypes.byref(length))
    assert (rv, length.value) == (CKR.KEY_UNEXTRACTABLE, 1234)
    assert _wrap(raw, session.handle, KWP, kek, kek, 64)[0] == CKR.KEY_UNEXTRACTABLE
    assert python_calls[0] == 2


def _be(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def test_a_parameter_changed_behind_its_pointer_is_another_call(raw, token, python_calls) -> None:
    """RSA_AES_KEY_WRAP: the OAEP parameters the outer struct points to change between the calls;
    the outer struct's bytes do not. The data call is Python's, with the new hash."""
    rsa_key = rsa.generate_private_key(65537, 2048)
    numbers = rsa_key.public_key().public_numbers()
    with token.open(user_pin=USER_PIN, rw=True) as session:
        public = session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
            Attribute.MODULUS: _be(numbers.n), Attribute.PUBLIC_EXPONENT: _be(numbers.e), Attribute.WRAP: True})
        target = _aes(session, TARGET, Attribute.EXTRACTABLE)
        oaep = CK_RSA_PKCS_OAEP_PARAMS(Mechanism.SHA256, MGF.SHA256, CKZ_DATA_SPECIFIED, None, 0)
        param = CK_RSA_AES_KEY_WRAP_PARAMS(256, ctypes.pointer(oaep))
        mech = CK_MECHANISM(CKM_RSA_AES_KEY_WRAP, ctypes.cast(ctypes.pointer(param), ctypes.c_void_p),
                            ctypes.sizeof(param))
        assert _wrap(raw, session.handle, mech, public.handle, target.handle, None) == (CKR.OK, 296, None)
        oaep.hashAlg, oaep.mgf = Mechanism.SHA_1, MGF.SHA1
        rv, length, out = _wrap(raw, session.handle, mech, public.handle, target.handle, 296)
        assert (rv, length, python_calls[0]) == (CKR.OK, 296, 2)
        sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        temporary = rsa_key.decrypt(out[:256], sha1)
        assert keywrap.aes_key_unwrap_with_padding(temporary, out[256:]) == TARGET


def test_a_forked_child_is_not_answered_from_the_parents_held_result(raw, keys) -> None:
    """PKCS#11 3.0 §5.1.2: the child is a new application; its data call reaches the module, which
    refuses it until the child calls C_Initialize."""
    session, kek, target, _other = _handles(keys)
    assert _wrap(raw, session.handle, KWP, kek, target, None) == (CKR.OK, 40, None)
    assert in_forked_child("os.fork", lambda: [_wrap(raw, session.handle, KWP, kek, target, 40)[0]]) == \
        [CKR.CRYPTOKI_NOT_INITIALIZED]
    # The parent's held result is its own still.
    rv, length, out = _wrap(raw, session.handle, KWP, kek, target, 40)
    assert (rv, length, keywrap.aes_key_unwrap_with_padding(KEK, out)) == (CKR.OK, 40, TARGET)
