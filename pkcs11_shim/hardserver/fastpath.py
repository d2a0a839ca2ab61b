"""The hardserver's C per-call path: how the server drives build/libsoftshield-serve.so.

A connection thread hands its socket's descriptor to `ss_srv_serve` (a cffi ABI call, so the GIL is
released): the C loop reads frames, answers every call `routes` gives it (decode with the codec's
checks, the per-application rules, the module's own C entry point, which takes the GIL inside the
module only, the reply) and comes back with the first frame it leaves to the Python path, or with
the connection's end. `Connection.next_frame` turns that into what `protocol.read_frame` gives or
raises, so the server's loop is the same for both paths.

The C loop decides per call from state the Python path owns and mirrors into C (`NativeMirror`):
which session handles are each client's, whether another client holds the login on a session's
slot, and which object handles are whose session objects. `ClientTable` and `SessionObjects` tell
the mirror every change before the reply of the call that made it is written.

SOFTSHIELD_HARDSERVER_C_PATH=0 turns the C loop off (every call takes the Python path); a server
without the built library runs the Python path and says so in its log.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cffi

from pkcs11_shim.hardserver import protocol
from pkcs11_shim.hardserver.protocol import ConnectionGone, ProtocolError

if TYPE_CHECKING:
    from pkcs11_shim.hardserver.clients import Client

log = logging.getLogger("hardserver")

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "build" / "libsoftshield-serve.so"
ENV = "SOFTSHIELD_HARDSERVER_C_PATH"

API_HEADER = ROOT / "native" / "server" / "ss_serve_api.h"


def _api_ffi() -> cffi.FFI:
    """The C loop's interface, declared once in native/server/ss_serve_api.h (the C sources include
    it); the preprocessor lines are the C compiler's, the handle types ss_client.h's."""
    declarations = "\n".join(line for line in API_HEADER.read_text().splitlines() if not line.startswith("#"))
    ffi = cffi.FFI()
    ffi.cdef("typedef unsigned long CK_SESSION_HANDLE;\ntypedef unsigned long CK_OBJECT_HANDLE;\n" + declarations)
    return ffi


FFI = _api_ffi()
# cffi's ABI mode gives a declared enum's values on any library opened through the declaring FFI.
_ENUM = FFI.dlopen(None)
PYTHON, GONE, TRUNCATED, TIMEOUT, HEADER, OSERROR, REPLY_TOO_LARGE = (
    getattr(_ENUM, f"SS_EV_{name}") for name in
    ("PYTHON", "GONE", "TRUNCATED", "TIMEOUT", "HEADER", "OSERROR", "REPLY_TOO_LARGE"))


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "no", "off", "false")


class Mirror:
    """What the Python path tells the C loop; this one is for a server without it (does nothing)."""

    active = False

    def session(self, client: Client, handle: int, public: bool) -> None:
        """The client opened `handle`; `public`: another client holds the login on its slot."""

    def login_view(self, client: Client, handle: int, public: bool) -> None:
        """The login on the session's slot changed (only a session the client still has)."""

    def session_closed(self, client: Client, handle: int) -> None:
        """`handle` is no longer the client's."""

    def client_gone(self, client: Client) -> None:
        """The client's last connection ended."""

    def owned(self, handles: Iterable[int], token: bytes) -> None:
        """Session objects the client with `token` created."""

    def disowned(self, handles: Iterable[int]) -> None:
        """Session objects destroyed (alone, or with their session)."""


class NativeMirror(Mirror):
    active = True

    def __init__(self, lib: Any, ffi: cffi.FFI) -> None:
        self.lib, self.ffi = lib, ffi
        #: client token -> owner id (ids never reused: a stale owner entry can name nobody else)
        self.ids: dict[bytes, int] = {}
        #: id(Client) -> its C state (one Client object per attached client; freed when it goes)
        self.states: dict[int, Any] = {}

    def owner_id(self, token: bytes) -> int:
        return self.ids.setdefault(token, len(self.ids) + 1)

    def state(self, client: Client) -> Any:
        state = self.states.get(id(client))
        if state is None:
            state = self.lib.ss_srv_client_new(self.owner_id(client.token))
            if state == self.ffi.NULL:
                raise MemoryError("ss_srv_client_new")
            self.states[id(client)] = state
        return state

    def session(self, client: Client, handle: int, public: bool) -> None:
        self.lib.ss_srv_session_set(self.state(client), handle, public)

    def login_view(self, client: Client, handle: int, public: bool) -> None:
        state = self.states.get(id(client))
        if state is not None:
            self.lib.ss_srv_session_mark(state, handle, public)

    def session_closed(self, client: Client, handle: int) -> None:
        state = self.states.get(id(client))
        if state is not None:
            self.lib.ss_srv_session_drop(state, handle)

    def client_gone(self, client: Client) -> None:
        state = self.states.pop(id(client), None)
        if state is not None:
            self.lib.ss_srv_client_free(state)

    def owned(self, handles: Iterable[int], token: bytes) -> None:
        owner = self.owner_id(token)
        for handle in handles:
            self.lib.ss_srv_owner_set(handle, owner)

    def disowned(self, handles: Iterable[int]) -> None:
        for handle in handles:
            self.lib.ss_srv_owner_drop(handle)


