"""A hardserver that uses every core: one dispatcher process and N worker processes.

A module's per-call path is Python, and the GIL answers one process's calls one at a time: one
server process gives all its clients together one core. With `--workers N` (N > 1), the process that
owns the socket loads no module. It accepts each connection, reads its HELLO without blocking, and
hands the connection (its descriptor, SCM_RIGHTS) with that HELLO to one of N worker processes
(`pkcs11_shim.hardserver.worker`), each a module of its own over the same kmdata.

- A client is its 16-byte client token (native/client/connection.c: one per process, on every
  connection of its idle pool, one per concurrent thread). All its connections go to one worker
  while any of them is open, so its sessions, logins and session objects live in one module, as in
  the single-process server. A new client goes to the ready worker with the fewest clients.
- Each worker tells the dispatcher when a connection ends: the client counts, the sticky map and the
  idle timeout (no connection on any worker) follow the workers' own view.
- A worker that dies takes its connections with it (only it holds them): its clients get
  CKR_DEVICE_REMOVED and then a fresh start, as after a server restart. The dispatcher logs it and
  starts another; a worker that exits before it is ready stops the server.
- The dispatcher accepts once the first worker is ready (as soon as one module can answer); the
  others take clients from the moment they are ready.
- SIGTERM / SIGINT / `--stop`: the socket and pid file go first, then each worker closes its
  clients' sessions and finalizes its module, then the dispatcher exits.
"""

from __future__ import annotations

import itertools
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pkcs11_shim.hardserver import protocol, worker
from pkcs11_shim.hardserver.protocol import ProtocolError
from pkcs11_shim.hardserver.server import MAX_CONNECTIONS, ROOT, Hardserver, client_pid

if TYPE_CHECKING:
    from pkcs11_shim.hardserver.network import NetworkListener

log = logging.getLogger("hardserver")

TICK = 0.5  # seconds between idle and deadline checks
STOP_LIMIT = 30.0  # seconds a worker gets to close its clients' sessions and finalize
HAND_LIMIT = 10.0  # seconds a hand-off may wait for a worker's channel


@dataclass(eq=False)
class WorkerProcess:
    index: int
    proc: subprocess.Popen
    channel: socket.socket
    ready: bool = False
    failure: str = ""
    clients: int = 0
    connections: int = 0


@dataclass(eq=False)
class Pending:
    """A connection whose HELLO frame is still arriving."""

    conn: socket.socket
    data: bytearray = field(default_factory=bytearray)
    ftype: int = 0
    length: int = -1  # the payload length, once the header is in
    deadline: float | None = None

    def wanted(self) -> int:
        return protocol.HEADER.size + max(self.length, 0) - len(self.data)


