"""Session objects per application (PKCS#11 3.0 §4.4: "session objects are only visible to the
application which created them"): client B (tests/hardserver/session_objects_peer.py, its own
process) makes session objects; client A (the client library in this process) is told nothing of
them: C_FindObjects skips them, and every function that takes a handle answers the invalid-handle
code its text names (visibility.HANDLE_CODES). Token objects stay shared both ways. B's session
objects go with B."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from test_logins import CK_ATTRIBUTE, CK_MECHANISM, Client, ulong
from pkcs11_shim.constants import Attribute, CKR, KeyType, Mechanism, ObjectClass

PEER = Path(__file__).with_name("session_objects_peer.py")


def _ptr(value) -> ctypes.c_void_p:
    return ctypes.cast(ctypes.byref(value), ctypes.c_void_p)


class SessionClient(Client):
    """test_logins.Client plus the calls of this test (also used by the peer process)."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("C_SetAttributeValue", "C_GetObjectSize", "C_CopyObject", "C_DecryptInit", "C_WrapKey",
                     "C_UnwrapKey", "C_DeriveKey"):
            getattr(self.lib, name).restype = ulong
        self._keep: list = []

    def create_aes(self, session: int, token: bool) -> int:
        true, false, flag = ctypes.c_ubyte(1), ctypes.c_ubyte(0), ctypes.c_ubyte(token)
        cls, kt, value = ulong(ObjectClass.SECRET_KEY), ulong(KeyType.AES), ctypes.create_string_buffer(bytes(range(32)), 32)
        self._keep += [true, false, flag, cls, kt, value]
        attrs = [(Attribute.CLASS, _ptr(cls), 8), (Attribute.KEY_TYPE, _ptr(kt), 8), (Attribute.TOKEN, _ptr(flag), 1),
                 (Attribute.PRIVATE, _ptr(false), 1), (Attribute.SENSITIVE, _ptr(false), 1),
                 (Attribute.EXTRACTABLE, _ptr(true), 1), (Attribute.VALUE, ctypes.cast(value, ctypes.c_void_p), 32)]
        attrs += [(a, _ptr(true), 1)
                  for a in (Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.UNWRAP, Attribute.DERIVE)]
        template = (CK_ATTRIBUTE * len(attrs))(*(CK_ATTRIBUTE(*a) for a in attrs))
        handle = ulong(0)
        rv = self.lib.C_CreateObject(ulong(session), template, ulong(len(attrs)), ctypes.byref(handle))
        assert rv == CKR.OK, hex(rv)
        return handle.value

    def label_rv(self, session: int, handle: int) -> int:
        attr = CK_ATTRIBUTE(Attribute.LABEL, None, 0)
        return self.lib.C_GetAttributeValue(ulong(session), ulong(handle), ctypes.byref(attr), ulong(1))

    def find_all(self, session: int, batch: int = 64) -> list[int]:
        assert self.lib.C_FindObjectsInit(ulong(session), None, ulong(0)) == CKR.OK
        found, handles, count = [], (ulong * batch)(), ulong(0)
        while True:
            assert self.lib.C_FindObjects(ulong(session), handles, ulong(batch), ctypes.byref(count)) == CKR.OK
            found += handles[:count.value]
            if count.value < batch:  # fewer than asked: the search is over (§5.7.8)
                break
        assert self.lib.C_FindObjectsFinal(ulong(session)) == CKR.OK
        return found


def _mechanism(number: int, param: bytes = b"") -> CK_MECHANISM:
    buf = ctypes.create_string_buffer(param, len(param)) if param else None
    mech = CK_MECHANISM(number, ctypes.cast(buf, ctypes.c_void_p) if buf else None, len(param))
    mech._buf = buf  # alive with the mechanism
    return mech


_DERIVE_DATA = ctypes.create_string_buffer(16)


def _derive_param() -> bytes:
    """CK_KEY_DERIVATION_STRING_DATA {pData, ulLen} over a 16-byte block that lives with the module."""
    return ctypes.addressof(_DERIVE_DATA).to_bytes(8, "little") + (16).to_bytes(8, "little")


