"""Login state per application: each client process has its own login state (PKCS#11 3.0 §5.6), even
though the module behind the hardserver has one login per token. Client A (a python-pkcs11 worker)
holds the token's login and keeps using a private key; client B (the client library in this process,
through ctypes) sees public sessions and no private objects until it logs in itself, and again after
its own C_Logout, which leaves A logged in."""

from __future__ import annotations

import ctypes
import subprocess
import time

import pytest

from hsenv import USER_PIN, run_worker, worker
from p11ctypes import CK_ATTRIBUTE, CK_MECHANISM, CK_SESSION_INFO, RawClient
from pkcs11_shim.constants import Attribute, CKR, Mechanism, ObjectClass, SessionState, UserType

ulong = ctypes.c_ulong


class Client(RawClient):
    """RawClient plus the calls this test needs, each returning its CK_RV."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("C_Login", "C_Logout", "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
                     "C_GetAttributeValue", "C_CreateObject", "C_EncryptInit", "C_InitPIN", "C_DestroyObject"):
            getattr(self.lib, name).restype = ulong

    def login(self, session: int, pin: bytes = USER_PIN.encode(), user: int = UserType.USER) -> int:
        return self.lib.C_Login(ulong(session), ulong(user), pin, ulong(len(pin)))

    def logout(self, session: int) -> int:
        return self.lib.C_Logout(ulong(session))

    def state(self, session: int) -> int:
        info = CK_SESSION_INFO()
        assert self.lib.C_GetSessionInfo(ulong(session), ctypes.byref(info)) == CKR.OK
        return info.state

    def find_all(self, session: int) -> list[int]:
        assert self.lib.C_FindObjectsInit(ulong(session), None, ulong(0)) == CKR.OK
        found, handles, count = [], (ulong * 64)(), ulong(0)
        while True:
            assert self.lib.C_FindObjects(ulong(session), handles, ulong(64), ctypes.byref(count)) == CKR.OK
            if count.value == 0:
                break
            found += handles[:count.value]
        assert self.lib.C_FindObjectsFinal(ulong(session)) == CKR.OK
        return found

    def private(self, session: int, handle: int) -> tuple[int, bool]:
        value = ctypes.c_ubyte(0)
        attr = CK_ATTRIBUTE(Attribute.PRIVATE, ctypes.cast(ctypes.byref(value), ctypes.c_void_p), 1)
        rv = self.lib.C_GetAttributeValue(ulong(session), ulong(handle), ctypes.byref(attr), ulong(1))
        return rv, bool(value.value)

    def create_data(self, session: int, private: bool) -> tuple[int, int]:
        cls, false, flag, label = ulong(ObjectClass.DATA), ctypes.c_ubyte(0), ctypes.c_ubyte(private), b"per-app"
        ptr = lambda v: ctypes.cast(ctypes.byref(v), ctypes.c_void_p)  # noqa: E731
        template = (CK_ATTRIBUTE * 4)(CK_ATTRIBUTE(Attribute.CLASS, ptr(cls), 8), CK_ATTRIBUTE(Attribute.TOKEN, ptr(false), 1),
                                      CK_ATTRIBUTE(Attribute.PRIVATE, ptr(flag), 1),
                                      CK_ATTRIBUTE(Attribute.LABEL, ctypes.cast(label, ctypes.c_void_p), len(label)))
        handle = ulong(0)
        rv = self.lib.C_CreateObject(ulong(session), template, ulong(4), ctypes.byref(handle))
        return rv, handle.value

    def encrypt_init(self, session: int, key: int) -> int:
        iv = ctypes.create_string_buffer(16)
        mech = CK_MECHANISM(Mechanism.AES_CBC, ctypes.cast(iv, ctypes.c_void_p), 16)
        return self.lib.C_EncryptInit(ulong(session), ctypes.byref(mech), ulong(key))


@pytest.fixture(scope="module")
def server(one_module_server):
    """These rules hold between clients of one module: one worker serves them all."""
    return one_module_server


@pytest.fixture
def holder(server, token):
    """Client A: logged in to the token, encrypting with a private session key until killed."""
    run_worker(server, "3.12", "genkey", token, "per-app-aes")  # a private token key
    proc = worker(server, "3.12", "hold", token, "1", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def test_a_client_without_the_login_sees_a_public_session(server, token, holder) -> None:
    b = Client()
    assert b.initialize(server) == CKR.OK
    try:
        rv, session = b.open_session(b.slot_of(token))
        assert rv == CKR.OK
        # The module is logged in (for A); B is not: a public session, no private objects.
        assert b.state(session) == SessionState.RW_PUBLIC_SESSION
        public = b.find_all(session)
        assert all(b.private(session, h) == (CKR.OK, False) for h in public)
        assert b.lib.C_InitPIN(ulong(session), b"5678", ulong(4)) == CKR.USER_NOT_LOGGED_IN
        # A private object B would create is refused (and not left behind); a public one is fine.
        assert b.create_data(session, private=True)[0] == CKR.USER_NOT_LOGGED_IN
        rv, data = b.create_data(session, private=False)
        assert rv == CKR.OK and b.lib.C_DestroyObject(ulong(session), ulong(data)) == CKR.OK
        assert sorted(b.find_all(session)) == sorted(public)
        # Logging in as the other user type while A holds the user login: too many user types.
        assert b.login(session, b"12345678", UserType.SO) == CKR.USER_TOO_MANY_TYPES

        # B logs in itself (joins A's login): now it sees the private token key.
        assert b.login(session) == CKR.OK
        assert b.state(session) == SessionState.RW_USER_FUNCTIONS
        mine = b.find_all(session)
        private = [h for h in mine if b.private(session, h) == (CKR.OK, True)]
        assert private and set(public) < set(mine)
        assert b.encrypt_init(session, private[0]) == CKR.OK  # an operation on the private key...

        # ... which ends with B's own C_Logout; A stays logged in and keeps encrypting.
        assert b.logout(session) == CKR.OK
        assert b.state(session) == SessionState.RW_PUBLIC_SESSION
        assert b.private(session, private[0])[0] == CKR.OBJECT_HANDLE_INVALID
        assert b.encrypt_init(session, private[0]) == CKR.KEY_HANDLE_INVALID
        assert sorted(b.find_all(session)) == sorted(public)
        assert b.logout(session) == CKR.USER_NOT_LOGGED_IN
        time.sleep(0.5)
        assert holder.poll() is None, holder.communicate(timeout=30)
    finally:
        b.finalize()


def test_the_last_holder_logging_out_logs_the_module_out(server, token) -> None:
    """Without other holders B's C_Logout is the module's: A's sessions (none logged in) stay public,
    and B logging in again works (the module is not left logged in for nobody)."""
    b = Client()
    assert b.initialize(server) == CKR.OK
    try:
        rv, session = b.open_session(b.slot_of(token))
        assert b.login(session) == CKR.OK
        assert b.state(session) == SessionState.RW_USER_FUNCTIONS
        assert b.logout(session) == CKR.OK
        assert b.state(session) == SessionState.RW_PUBLIC_SESSION
        assert b.login(session) == CKR.OK
        assert b.logout(session) == CKR.OK
    finally:
        b.finalize()