class Dispatcher:
    def __init__(self, socket_path: Path, library: Path, idle_timeout: float, count: int,
                 network: NetworkListener | None = None) -> None:
        # The front binds, writes the pid file, and removes both again; it loads no module.
        self.front = Hardserver(socket_path, library, idle_timeout)
        self.library = Path(library)
        self.count = count
        self.idle_timeout = idle_timeout
        self.idle_since = time.monotonic()
        self.selector = selectors.DefaultSelector()
        self.workers: list[WorkerProcess] = []
        self.sticky: dict[bytes, WorkerProcess] = {}
        self.open_per_token: dict[bytes, int] = {}
        self.handed: dict[int, tuple[WorkerProcess, bytes]] = {}  # connection id -> (worker, client token)
        self.pending: dict[socket.socket, Pending] = {}
        self.waiting: list[tuple[socket.socket, bytes]] = []  # HELLO read, no worker ready yet
        self.ids = itertools.count(1)
        self.stopping = False
        self.listening = False
        self.status = 0
        # pkcs11_shim.hardserver.network.NetworkListener: its threads relay each admitted network
        # client to our socket, where it is handed to a worker as a local client is.
        self.network = network

    # ---- the whole life -----------------------------------------------------------------------
    def run(self, ready_fd: int | None) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        try:
            # Bind first: a refused socket folder or a server already there is said before any
            # worker starts. Clients that connect meanwhile wait in the backlog.
            self.front.bind()
            self.front.listener.setblocking(False)
            if self.network is not None:
                self.network.open()
            for index in range(self.count):
                self.workers.append(self._start(index))
            while not self.stopping and not any(w.ready for w in self.workers):
                self._step()
            if self.stopping:
                return self.status
            self.selector.register(self.front.listener, selectors.EVENT_READ, "listener")
            self.listening = True
            if self.network is not None:
                self.network.start()
            log.info("hardserver listening on %s (module %s, %d workers)", self.front.socket_path, self.library,
                     self.count)
            if ready_fd is not None:
                try:
                    os.write(ready_fd, b"ready\n")
                finally:
                    os.close(ready_fd)
            while not self.stopping:
                self._step()
                self._check_idle()
        finally:
            self._shutdown()
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
        return self.status

    def stop(self, *_signal: object) -> None:
        self.stopping = True

    def _step(self) -> None:
        for key, _events in self.selector.select(TICK):
            tag = key.data
            if tag == "wake":
                try:
                    key.fileobj.recv(512)
                except BlockingIOError:
                    pass
            elif tag == "listener":
                self._accept()
            elif isinstance(tag, WorkerProcess):
                self._from_worker(tag)
            elif isinstance(tag, Pending):
                self._read_hello(tag)
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline is not None and now > p.deadline]:
            self._refuse(pending, ProtocolError(f"truncated frame: payload of {pending.length} bytes did not arrive"))

    def _open(self) -> int:
        return len(self.pending) + len(self.handed) + len(self.waiting)

    def _check_idle(self) -> None:
        if self.idle_timeout <= 0 or self._open():
            return
        if time.monotonic() - self.idle_since >= self.idle_timeout:
            log.info("no client for %.0f s: exiting", self.idle_timeout)
            self.stopping = True

    def _closed_one(self) -> None:
        if not self._open():
            self.idle_since = time.monotonic()

    # ---- workers ------------------------------------------------------------------------------
    def _start(self, index: int) -> WorkerProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        # The worker imports this package from where the dispatcher did, whatever its working folder.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        command = [sys.executable, "-c", "import sys; from pkcs11_shim.hardserver.worker import main; sys.exit(main())",
                   "--socket", str(self.front.socket_path), "--worker", str(index),
                   "--channel-fd", str(theirs.fileno()), "--library", str(self.library),
                   "--parent", str(os.getpid()), "--log-level", level]
        try:
            proc = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            ours.close()
            raise RuntimeError(f"cannot start hardserver worker {index}: {exc}") from None
        finally:
            theirs.close()
        ours.settimeout(HAND_LIMIT)
        started = WorkerProcess(index, proc, ours)
        self.selector.register(ours, selectors.EVENT_READ, started)
        log.debug("worker %d started (pid %d)", index, proc.pid)
        return started

    def _from_worker(self, w: WorkerProcess) -> None:
        try:
            message = w.channel.recv(worker.MESSAGE_LIMIT)
        except OSError:
            message = b""
        kind = message[:1]
        if not message:
            self._worker_gone(w)
        elif kind == worker.READY:
            w.ready = True
            log.info("worker %d (pid %d) takes clients", w.index, w.proc.pid)
            waiting, self.waiting = self.waiting, []
            for conn, hello in waiting:
                self._hand(conn, hello)
        elif kind == worker.FAILED:
            w.failure = message[1:].decode("utf-8", "replace")
        elif kind == worker.ENDED:
            (cid,) = worker.CONNECTION_ID.unpack_from(message, 1)
            self._ended(cid)

    def _ended(self, cid: int) -> None:
        entry = self.handed.pop(cid, None)
        if entry is None:
            return
        w, token = entry
        w.connections -= 1
        self.open_per_token[token] -= 1
        if not self.open_per_token[token]:
            del self.open_per_token[token]
            del self.sticky[token]
            w.clients -= 1
        self._closed_one()

    def _worker_gone(self, w: WorkerProcess) -> None:
        self.selector.unregister(w.channel)
        w.channel.close()
        try:
            code = w.proc.wait(timeout=STOP_LIMIT)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            code = w.proc.wait()
        lost = [cid for cid, (owner, _token) in self.handed.items() if owner is w]
        clients = w.clients
        for cid in lost:
            self._ended(cid)
        if self.stopping:
            return
        status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if not w.ready:
            reason = w.failure or f"it exited ({status}) before it was ready; its lines in the log say why"
            if not self.listening:  # still starting: the command fails with this line
                raise RuntimeError(f"hardserver worker {w.index}: {reason}")
            log.error("hardserver worker %d could not start: %s; stopping", w.index, reason)
            self.status, self.stopping = 1, True
            return
        log.error("worker %d (pid %d) died (%s): its %d client(s) lost their sessions; starting another",
                  w.index, w.proc.pid, status, clients)
        try:
            self.workers[w.index] = self._start(w.index)
        except RuntimeError as exc:
            log.error("%s; stopping", exc)
            self.status, self.stopping = 1, True

    # ---- clients ------------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.front.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if self._open() >= MAX_CONNECTIONS:
                self.front._refuse(conn, f"too many connections ({MAX_CONNECTIONS})")
                continue
            conn.setblocking(False)
            pending = Pending(conn)
            self.pending[conn] = pending
            self.selector.register(conn, selectors.EVENT_READ, pending)

    def _read_hello(self, pending: Pending) -> None:
        """Read what has arrived of the HELLO frame, never past it (a client may send its first call
        right behind it); the checks and messages are protocol.read_frame's."""
        try:
            chunk = pending.conn.recv(pending.wanted())
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("connection of client pid ?: %s", exc)
            self._drop(pending)
            return
        try:
            if not chunk:
                if not pending.data:
                    self._drop(pending)  # connected and left: nothing to answer
                    return
                got, what, total = ((len(pending.data), "frame header", protocol.HEADER.size) if pending.length < 0
                                    else (len(pending.data) - protocol.HEADER.size, "frame payload", pending.length))
                raise ProtocolError(f"truncated {what}: got {got} of {total} bytes")
            pending.data += chunk
            if pending.length < 0 and len(pending.data) == protocol.HEADER.size:
                pending.ftype, _fid, pending.length = protocol.parse_header(bytes(pending.data))
                pending.deadline = time.monotonic() + protocol.PAYLOAD_TIMEOUT
            if pending.length >= 0 and not pending.wanted():
                payload = bytes(pending.data[protocol.HEADER.size:])
                protocol.hello_fields(pending.ftype, payload)
                self._forget(pending)
                self._hand(pending.conn, payload)
        except ProtocolError as exc:
            self._refuse(pending, exc)

    def _forget(self, pending: Pending) -> None:
        self.selector.unregister(pending.conn)
        del self.pending[pending.conn]

    def _drop(self, pending: Pending) -> None:
        self._forget(pending)
        pending.conn.close()
        self._closed_one()

    def _refuse(self, pending: Pending, exc: ProtocolError) -> None:
        log.warning("refused a frame from client pid ?: %s", exc)
        self._forget(pending)
        pending.conn.settimeout(1)
        self.front._refuse(pending.conn, str(exc), exc.rv)
        self._closed_one()

    def _hand(self, conn: socket.socket, hello: bytes) -> None:
        """Give the connection to its client's worker, or to the least loaded one."""
        _ulong, _ptr, hello_pid, token = protocol.HELLO_PAYLOAD.unpack(hello)
        w = self.sticky.get(token)
        if w is None:
            ready = [c for c in self.workers if c.ready]
            if not ready:
                self.waiting.append((conn, hello))
                return
            w = min(ready, key=lambda c: (c.clients, c.connections, c.index))
        cid = next(self.ids)
        try:
            pid = client_pid(conn, hello_pid, frozenset({os.getpid()}))
            socket.send_fds(w.channel, [worker.HAND + worker.CONNECTION_ID.pack(cid) + hello], [conn.fileno()])
        except OSError as exc:
            # The worker is going (its channel closed or full): the client sees the connection end,
            # CKR_DEVICE_REMOVED, and its next connection finds a worker that answers.
            log.warning("could not hand a connection to worker %d: %s", w.index, exc)
            conn.close()
            self._closed_one()
            return
        conn.close()  # the worker holds it now; were we to keep it, the client would outlive its worker
        self.handed[cid] = (w, token)
        w.connections += 1
        if token not in self.sticky:
            self.sticky[token] = w
            w.clients += 1
            log.info("client pid %d on worker %d (pid %d)", pid, w.index, w.proc.pid)
        log.debug("connection %d of client pid %d to worker %d", cid, pid, w.index)
        self.open_per_token[token] = self.open_per_token.get(token, 0) + 1

    # ---- shutdown -----------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Socket and pid file first (nobody new arrives), then every worker closes and finalizes."""
        if self.network is not None:
            self.network.stop()
        self.front.shutdown()
        for pending in list(self.pending.values()):
            self._forget(pending)
            pending.conn.close()
        for conn, _hello in self.waiting:
            conn.close()
        self.waiting.clear()
        self.stopping = True
        for w in self.workers:
            if w.proc.poll() is None:
                worker.tell(w.channel, worker.STOP)
        deadline = time.monotonic() + STOP_LIMIT
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop within %.0f s: killed", w.index, w.proc.pid, STOP_LIMIT)
                w.proc.kill()
                w.proc.wait()
            w.channel.close()
        if self.workers:
            log.info("hardserver stopped (%d workers)", len(self.workers))
