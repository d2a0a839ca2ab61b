"""What each client process owns in the shared module, and the calls whose meaning is per process.

The module behind the hardserver is one PKCS#11 application; its clients are many. So that each
client sees what it would see in-process:
- a session belongs to the client that opened it: another client's handle is CKR_SESSION_HANDLE_INVALID
  (which is also what a client gets for its old handles after a server restart);
- C_CloseAllSessions closes the caller's sessions only;
- login is shared per token in the module, so the server keeps who holds it: a second client logging
  in as the same user with the same PIN joins the login (the PIN is compared with a keyed MAC kept in
  memory only), C_Logout by one holder leaves the others logged in, and the module is logged out when
  the last holder logs out or goes away;
- a client that disconnects (exits, crashes, is killed mid-call) has its sessions closed.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography.hazmat.primitives import constant_time, hashes, hmac

from pkcs11_shim.client_build import Plan
from pkcs11_shim.hardserver.codec import Codec

log = logging.getLogger("hardserver")

CKR_OK = 0x0
CKR_PIN_INCORRECT = 0xA0
CKR_SESSION_HANDLE_INVALID = 0xB3
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKU_CONTEXT_SPECIFIC = 2


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
        with client.lock:
            sessions = dict(client.sessions)
            client.sessions.clear()
        for handle in sessions:
            rv = int(self.lib.C_CloseSession(handle))
            if rv != CKR_OK:
                log.debug("closing session %d of pid %d: rv 0x%x", handle, client.pid, rv)
        for slot in set(sessions.values()):
            self._drop_login(client, slot)
        log.info("client pid %d gone: %d session(s) closed", client.pid, len(sessions))

    def release_all(self) -> None:
        with self.lock:
            clients = list(self.clients.values())
            self.clients.clear()
        for client in clients:
            self.release(client)

    # ---- one call -----------------------------------------------------------------------------
    def dispatch(self, client: Client, plan: Plan, args: list[Any]) -> int:
        params = plan.function.arg_names
        if params and params[0] == "hSession":
            with client.lock:
                owned = args[0] in client.sessions
            if not owned:
                return CKR_SESSION_HANDLE_INVALID
        hook = HOOKS.get(plan.name)
        return hook(self, client, plan, args) if hook else self.codec.call(plan, args)

    # ---- sessions -----------------------------------------------------------------------------
    def _open_session(self, client: Client, plan: Plan, args: list[Any]) -> int:
        rv = self.codec.call(plan, args)
        if rv == CKR_OK:
            with client.lock:
                client.sessions[int(args[-1][0])] = int(args[0])
        return rv

    def _close_session(self, client: Client, plan: Plan, args: list[Any]) -> int:
        rv = self.codec.call(plan, args)
        if rv == CKR_OK:
            self._forget_session(client, int(args[0]))
        return rv

    def _forget_session(self, client: Client, handle: int) -> None:
        with client.lock:
            slot = client.sessions.pop(handle, None)
            still_open = slot in client.sessions.values()
        # PKCS#11 3.0 §5.6: closing an application's last session on a token ends its login.
        if slot is not None and not still_open:
            self._drop_login(client, slot)

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
        return CKR_OK

    # ---- login --------------------------------------------------------------------------------
    def _mac(self, *parts: bytes) -> bytes:
        h = hmac.HMAC(self._mac_key, hashes.SHA256())
        for part in parts:
            h.update(len(part).to_bytes(8, "little") + part)
        return h.finalize()

    def _octets(self, ptr: Any, length: int) -> bytes:
        return b"" if ptr == self.ffi.NULL else bytes(self.ffi.buffer(ptr, length))

    def _login(self, client: Client, plan: Plan, args: list[Any]) -> int:
        handle, user_type = int(args[0]), int(args[1])
        if user_type == CKU_CONTEXT_SPECIFIC:
            return self.codec.call(plan, args)
        secret = [self._octets(args[2], int(args[3]))] + ([self._octets(args[4], int(args[5]))] if len(args) > 4 else [])
        with client.lock:
            slot = client.sessions[handle]
        with self.login_lock:
            record = self.logins.get(slot)
            rv = self.codec.call(plan, args)
            if rv == CKR_OK:
                self.logins[slot] = LoginRecord(user_type, self._mac(*secret), {client.token})
            elif (rv == CKR_USER_ALREADY_LOGGED_IN and record is not None and record.user_type == user_type
                  and client.token not in record.holders and record.pin_mac is not None):
                # Another client holds this login: join it if the PIN is the one that opened it.
                if not constant_time.bytes_eq(self._mac(*secret), record.pin_mac):
                    return CKR_PIN_INCORRECT
                record.holders.add(client.token)
                rv = CKR_OK
            return rv

    def _login_end(self, client: Client, plan: Plan, args: list[Any]) -> int:
        """nShield C_LoginEnd (card-set quorum): the login holds without a PIN we could compare."""
        with self.login_lock:
            rv = self.codec.call(plan, args)
            if rv == CKR_OK:
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
                return CKR_USER_NOT_LOGGED_IN
            if record is not None and len(record.holders) > 1:
                record.holders.discard(client.token)
                return CKR_OK
            rv = self.codec.call(plan, args)
            if rv in (CKR_OK, CKR_USER_NOT_LOGGED_IN):
                self.logins.pop(slot, None)
            return rv

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


HOOKS: dict[str, Callable[[ClientTable, Client, Plan, list[Any]], int]] = {
    "C_OpenSession": ClientTable._open_session,
    "C_CloseSession": ClientTable._close_session,
    "C_CloseAllSessions": ClientTable._close_all_sessions,
    "C_Login": ClientTable._login,
    "C_LoginUser": ClientTable._login,
    "C_LoginEnd": ClientTable._login_end,
    "C_Logout": ClientTable._logout,
}
