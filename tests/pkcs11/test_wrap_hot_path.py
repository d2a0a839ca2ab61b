"""The caches of the key-wrap hot path (issue 6), through the real .so.

C_WrapKey is called here with ctypes, one call at a time, because python-pkcs11 always makes the
length query and the data call back to back: the tests need to change things between the two.
Token objects loaded at login decode their attributes lazily; the last test reads them back.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, ObjectClass

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors"))
import p11raw  # noqa: E402
from p11ctypes import CK_MECHANISM  # noqa: E402
from pkcs11_shim.constants import CKM_RSA_AES_KEY_WRAP, CKR, MGF, Mechanism, SessionFlag  # noqa: E402


def _be(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture
def keys(token, rsa_key):
    """(python-pkcs11 session, RSA public wrapping key, extractable AES-256 target, its value)."""
    value = bytes(range(32))
    with token.open(user_pin=USER_PIN, rw=True) as session:
        numbers = rsa_key.public_key().public_numbers()
        public = session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
            Attribute.MODULUS: _be(numbers.n), Attribute.PUBLIC_EXPONENT: _be(numbers.e), Attribute.WRAP: True})
        target = session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: False,
            Attribute.VALUE: value, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
        yield session, public, target, value


@pytest.fixture
def raw_session(raw, token):
    handle = ctypes.c_ulong()
    assert raw.C_OpenSession(ctypes.c_ulong(token.slot.slot_id), SessionFlag.SERIAL_SESSION | SessionFlag.RW_SESSION, None, None,
                             ctypes.byref(handle)) == CKR.OK
    yield handle.value
    raw.C_CloseSession(handle)


def _wrap_call(raw, session: int, wrapping: int, target: int, out: ctypes.Array | None,
               length: int = 0) -> tuple[int, int]:
    param = p11raw.rsa_aes_key_wrap(256, Mechanism.SHA256, MGF.SHA256)
    keep = ctypes.create_string_buffer(param, len(param))
    mech = CK_MECHANISM(CKM_RSA_AES_KEY_WRAP, ctypes.cast(keep, ctypes.c_void_p), len(param))
    size = ctypes.c_ulong(length)
    rv = raw.C_WrapKey(ctypes.c_ulong(session), ctypes.byref(mech), ctypes.c_ulong(wrapping), ctypes.c_ulong(target),
                       out, ctypes.byref(size))
    return rv, size.value


def _open(rsa_key: rsa.RSAPrivateKey, wrapped: bytes) -> bytes:
    """PKCS#11 3.0 §2.1.21 by hand: OAEP-SHA256 part (k bytes), then KWP of the target."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    temporary = rsa_key.decrypt(wrapped[:256], oaep)
    return keywrap.aes_key_unwrap_with_padding(temporary, wrapped[256:])


def test_length_query_is_the_exact_length(raw, raw_session, keys, rsa_key) -> None:
    _session, public, target, value = keys
    rv, length = _wrap_call(raw, raw_session, public.handle, target.handle, None)
    assert (rv, length) == (CKR.OK, 256 + 40)  # k + KWP(32 bytes) = k + 32 + 8
    out = ctypes.create_string_buffer(length)
    rv, written = _wrap_call(raw, raw_session, public.handle, target.handle, out, length)
    assert (rv, written) == (CKR.OK, length)
    assert _open(rsa_key, out.raw[:written]) == value


def test_every_data_call_wraps_afresh(raw, raw_session, keys, rsa_key) -> None:
    """The length query keeps no wrapped result: two data calls give two different (randomised)
    blobs of the same key."""
    _session, public, target, value = keys
    outs = []
    for _ in range(2):
        out = ctypes.create_string_buffer(296)
        assert _wrap_call(raw, raw_session, public.handle, target.handle, out, 296) == (CKR.OK, 296)
        outs.append(out.raw)
    assert outs[0] != outs[1]
    assert [_open(rsa_key, o) for o in outs] == [value, value]


def test_attribute_change_between_the_calls_is_seen(raw, raw_session, keys) -> None:
    """The checks the length query passed are cached, but only while the key is unchanged."""
    _session, public, target, _value = keys
    assert _wrap_call(raw, raw_session, public.handle, target.handle, None) == (CKR.OK, 296)
    target[Attribute.EXTRACTABLE] = False  # PKCS#11 allows TRUE -> FALSE
    out = ctypes.create_string_buffer(296)
    assert _wrap_call(raw, raw_session, public.handle, target.handle, out, 296)[0] == CKR.KEY_UNEXTRACTABLE
    assert _wrap_call(raw, raw_session, public.handle, target.handle, None)[0] == CKR.KEY_UNEXTRACTABLE


def test_short_buffer_then_the_right_one(raw, raw_session, keys, rsa_key) -> None:
    _session, public, target, value = keys
    small = ctypes.create_string_buffer(10)
    assert _wrap_call(raw, raw_session, public.handle, target.handle, small, 10) == (CKR.BUFFER_TOO_SMALL, 296)
    out = ctypes.create_string_buffer(296)
    rv, written = _wrap_call(raw, raw_session, public.handle, target.handle, out, 296)
    assert (rv, written) == (CKR.OK, 296)
    assert _open(rsa_key, out.raw) == value


def test_token_objects_read_back_after_lazy_load(token) -> None:
    """Private token objects are dropped at logout and re-loaded at login with only their index
    attributes decoded; every attribute must still read back as stored."""
    label = "lazy-" + bytes(range(4)).hex()
    with token.open(user_pin=USER_PIN, rw=True) as session:
        made = session.generate_key(KeyType.AES, 256, label=label, id=b"\x01\x02", store=True,
                                    template={Attribute.PRIVATE: True, Attribute.SENSITIVE: False,
                                              Attribute.EXTRACTABLE: True})
        value = made[Attribute.VALUE]
        check = made[Attribute.CHECK_VALUE]
    with token.open(user_pin=USER_PIN) as session:  # a new login: the token's keys load again
        found = list(session.get_objects({Attribute.LABEL: label}))
        assert len(found) == 1
        key = found[0]
        assert key[Attribute.ID] == b"\x01\x02"
        assert key[Attribute.VALUE] == value
        assert key[Attribute.CHECK_VALUE] == check
        assert key[Attribute.VALUE_LEN] == 32
        assert key[Attribute.PRIVATE] is True
        assert list(session.get_objects({Attribute.ID: b"\x01\x02", Attribute.CLASS: ObjectClass.SECRET_KEY}))
