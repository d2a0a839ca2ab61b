"""One worker process of a hardserver with several: a module of its own, serving the connections the
dispatcher (`pkcs11_shim.hardserver.dispatch`) hands it.

The worker is the single-process `Hardserver` without a listener: its connections arrive over the
channel, a SOCK_SEQPACKET socket pair with the dispatcher, as descriptors (SCM_RIGHTS) each with the
HELLO the dispatcher read from it; the worker answers that HELLO and serves the connection as the
single-process server does (a thread per connection, its `ClientTable`, visibility rules). It tells
the dispatcher when each connection ends. Messages on the channel (one per datagram):

    dispatcher -> worker   HAND  u64 connection id, HELLO payload  (+ the connection's descriptor)
                           STOP                                      (close everything, finalize)
    worker -> dispatcher   READY                                     (the module is initialized)
                           FAILED  UTF-8 reason                      (it could not be; the worker exits)
                           ENDED u64 connection id                   (closed, its client detached)

A worker whose dispatcher is gone dies with it (PR_SET_PDEATHSIG): its clients see the server go, as
they would see one process go, instead of a server nobody can reach or stop any more.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import select
import signal
import socket
import struct
import threading
from pathlib import Path

from pkcs11_shim.hardserver.server import Hardserver

log = logging.getLogger("hardserver")

HAND, STOP, READY, FAILED, ENDED = b"H", b"S", b"R", b"F", b"E"
CONNECTION_ID = struct.Struct("<Q")
MESSAGE_LIMIT = 4096  # the largest channel message: a HAND is 41 bytes, a FAILED reason is cut to fit
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Worker(Hardserver):
    """A Hardserver whose connections come from the dispatcher over `channel`."""

    def __init__(self, channel: socket.socket, socket_path: Path, library: Path, index: int) -> None:
        super().__init__(socket_path, library)
        self.channel = channel
        self.index = index
        self.ids: dict[socket.socket, int] = {}

    def serve_channel(self) -> None:
        """Take connections until the dispatcher says STOP or goes away, or a signal stops us."""
        while not self.stopping.is_set():
            readable, _, _ = select.select([self.channel], [], [], 0.5)
            if not readable:
                continue
            try:
                message, fds, _flags, _addr = socket.recv_fds(self.channel, MESSAGE_LIMIT, 1)
            except OSError as exc:
                log.warning("channel to the dispatcher: %s", exc)
                break
            if not message or message[:1] == STOP:
                break
            if message[:1] != HAND or len(fds) != 1:
                log.error("unexpected message %r from the dispatcher", message[:1])
                for fd in fds:
                    os.close(fd)
                continue
            (cid,) = CONNECTION_ID.unpack_from(message, 1)
            conn = socket.socket(fileno=fds[0])
            conn.setblocking(True)  # the dispatcher read the HELLO without blocking
            with self.conn_lock:
                self.connections.add(conn)
                self.ids[conn] = cid
            threading.Thread(target=self._serve_connection, args=(conn, message[1 + CONNECTION_ID.size:]),
                             daemon=True, name="hardserver-conn").start()

    def relay_pids(self) -> frozenset[int]:
        # The dispatcher runs the network listener and relays its clients' frames.
        return frozenset({os.getpid(), os.getppid()})

    def _ended(self, conn: socket.socket) -> None:
        with self.conn_lock:
            cid = self.ids.pop(conn, None)
        if cid is not None:
            tell(self.channel, ENDED + CONNECTION_ID.pack(cid))


def tell(channel: socket.socket, message: bytes) -> None:
    """One message to the dispatcher; a dispatcher that is gone is no error here (we die with it)."""
    try:
        channel.send(message[:MESSAGE_LIMIT])
    except OSError:
        pass


def die_with(parent: int) -> None:
    """SIGKILL when the dispatcher dies, and exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """The worker process: `python -c ... --worker N --channel-fd FD --library SO --parent PID`."""
    p = argparse.ArgumentParser(prog="softshield hardserver worker")
    p.add_argument("--socket", type=Path, required=True)  # the socket served (shown by ps)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--channel-fd", type=int, required=True)
    p.add_argument("--library", type=Path, required=True)
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format=f"%(asctime)s hardserver worker {args.worker} %(levelname)s %(message)s")
    die_with(args.parent)
    channel = socket.socket(fileno=args.channel_fd)
    worker = Worker(channel, args.socket, args.library, args.worker)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    try:
        worker.open_module()
    except Exception as exc:  # told to the dispatcher, which stops the server with this reason
        log.error("cannot open the module: %s", exc)
        tell(channel, FAILED + str(exc).encode("utf-8", "replace"))
        return 1
    tell(channel, READY)
    log.debug("worker %d (pid %d) ready", args.worker, os.getpid())
    try:
        worker.serve_channel()
    finally:
        worker.shutdown()
    return 0