Call = Callable[[SessionClient, int, int, int], int]  # (client, session, object under test, own key)
#: (function, the call with the object under test in the argument that names it, the code a hidden
#: object there gets). Order matters only for the last: the control run destroys its own object.
CALLS: list[tuple[str, Call, int, str]] = [
    ("C_GetAttributeValue", lambda c, s, h, k: c.label_rv(s, h), CKR.OBJECT_HANDLE_INVALID, "data"),
    ("C_SetAttributeValue", lambda c, s, h, k: c.lib.C_SetAttributeValue(
        ulong(s), ulong(h), ctypes.byref(CK_ATTRIBUTE(Attribute.LABEL, ctypes.cast(ctypes.c_char_p(b"renamed"),
                                                                             ctypes.c_void_p), 7)), ulong(1)),
     CKR.OBJECT_HANDLE_INVALID, "data"),
    ("C_GetObjectSize", lambda c, s, h, k: c.lib.C_GetObjectSize(ulong(s), ulong(h), ctypes.byref(ulong())),
     CKR.OBJECT_HANDLE_INVALID, "key"),
    ("C_CopyObject", lambda c, s, h, k: c.lib.C_CopyObject(ulong(s), ulong(h), None, ulong(0), ctypes.byref(ulong())),
     CKR.OBJECT_HANDLE_INVALID, "key"),
    ("C_EncryptInit", lambda c, s, h, k: c.encrypt_init(s, h), CKR.KEY_HANDLE_INVALID, "key"),
    ("C_DecryptInit", lambda c, s, h, k: c.lib.C_DecryptInit(
        ulong(s), ctypes.byref(_mechanism(Mechanism.AES_CBC, bytes(16))), ulong(h)), CKR.KEY_HANDLE_INVALID, "key"),
    ("C_WrapKey (wrapping key)", lambda c, s, h, k: c.lib.C_WrapKey(
        ulong(s), ctypes.byref(_mechanism(Mechanism.AES_KEY_WRAP)), ulong(h), ulong(k), None, ctypes.byref(ulong())),
     CKR.WRAPPING_KEY_HANDLE_INVALID, "key"),
    ("C_WrapKey (key)", lambda c, s, h, k: c.lib.C_WrapKey(
        ulong(s), ctypes.byref(_mechanism(Mechanism.AES_KEY_WRAP)), ulong(k), ulong(h), None, ctypes.byref(ulong())),
     CKR.KEY_HANDLE_INVALID, "key"),
    ("C_UnwrapKey", lambda c, s, h, k: c.lib.C_UnwrapKey(
        ulong(s), ctypes.byref(_mechanism(Mechanism.AES_KEY_WRAP)), ulong(h), bytes(40), ulong(40), None, ulong(0),
        ctypes.byref(ulong())), CKR.UNWRAPPING_KEY_HANDLE_INVALID, "key"),
    ("C_DeriveKey", lambda c, s, h, k: c.lib.C_DeriveKey(
        ulong(s), ctypes.byref(_mechanism(Mechanism.AES_ECB_ENCRYPT_DATA, _derive_param())), ulong(h), None, ulong(0),
        ctypes.byref(ulong())), CKR.KEY_HANDLE_INVALID, "key"),
    # A second key named inside the mechanism parameter (visibility.PARAMETER_HANDLES).
    ("C_DeriveKey (CONCATENATE_BASE_AND_KEY parameter)", lambda c, s, h, k: c.lib.C_DeriveKey(
        ulong(s), ctypes.byref(_mechanism(Mechanism.CONCATENATE_BASE_AND_KEY, h.to_bytes(8, "little"))), ulong(k), None,
        ulong(0), ctypes.byref(ulong())), CKR.KEY_HANDLE_INVALID, "key"),
    ("C_DestroyObject", lambda c, s, h, k: c.lib.C_DestroyObject(ulong(s), ulong(h)), CKR.OBJECT_HANDLE_INVALID,
     "data"),
]


