"""What each client process owns in the shared module, and the calls whose meaning is per process.

The module behind the hardserver is one PKCS#11 application; its clients are many. So that each
client sees what it would see in-process:
- a session belongs to the client that opened it: another client's handle is CKR.SESSION_HANDLE_INVALID
  (which is also what a client gets for its old handles after a server restart);
- C_CloseAllSessions closes the caller's sessions only;
- login is per application (each client process), as on PKCS#11 and nShield; the module has one
  login per token, so the server keeps who holds it: a second client logging in as the same user
  with the same PIN joins the login (the PIN is compared with a keyed MAC kept in memory only), as
  another user type it gets CKR.USER_TOO_MANY_TYPES; C_Logout by one holder leaves the others logged
  in (its own operations end, §5.6.10) and the module is logged out when the last holder logs out or
  goes away; a client that holds no login sees its sessions as public ones (`logins.PublicView`);
- session objects are the creating client's (`visibility.SessionObjects`): to every other client
  they do not exist, and they go with the session that made them;
- the environment variables the module reads during a call that describe the caller (which cards
  the operator put in the slot: functions.FORWARDED_ENV) are the client's, sent with the call;
- a client that disconnects (exits, crashes, is killed mid-call) has its sessions closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

from emulator.crypto import mac

from pkcs11_shim.constants import CKR, CKU_CONTEXT_SPECIFIC
from pkcs11_shim.functions import MESSAGE_INIT, Plan
from pkcs11_shim.hardserver.codec import Codec
from pkcs11_shim.hardserver.fastpath import Mirror
from pkcs11_shim.hardserver.logins import PublicView
from pkcs11_shim.hardserver.visibility import SessionObjects

log = logging.getLogger("hardserver")

ALL_OPERATIONS = 0xFFFFFFFF  # C_SessionCancel flags: every operation kind


@dataclass
class Client:
    token: bytes
    pid: int
    connections: int = 0
    sessions: dict[int, int] = field(default_factory=dict)  # session handle -> slot
    lock: threading.Lock = field(default_factory=threading.Lock)

    def slots(self) -> set[int]:
        return set(self.sessions.values())


@dataclass
class LoginRecord:
    user_type: int
    pin_mac: bytes | None  # None: logged in without a PIN we saw (card set quorum, preload)
    holders: set[bytes]


class ClientTable:
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.ffi, self.lib = codec.ffi, codec.lib
        self.clients: dict[bytes, Client] = {}
        self.logins: dict[int, LoginRecord] = {}
        self.lock = threading.Lock()
        self.login_lock = threading.RLock()
        self._mac_key = os.urandom(32)
        self.view = PublicView(codec)
        self.objects = SessionObjects(codec)
        self.env_lock = threading.Lock()
        #: The C per-call path's copy of the state below (fastpath; does nothing without it).
        self.mirror = Mirror()

    def use_mirror(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.objects.mirror = mirror

    # ---- connections --------------------------------------------------------------------------
    def attach(self, token: bytes, pid: int) -> Client:
        with self.lock:
            client = self.clients.get(token)
            if client is None:
                client = self.clients[token] = Client(token, pid)
                log.info("client pid %d connected", pid)
            client.connections += 1
            return client

    def detach(self, client: Client) -> None:
        with self.lock:
            client.connections -= 1
            if client.connections > 0:
                return
            del self.clients[client.token]
        self.release(client)

    def release(self, client: Client) -> None:
        """Close everything the client left open (it exited, crashed or was killed)."""
        self.mirror.client_gone(client)
        with client.lock:
            sessions = dict(client.sessions)
            client.sessions.clear()
        for handle in sessions:
            self.codec.forget_session(handle)
            rv = int(self.lib.C_CloseSession(handle))  # the module destroys the session's objects
            self.objects.forget_session(handle)
            if rv != CKR.OK:
                log.debug("closing session %d of pid %d: rv 0x%x", handle, client.pid, rv)
        for slot in set(sessions.values()):
            self._drop_login(client, slot)
        self._mirror_logins()
        log.info("client pid %d gone: %d session(s) closed", client.pid, len(sessions))

    def release_all(self) -> None:
        with self.lock:
            clients = list(self.clients.values())
            self.clients.clear()
        for client in clients:
            self.release(client)

    # ---- one call -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def environment(self, values: dict[str, str | None]) -> Iterator[None]:
        """Answer a call under the client's values of the variables it forwarded. Such calls are
        serialized (the module reads them from the process environment); only they read these
        variables. A variable the client has unset is set empty, which the module reads as unset,
        so it is never removed from the C environment while another thread may be reading it."""
        with self.env_lock:
            saved = {name: os.environ.get(name) for name in values}
            for name, value in values.items():
                os.environ[name] = value or ""
            try:
                yield
            finally:
                for name, value in saved.items():
                    os.environ[name] = value or ""

    def dispatch(self, client: Client, plan: Plan, args: list[Any]) -> int:
        params = plan.function.arg_names
        hook = HOOKS.get(plan.name)
        if not params or params[0] != "hSession":
            if hook is None:
                return self.codec.call(plan, args)
            rv = hook(self, client, plan, args)
            if plan.name in LOGIN_STATE:
                self._mirror_logins()
            return rv
        with client.lock:
            slot = client.sessions.get(args[0])
        if slot is None:
            return CKR.SESSION_HANDLE_INVALID
        public = hook is None and self._public(client, slot)
        if hook is None:
            refused = self.objects.before(client, plan, args)
            if refused is None and public:
                refused = self.view.before(plan, args)
            if refused is not None:
                return refused
        rv = hook(self, client, plan, args) if hook else self.codec.call(plan, args)
        if hook is not None and plan.name in LOGIN_STATE:
            self._mirror_logins()
        if public:
            rv = self.view.after(plan, args, rv)
        if hook is None:
            self.objects.after(client, plan, args, rv)
        if rv == CKR.OK and MESSAGE_INIT.match(plan.name) and args[1] != self.ffi.NULL:
            self.codec.remember_message(int(args[0]), plan.family, int(args[1].mechanism))
        return rv

    def _mirror_logins(self) -> None:
        """Tell the C per-call path which sessions now see a login held by other clients only."""
        if not self.mirror.active:
            return
        with self.lock:
            clients = list(self.clients.values())
        for client in clients:
            with client.lock:
                sessions = list(client.sessions.items())
            for handle, slot in sessions:
                self.mirror.login_view(client, handle, self._public(client, slot))

    def _public(self, client: Client, slot: int) -> bool:
        """The module is logged in to this slot for other clients, not for this one."""
        record = self.logins.get(slot)
        return record is not None and client.token not in record.holders

    # ---- sessions -----------------------------------------------------------------------------
    def _open_session(self, client: Client, plan: Plan, args: list[Any]) -> int:
        rv = self.codec.call(plan, args)
        if rv == CKR.OK:
            handle, slot = int(args[-1][0]), int(args[0])
            with client.lock:
                client.sessions[handle] = slot
            self.mirror.session(client, handle, self._public(client, slot))
        return rv

    def _close_session(self, client: Client, plan: Plan, args: list[Any]) -> int:
        rv = self.codec.call(plan, args)
        if rv == CKR.OK:
            self._forget_session(client, int(args[0]))
        return rv

    def _forget_session(self, client: Client, handle: int) -> None:
        self.mirror.session_closed(client, handle)
        self.codec.forget_session(handle)
        self.objects.forget_session(handle)
        with client.lock:
            slot = client.sessions.pop(handle, None)
            still_open = slot in client.sessions.values()
        # PKCS#11 3.0 §5.6: closing an application's last session on a token ends its login.
        if slot is not None and not still_open:
            self._drop_login(client, slot)

    def _find_objects(self, client: Client, plan: Plan, args: list[Any]) -> int:
        return self.objects.find(client, plan, args)

    def _close_all_sessions(self, client: Client, plan: Plan, args: list[Any]) -> int:
        slot = int(args[0])
        with client.lock:
            mine = [h for h, s in client.sessions.items() if s == slot]
        if not mine:
            # Nothing of ours to close; still answer for a bad slot as the module would.
            return int(self.lib.C_GetSlotInfo(slot, self.ffi.new("CK_SLOT_INFO *")))
        for handle in mine:
            self.lib.C_CloseSession(handle)
            self._forget_session(client, handle)
        return CKR.OK

    # ---- login --------------------------------------------------------------------------------
    def _mac(self, *parts: bytes) -> bytes:
        return mac.hmac_sha256_of_parts(self._mac_key, *parts)

    def _octets(self, ptr: Any, length: int) -> bytes:
        return b"" if ptr == self.ffi.NULL else bytes(self.ffi.buffer(ptr, length))

    def _login(self, client: Client, plan: Plan, args: list[Any]) -> int:
        handle, user_type = int(args[0]), int(args[1])
        if user_type == CKU_CONTEXT_SPECIFIC:
            with client.lock:
                slot = client.sessions[handle]
            # Re-authenticating for a key needs this client's own login (§5.6.8).
            return CKR.USER_NOT_LOGGED_IN if self._public(client, slot) else self.codec.call(plan, args)
        secret = [self._octets(args[2], int(args[3]))] + ([self._octets(args[4], int(args[5]))] if len(args) > 4 else [])
        with client.lock:
            slot = client.sessions[handle]
        with self.login_lock:
            record = self.logins.get(slot)
            rv = self.codec.call(plan, args)
            if rv == CKR.OK:
                self.logins[slot] = LoginRecord(user_type, self._mac(*secret), {client.token})
            elif record is not None and client.token not in record.holders and record.user_type != user_type:
                # PKCS#11 §5.6.1: another application is logged in as the other user type.
                return CKR.USER_TOO_MANY_TYPES
            elif (rv == CKR.USER_ALREADY_LOGGED_IN and record is not None and record.user_type == user_type
                  and client.token not in record.holders and record.pin_mac is not None):
                # Another client holds this login: join it if the PIN is the one that opened it.
                if not mac.equal(self._mac(*secret), record.pin_mac):
                    return CKR.PIN_INCORRECT
                record.holders.add(client.token)
                rv = CKR.OK
            return rv

    def _login_end(self, client: Client, plan: Plan, args: list[Any]) -> int:
        """nShield C_LoginEnd (card-set quorum): the login holds without a PIN we could compare."""
        with self.login_lock:
            rv = self.codec.call(plan, args)
            if rv == CKR.OK:
                with client.lock:
                    slot = client.sessions[int(args[0])]
                self.logins[slot] = LoginRecord(int(args[1]), None, {client.token})
            return rv

    def _logout(self, client: Client, plan: Plan, args: list[Any]) -> int:
        with client.lock:
            slot = client.sessions[int(args[0])]
        with self.login_lock:
            record = self.logins.get(slot)
            if record is not None and client.token not in record.holders:
                return CKR.USER_NOT_LOGGED_IN
            if record is not None and len(record.holders) > 1:
                record.holders.discard(client.token)
                self._end_operations(client, slot)
                return CKR.OK
            rv = self.codec.call(plan, args)
            if rv in (CKR.OK, CKR.USER_NOT_LOGGED_IN):
                self.logins.pop(slot, None)
            return rv

    def _end_operations(self, client: Client, slot: int) -> None:
        """The client's operations on the slot end with its login (§5.6.10), as the module ends them
        when it logs out; the other holders' operations go on."""
        with client.lock:
            mine = [h for h, s in client.sessions.items() if s == slot]
        for handle in mine:
            self.lib.C_SessionCancel(handle, ALL_OPERATIONS)

    def _drop_login(self, client: Client, slot: int) -> None:
        with self.login_lock:
            record = self.logins.get(slot)
            if record is None or client.token not in record.holders:
                return
            record.holders.discard(client.token)
            if record.holders:
                return
            del self.logins[slot]
            # No client holds the login any more: log the token out through a session still on it.
            with self.lock:
                others = [h for c in self.clients.values() for h, s in c.sessions.items() if s == slot]
            if others:
                self.lib.C_Logout(others[0])


#: Hooks after which a login record may have changed (the C path's view of each session follows).
LOGIN_STATE = frozenset({"C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_Login", "C_LoginUser",
                         "C_LoginEnd", "C_Logout"})

HOOKS: dict[str, Callable[[ClientTable, Client, Plan, list[Any]], int]] = {
    "C_OpenSession": ClientTable._open_session,
    "C_CloseSession": ClientTable._close_session,
    "C_CloseAllSessions": ClientTable._close_all_sessions,
    "C_FindObjects": ClientTable._find_objects,
    "C_Login": ClientTable._login,
    "C_LoginUser": ClientTable._login,
    "C_LoginEnd": ClientTable._login_end,
    "C_Logout": ClientTable._logout,
}
