"""The hardserver process: a Unix domain socket, one thread per client connection, clean shutdown.

Access is the socket's file permissions (0600, in a 0700 folder we create), as nShield's hardserver
limits its local socket to the users allowed to use the module; a folder another user owns or can
write is refused, since whoever can write it can put their own socket in our place. Beside the
socket the server keeps STEM.pid (STEM: the socket path less ".sock"), which `--stop` reads; the
library that starts a server on demand (native/client/autostart.c) keeps STEM.lock and STEM.log there. A refused frame is answered with an
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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pkcs11_shim.constants import CKR, InitFlag
from pkcs11_shim.hardserver import fastpath, protocol
from pkcs11_shim.hardserver.clients import Client, ClientTable
from pkcs11_shim.hardserver.codec import Codec, load_module
from pkcs11_shim.hardserver.protocol import ConnectionGone, ProtocolError

if TYPE_CHECKING:
    from pkcs11_shim.hardserver.network import NetworkListener

log = logging.getLogger("hardserver")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIBRARY = ROOT / "build" / "libsoftshield-embedded.so"
MAX_CONNECTIONS = 256


def default_socket_path() -> Path:
    """The path the client library uses when nothing is configured (native/client/connection.c)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "softshield" / "hardserver.sock"
    return Path(f"/tmp/softshield-{os.getuid()}") / "hardserver.sock"


def sibling(socket_path: Path, suffix: str) -> Path:
    """STEM + suffix beside the socket, as native/client/autostart.c names them."""
    name = socket_path.name
    stem = name[:-5] if name.endswith(".sock") and len(name) > 5 else name
    return socket_path.with_name(stem + suffix)


def check_socket_folder(folder: Path) -> None:
    """Refuse a socket folder someone else could write: they could replace our socket."""
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RuntimeError(f"refusing the socket folder {folder} (owner uid {st.st_uid}, mode "
                           f"{stat.S_IMODE(st.st_mode):04o}): it must be a folder owned by uid {os.geteuid()} "
                           "that nobody else can write")