class CPath:
    """The loaded C loop, bound to the module the server loaded."""

    def __init__(self, ffi: cffi.FFI, lib: Any) -> None:
        self.ffi, self.lib = ffi, lib
        self.mirror = NativeMirror(lib, ffi)

    @classmethod
    def load(cls, module: Path, library: Path = LIBRARY) -> CPath | None:
        """The C loop over `module` (already loaded by the server), or None: turned off, not built,
        or not matching the module (each said in the log)."""
        if not enabled():
            log.info("C per-call path off (%s=0): every call takes the Python path", ENV)
            return None
        if not library.is_file():
            log.warning("no %s (make build): every call takes the Python path", library)
            return None
        ffi = FFI
        lib = ffi.dlopen(str(library))
        err = ffi.new("char[]", 512)
        if lib.ss_srv_bind(str(module).encode(), err, 512) != 0:
            log.warning("C per-call path unavailable (%s): every call takes the Python path",
                        ffi.string(err).decode("utf-8", "replace"))
            return None
        return cls(ffi, lib)

    def connection(self, sock: socket.socket, client: Client) -> Connection:
        return Connection(self, sock, client)


class Connection:
    """One client connection served by the C loop."""

    def __init__(self, cpath: CPath, sock: socket.socket, client: Client) -> None:
        self.cpath, self.sock, self.client = cpath, sock, client
        self.ffi, self.lib = cpath.ffi, cpath.lib
        sock.settimeout(None)  # the C loop waits itself; the Python path's replies block as before
        self.handed = 0  # frames handed to the Python path
        self.conn = self.lib.ss_srv_conn_new(sock.fileno(), cpath.mirror.state(client))
        if self.conn == self.ffi.NULL:
            raise MemoryError("ss_srv_conn_new")

    def next_frame(self) -> tuple[int, int, bytes]:
        """Serve in C until a frame needs the Python path: (frame type, function id, payload), or the
        ConnectionGone / ProtocolError / OSError `protocol.read_frame` would raise."""
        while True:
            ev = self.lib.ss_srv_serve(self.conn)
            kind = ev.kind
            if kind == PYTHON:
                self.handed += 1
                return int(ev.ftype), int(ev.fid), bytes(self.ffi.buffer(ev.payload, ev.length))
            if kind == GONE:
                raise ConnectionGone("closed")
            if kind == TRUNCATED:
                what = "frame header" if ev.what_header else "frame payload"
                raise ProtocolError(f"truncated {what}: got {ev.got} of {ev.want} bytes")
            if kind == TIMEOUT:
                raise ProtocolError(f"truncated frame: payload of {ev.want} bytes did not arrive")
            if kind == HEADER:
                protocol.parse_header(bytes(self.ffi.buffer(ev.header, 16)))  # raises the refusal
                raise ProtocolError("frame header refused")
            if kind == OSERROR:
                raise OSError(ev.err, os.strerror(ev.err))
            if kind == REPLY_TOO_LARGE:
                # As the Python path's send_frame refuses it: this call is answered with an ERROR
                # frame and the connection stays.
                exc = ProtocolError(f"reply of {ev.length} bytes exceeds the {protocol.MAX_PAYLOAD}-byte limit")
                log.warning("refused a call from client pid %s: %s", self.client.pid, exc)
                protocol.send_frame(self.sock, protocol.ERROR, int(ev.fid),
                                    protocol.error_payload(exc.rv, str(exc), False))
                continue
            raise ProtocolError(f"C per-call path: unknown event {kind}")

    def answered(self) -> int:
        """Calls the C loop answered on this connection."""
        return int(self.lib.ss_srv_answered(self.conn)) if self.conn is not None else 0

    def close(self) -> None:
        if self.conn is not None:
            self.lib.ss_srv_conn_free(self.conn)
            self.conn = None