@pytest.fixture(scope="module")
def server(one_module_server):
    """These rules hold between clients of one module: one worker serves them all."""
    return one_module_server


@pytest.fixture
def two_clients(server, token):
    """(A, A's session, B's process, B's session key, B's session data object)."""
    a = SessionClient()
    assert a.initialize(server) == CKR.OK
    rv, session = a.open_session(a.slot_of(token))
    assert rv == CKR.OK
    peer = subprocess.Popen([sys.executable, str(PEER), token], env=server.env, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = peer.stdout.readline()
    assert line, peer.communicate(timeout=30)
    key, data = map(int, line.split())
    # A logs in, so that the control calls get past the module's login checks (B stays public).
    assert a.login(session) == CKR.OK
    yield a, session, peer, key, data
    if peer.poll() is None:
        peer.kill()
        peer.wait(timeout=30)
    a.finalize()


def _ask(peer: subprocess.Popen, command: str) -> str:
    peer.stdin.write(command + "\n")
    peer.stdin.flush()
    return peer.stdout.readline().strip()


def test_other_clients_session_objects_do_not_exist(two_clients) -> None:
    a, session, peer, b_key, b_data = two_clients
    own_key = a.create_aes(session, token=False)
    rv, own_data = a.create_data(session, private=False)
    assert rv == CKR.OK
    shared = a.create_aes(session, token=True)  # a token object: every application's
    try:
        # Found by nobody else, in batches of two (the server refills a page it filtered).
        seen_by_a = set(a.find_all(session, batch=2))
        assert {own_key, own_data, shared} <= seen_by_a and not {b_key, b_data} & seen_by_a
        seen_by_b = set(map(int, _ask(peer, "find").split()))
        assert {b_key, b_data, shared} <= seen_by_b and not {own_key, own_data} & seen_by_b
        assert seen_by_a - {own_key, own_data} == seen_by_b - {b_key, b_data}  # the same token objects

        for name, call, code, kind in CALLS:
            hidden, own = (b_key, own_key) if kind == "key" else (b_data, own_data)
            assert call(a, session, hidden, own_key) == code, name
            # The control: the same call with A's own object reaches the module and works (the
            # unwrap of 40 zero bytes with no template gets as far as the template check).
            control = CKR.TEMPLATE_INCOMPLETE if name == "C_UnwrapKey" else CKR.OK
            assert call(a, session, own, own_key) == control, f"{name}: the control call with A's own object"
        # B still has both of its objects (A's calls reached nothing), and cannot see A's.
        assert _ask(peer, f"see {b_key}") == _ask(peer, f"see {b_data}") == hex(CKR.OK)
        assert _ask(peer, f"see {own_key}") == hex(CKR.OBJECT_HANDLE_INVALID)
        assert _ask(peer, f"see {shared}") == hex(CKR.OK)
    finally:
        assert a.lib.C_DestroyObject(ulong(session), ulong(shared)) == CKR.OK

    # B goes away: its session objects with it; A's own stay.
    _ask(peer, "exit")
    peer.wait(timeout=30)
    assert a.label_rv(session, b_key) == a.label_rv(session, b_data) == CKR.OBJECT_HANDLE_INVALID
    assert not {b_key, b_data} & set(a.find_all(session))
    assert a.label_rv(session, own_key) == CKR.OK


def test_a_session_object_goes_with_the_session_that_made_it(server, token) -> None:
    """Within one application another session sees it, until its own session closes (§4.4)."""
    a = SessionClient()
    assert a.initialize(server) == CKR.OK
    try:
        slot = a.slot_of(token)
        (rv1, first), (rv2, second) = a.open_session(slot), a.open_session(slot)
        assert rv1 == rv2 == CKR.OK
        key = a.create_aes(first, token=False)
        assert a.label_rv(second, key) == CKR.OK and key in a.find_all(second)
        assert a.lib.C_CloseSession(ulong(first)) == CKR.OK
        assert a.label_rv(second, key) == CKR.OBJECT_HANDLE_INVALID
    finally:
        a.finalize()