def stop_running(socket_path: Path, limit: float = 30) -> int:
    """SIGTERM the server whose pid file is beside the socket; returns its pid once it has exited."""
    pid_file = sibling(Path(socket_path), ".pid")
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        raise RuntimeError(f"no hardserver pid file at {pid_file}") from None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        raise RuntimeError(f"no hardserver runs as pid {pid} (stale {pid_file} removed)") from None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"hardserver {pid} did not exit within {limit:.0f} s")


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the connected process, from the kernel (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def client_pid(sock: socket.socket, hello_pid: int, relays: frozenset[int]) -> int:
    """The client's pid for the log: the kernel's, unless the connection is our own network relay
    (pkcs11_shim.hardserver.network, in one of the `relays` processes), whose client is on another
    host: then the pid its HELLO names."""
    pid = _peer(sock)[0]
    return hello_pid if pid == 0 or pid in relays else pid


class Hardserver:
    def __init__(self, socket_path: Path, library: Path = DEFAULT_LIBRARY, idle_timeout: float = 0) -> None:
        self.socket_path = Path(socket_path)
        self.library = Path(library)
        self.idle_timeout = idle_timeout
        self.idle_since = time.monotonic()
        self.socket_inode: int | None = None
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._codec: Codec | None = None
        self._clients: ClientTable | None = None
        self.c_path: fastpath.CPath | None = None

    # A server serves only after bind() and open_module(); these raise rather than hand out None,
    # so a call out of that order fails with its reason even under `python -O`.
    @property
    def listener(self) -> socket.socket:
        if self._listener is None:
            raise RuntimeError(f"hardserver {self.socket_path}: not bound (bind() comes before serving)")
        return self._listener

    @property
    def codec(self) -> Codec:
        if self._codec is None:
            raise RuntimeError(f"hardserver {self.socket_path}: no module open (open_module() comes before serving)")
        return self._codec

    @property
    def clients(self) -> ClientTable:
        if self._clients is None:
            raise RuntimeError(f"hardserver {self.socket_path}: no module open (open_module() comes before serving)")
        return self._clients

    # ---- start-up -----------------------------------------------------------------------------
    def open_module(self) -> None:
        # The server is the module's host: a front-end library given as --library must embed, never
        # forward back to this very server.
        os.environ["SOFTSHIELD_MODE"] = "embedded"
        ffi, lib = load_module(self.library)
        args = ffi.new("CK_C_INITIALIZE_ARGS *")
        args.flags = InitFlag.OS_LOCKING_OK  # many client threads call in at once
        rv = int(lib.C_Initialize(args))
        if rv != 0:
            raise RuntimeError(f"C_Initialize of {self.library} failed: rv 0x{rv:x}")
        self._codec = Codec(ffi, lib)
        self._clients = ClientTable(self._codec)
        self.c_path = fastpath.CPath.load(self.library)
        if self.c_path is not None:
            self._clients.use_mirror(self.c_path.mirror)

    def bind(self) -> None:
        path = self.socket_path
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        check_socket_folder(path.parent)
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
        self.socket_inode = path.lstat().st_ino
        listener.listen(64)
        listener.settimeout(0.5)
        self._listener = listener
        sibling(path, ".pid").write_text(f"{os.getpid()}\n")

    # ---- serving ------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        log.info("hardserver listening on %s (module %s)", self.socket_path, self.library)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                if self._idle_expired():
                    log.info("no client for %.0f s: exiting", self.idle_timeout)
                    break
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

    def relay_pids(self) -> frozenset[int]:
        """The processes whose connections are the network relay's (it runs beside the listener)."""
        return frozenset({os.getpid()})

    def _idle_expired(self) -> bool:
        with self.conn_lock:
            if self.connections:
                return False
        return self.idle_timeout > 0 and time.monotonic() - self.idle_since >= self.idle_timeout

    def _refuse(self, conn: socket.socket, message: str, rv: int = CKR.DEVICE_ERROR) -> None:
        try:
            protocol.send_frame(conn, protocol.ERROR, 0, protocol.error_payload(rv, message))
        except OSError:
            pass
        conn.close()

    def _hello(self, conn: socket.socket, handed: bytes | None = None) -> Client:
        """Answer the connection's HELLO: read here, or `handed` over by the dispatcher that read it
        (pkcs11_shim.hardserver.dispatch) and checked it is one."""
        if handed is None:
            ftype, _fid, payload = protocol.read_frame(conn)
        else:
            ftype, payload = protocol.HELLO, handed
        ulong_size, ptr_size, pid, token = protocol.hello_fields(ftype, payload)
        ffi = self.codec.ffi
        if ulong_size != ffi.sizeof("CK_ULONG") or ptr_size != ffi.sizeof("void *"):
            raise ProtocolError(f"client ABI (CK_ULONG {ulong_size}, pointer {ptr_size} bytes) differs from the server's")
        client = self.clients.attach(token, client_pid(conn, pid, self.relay_pids()))
        protocol.send_frame(conn, protocol.REPLY, 0, struct.pack("<Q", 0))
        return client

    def _call(self, client: Client, fid: int, payload: bytes) -> bytes:
        plan = self.codec.plans.get(fid)
        if plan is None:
            raise ProtocolError(f"unknown function id 0x{fid:08x} (client and server built from different "
                                "native/functions.txt)", CKR.FUNCTION_NOT_SUPPORTED)
        args, replies, memory = self.codec.decode(plan, payload)
        if memory.env:
            with self.clients.environment(memory.env):
                rv = self.clients.dispatch(client, plan, args)
        else:
            rv = self.clients.dispatch(client, plan, args)
        return self.codec.encode(rv, replies)

    def _native(self, conn: socket.socket, client: Client) -> fastpath.Connection | None:
        """The C loop for this connection, where its kind allows: a plain Unix socket, whose
        descriptor carries the frames as they are. Any other kind of connection (TLS, which needs
        Python's ssl to read a frame) keeps the Python path."""
        if self.c_path is None or type(conn) is not socket.socket or conn.family != socket.AF_UNIX:
            return None
        return self.c_path.connection(conn, client)

    def _serve_connection(self, conn: socket.socket, handed: bytes | None = None) -> None:
        client: Client | None = None
        native: fastpath.Connection | None = None
        try:
            client = self._hello(conn, handed)
            native = self._native(conn, client)
            while not self.stopping.is_set():
                # The C loop answers what it can and returns the first frame it leaves to Python.
                ftype, fid, payload = native.next_frame() if native else protocol.read_frame(conn)
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
            if native is not None:
                log.debug("connection of client pid %s: the C loop answered %d of %d calls",
                          client.pid if client else "?", native.answered(), native.answered() + native.handed)
                native.close()
            with self.conn_lock:
                self.connections.discard(conn)
                if not self.connections:
                    self.idle_since = time.monotonic()
            conn.close()
            if client is not None and not self.stopping.is_set():
                self.clients.detach(client)
            self._ended(conn)

    def _ended(self, conn: socket.socket) -> None:
        """A connection is closed and its client detached (a worker tells its dispatcher)."""

    # ---- shutdown -----------------------------------------------------------------------------
    def stop(self, *_signal: Any) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Close the listener and every connection, every client's sessions, then C_Finalize."""
        self.stopping.set()
        if self._listener is not None:
            # Unlink before closing, and only our own socket: a server started after us (by a client
            # that found this one gone) may already have put its socket at the same path.
            self._unlink_own(self.socket_path, self.socket_inode)
            pid_file = sibling(self.socket_path, ".pid")
            try:
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
            except FileNotFoundError:
                pass
            self._listener.close()
        with self.conn_lock:
            conns = list(self.connections)
        protocol.shut_down(conns)
        if self._clients is not None:
            self._clients.release_all()
        if self._codec is not None:
            rv = int(self._codec.lib.C_Finalize(self._codec.ffi.NULL))
            log.info("module finalized (rv 0x%x); hardserver stopped", rv)


    @staticmethod
    def _unlink_own(path: Path, inode: int | None) -> None:
        try:
            if inode is not None and path.lstat().st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            pass


def run(socket_path: Path, library: Path = DEFAULT_LIBRARY, idle_timeout: float = 0,
        ready_fd: int | None = None, network: NetworkListener | None = None) -> int:
    """Serve alone, in this process, until SIGTERM or SIGINT (or idle_timeout seconds without
    clients); returns the exit status. ready_fd, when given, gets "ready" once the socket listens and
    is closed: the library that started this server waits on it. Several module processes are
    `pkcs11_shim.hardserver.dispatch.Dispatcher`'s (it builds on this module, so the choice is the
    caller's). `network`, a pkcs11_shim.hardserver.network.NetworkListener, also serves enrolled
    clients on other hosts, relayed to the socket."""
    server = Hardserver(socket_path, library, idle_timeout)
    server.open_module()
    server.bind()
    if network is not None:
        try:
            network.open()
        except BaseException:
            server.shutdown()
            raise
        network.start()
    if ready_fd is not None:
        try:
            os.write(ready_fd, b"ready\n")
        finally:
            os.close(ready_fd)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    try:
        server.serve_forever()
    finally:
        if network is not None:
            network.stop()
        server.shutdown()
    return 0
