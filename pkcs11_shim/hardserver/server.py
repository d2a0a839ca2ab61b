"""The hardserver process: a Unix domain socket, one thread per client connection, clean shutdown.

Access is the socket's file permissions (0600, in a 0700 folder we create), as nShield's hardserver
limits its local socket to the users allowed to use the module. A refused frame is answered with an
ERROR frame naming the fault, logged, and the connection closed; the server keeps serving others.
SIGTERM / SIGINT close every client's sessions and finalize the module, so kmdata is left as the
module's own writes leave it (each write is a temp file, fsync and rename).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import stat
import struct
import threading
from pathlib import Path
from typing import Any

from pkcs11_shim.hardserver import protocol
from pkcs11_shim.hardserver.clients import Client, ClientTable
from pkcs11_shim.hardserver.codec import Codec, load_module
from pkcs11_shim.hardserver.protocol import ConnectionGone, ProtocolError

log = logging.getLogger("hardserver")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIBRARY = ROOT / "build" / "libsoftshield-pkcs11.so"
MAX_CONNECTIONS = 256
CKF_OS_LOCKING_OK = 0x2


def default_socket_path() -> Path:
    """The path the client library uses when nothing is configured (native/client/connection.c)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "softshield" / "hardserver.sock"
    return Path(f"/tmp/softshield-{os.getuid()}") / "hardserver.sock"


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the connected process, from the kernel (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


class Hardserver:
    def __init__(self, socket_path: Path, library: Path = DEFAULT_LIBRARY) -> None:
        self.socket_path = Path(socket_path)
        self.library = Path(library)
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.codec: Codec | None = None
        self.clients: ClientTable | None = None

    # ---- start-up -----------------------------------------------------------------------------
    def open_module(self) -> None:
        ffi, lib = load_module(self.library)
        args = ffi.new("CK_C_INITIALIZE_ARGS *")
        args.flags = CKF_OS_LOCKING_OK  # many client threads call in at once
        rv = int(lib.C_Initialize(args))
        if rv != 0:
            raise RuntimeError(f"C_Initialize of {self.library} failed: rv 0x{rv:x}")
        self.codec = Codec(ffi, lib)
        self.clients = ClientTable(self.codec)

    def bind(self) -> None:
        path = self.socket_path
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise RuntimeError(f"{path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
                raise RuntimeError(f"another hardserver is listening on {path}")
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink()  # left behind by a server that died
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # no window in which the socket is reachable by others
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        listener.listen(64)
        listener.settimeout(0.5)
        self.listener = listener

    # ---- serving ------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        assert self.listener is not None
        log.info("hardserver listening on %s (module %s)", self.socket_path, self.library)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self.stopping.is_set() or exc.errno == errno.EBADF:
                    break
                raise
            with self.conn_lock:
                if len(self.connections) >= MAX_CONNECTIONS:
                    self._refuse(conn, f"too many connections ({MAX_CONNECTIONS})")
                    continue
                self.connections.add(conn)
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                             name="hardserver-conn").start()

    def _refuse(self, conn: socket.socket, message: str, rv: int = protocol.CKR_DEVICE_ERROR) -> None:
        try:
            protocol.send_frame(conn, protocol.ERROR, 0, protocol.error_payload(rv, message))
        except OSError:
            pass
        conn.close()

    def _hello(self, conn: socket.socket) -> Client:
        assert self.codec is not None and self.clients is not None
        ftype, _fid, payload = protocol.read_frame(conn)
        if ftype != protocol.HELLO or len(payload) != protocol.HELLO_PAYLOAD.size:
            raise ProtocolError("the first frame must be HELLO")
        ulong_size, ptr_size, pid, token = protocol.HELLO_PAYLOAD.unpack(payload)
        ffi = self.codec.ffi
        if ulong_size != ffi.sizeof("CK_ULONG") or ptr_size != ffi.sizeof("void *"):
            raise ProtocolError(f"client ABI (CK_ULONG {ulong_size}, pointer {ptr_size} bytes) differs from the server's")
        peer_pid, _uid = _peer(conn)
        client = self.clients.attach(token, peer_pid or pid)
        protocol.send_frame(conn, protocol.REPLY, 0, struct.pack("<Q", 0))
        return client

    def _call(self, client: Client, fid: int, payload: bytes) -> bytes:
        assert self.codec is not None and self.clients is not None
        plan = self.codec.plans.get(fid)
        if plan is None:
            raise ProtocolError(f"unknown function id 0x{fid:08x} (client and server built from different "
                                "native/functions.txt)", protocol.CKR_FUNCTION_NOT_SUPPORTED)
        args, replies, memory = self.codec.decode(plan, payload)
        if memory.env:
            with self.clients.environment(memory.env):
                rv = self.clients.dispatch(client, plan, args)
        else:
            rv = self.clients.dispatch(client, plan, args)
        return self.codec.encode(rv, replies)

    def _serve_connection(self, conn: socket.socket) -> None:
        assert self.codec is not None and self.clients is not None
        client: Client | None = None
        try:
            client = self._hello(conn)
            while not self.stopping.is_set():
                ftype, fid, payload = protocol.read_frame(conn)
                if ftype != protocol.CALL:
                    raise ProtocolError(f"unexpected frame type {ftype} after HELLO")
                try:
                    protocol.send_frame(conn, protocol.REPLY, fid, self._call(client, fid, payload))
                except ProtocolError as exc:
                    # The frame was whole, so the stream is in step: refuse this call and keep the
                    # connection (closing it would close the client's sessions).
                    log.warning("refused a call from client pid %s: %s", client.pid, exc)
                    protocol.send_frame(conn, protocol.ERROR, fid, protocol.error_payload(exc.rv, str(exc), False))
        except ConnectionGone as exc:
            if str(exc) != "closed":
                log.warning("client %s: %s", client.pid if client else "?", exc)
        except ProtocolError as exc:
            log.warning("refused a frame from client pid %s: %s", client.pid if client else "?", exc)
            try:
                protocol.send_frame(conn, protocol.ERROR, 0, protocol.error_payload(exc.rv, str(exc)))
            except OSError:
                pass
        except OSError as exc:
            if not self.stopping.is_set():
                log.warning("connection of client pid %s: %s", client.pid if client else "?", exc)
        except Exception:  # a bug here must not take the whole server down
            log.exception("internal error serving client pid %s", client.pid if client else "?")
        finally:
            with self.conn_lock:
                self.connections.discard(conn)
            conn.close()
            if client is not None and not self.stopping.is_set():
                self.clients.detach(client)

    # ---- shutdown -----------------------------------------------------------------------------
    def stop(self, *_signal: Any) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Close the listener and every connection, every client's sessions, then C_Finalize."""
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
            try:
                self.socket_path.unlink()
            except FileNotFoundError:
                pass
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.clients is not None:
            self.clients.release_all()
        if self.codec is not None:
            rv = int(self.codec.lib.C_Finalize(self.codec.ffi.NULL))
            log.info("module finalized (rv 0x%x); hardserver stopped", rv)


def run(socket_path: Path, library: Path = DEFAULT_LIBRARY) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    server = Hardserver(socket_path, library)
    server.open_module()
    server.bind()
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    try:
        server.serve_forever()
    finally:
        server.shutdown()
    return 0
