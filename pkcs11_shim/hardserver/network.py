"""The hardserver's network listener: the module served to enrolled clients on other hosts over mutual TLS 1.3.

As an nShield Connect serves client hardservers on TCP port 9004 through a channel authenticated by
the module's KNETI and each client's own key, `softshield hardserver --listen HOST:PORT` accepts TLS 1.3
connections (Python's `ssl`, i.e. OpenSSL) beside the Unix socket:

- the module presents its KNETI certificate (emulator.netid); a client checks the KNETI hash it
  pinned at enrolment and refuses any other key;
- a client presents the certificate the module issued it at enrolment; the module serves it only when
  its key hash is in the permitted-client list (`[hs_clients]` in `<kmdata>/config/config`, read on
  every connection, so `softshield hardserver permit` / `--revoke` apply to the next one), from the
  address the entry names, before its validity ends;
- a connection without a client certificate may only ask to be enrolled (a certificate issued for its
  public key: it grants nothing until the key hash is permitted) or read the KNETI (anonkneti);
- an unprivileged client (clientperm=unpriv) may not run world administration (`ADMIN_CALLS`).

An admitted PKCS#11 connection is relayed frame by frame to the server's own Unix socket, so the
network client is served by the same per-call path (single process or workers) as a local one, as
another client process; the relay only reads each frame's header (and a login's user type) to refuse
what an unprivileged client may not do. `SERVICE` frames carry the network-only requests (enrolment,
RFS sync: pkcs11_shim.hardserver.rfs), JSON in and out. Every refusal is one log line naming the peer
address and, when it presented one, its key hash; nothing is served to a refused connection.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator import netid
from emulator.crypto import netid as netcrypto

from pkcs11_shim.constants import CKR, UserType
from pkcs11_shim.functions import function_id, read_functions
from pkcs11_shim.hardserver import netconfig, protocol
from pkcs11_shim.hardserver.peers import Peer, Refused, admission
from pkcs11_shim.hardserver.protocol import ConnectionGone, ProtocolError

log = logging.getLogger("hardserver")

#: Frame type of a network-only request (JSON payload); answered with a REPLY frame (JSON).
SERVICE = 16
HANDSHAKE_TIMEOUT = 10.0
MAX_NETWORK_CONNECTIONS = 256

#: World administration: refused to an unprivileged network client, as nShield refuses privileged
#: commands on an unprivileged connection. The code is one the spec lists for the call: to this
#: client the token is write-protected (C_InitToken, C_InitPIN: PKCS#11 3.0 §5.5); a Security
#: Officer login is a user type it may not use (C_Login, and nShield's K-of-N login calls).
ADMIN_CALLS: dict[str, int] = {
    "C_InitToken": CKR.TOKEN_WRITE_PROTECTED,
    "C_InitPIN": CKR.TOKEN_WRITE_PROTECTED,
}
SO_LOGIN_CALLS: dict[str, int] = {
    "C_Login": CKR.USER_TYPE_INVALID,
    "C_LoginBegin": CKR.USER_TYPE_INVALID,
    "C_LoginNext": CKR.USER_TYPE_INVALID,
    "C_LoginEnd": CKR.USER_TYPE_INVALID,
}


def _ids(table: dict[str, int]) -> dict[int, tuple[str, int]]:
    by_name = {f.name: f for f in read_functions()}
    return {function_id(by_name[name]): (name, rv) for name, rv in table.items() if name in by_name}


def server_context(identity: netid.Identity) -> ssl.SSLContext:
    """TLS 1.3 only; the KNETI certificate; client certificates requested, and checked against the
    KNETI (the issuer of every enrolled client's certificate) when one is sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    load_identity(ctx, identity)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.num_tickets = 0  # clients never resume a session: no tickets to make and send
    ctx.load_verify_locations(cadata=identity.cert_pem.decode("ascii"))
    return ctx


def load_identity(ctx: ssl.SSLContext, identity: netid.Identity) -> None:
    # ssl loads a key and certificate only from files: a private folder of our own, removed at once.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="softshield-tls-") as tmp:
        pem = Path(tmp) / "identity.pem"
        pem.touch(mode=0o600)
        pem.write_bytes(identity.key_pem + identity.cert_pem)
        ctx.load_cert_chain(pem)


#: What a failed handshake means, by the OpenSSL reason it ends with (first match wins).
HANDSHAKE_FAULTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("ALERT",), "TLS handshake failed: the client refused the module's certificate ({reason}; a pinned KNETI "
                 "hash that is not this module's?)"),
    (("WRONG_VERSION", "HTTP_REQUEST", "RECORD_LAYER", "UNKNOWN_PROTOCOL", "UNSUPPORTED_PROTOCOL", "UNEXPECTED_MESSAGE",
      "PACKET_LENGTH_TOO_LONG"), "not a TLS 1.3 client (TLS handshake failed: {reason})"),
)


def _handshake_reason(exc: Exception) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no TLS handshake within {HANDSHAKE_TIMEOUT:.0f} s"
    reason = str(getattr(exc, "reason", None) or exc)
    if not isinstance(exc, ssl.SSLError):
        return f"connection failed during the TLS handshake: {reason}"
    for marks, text in HANDSHAKE_FAULTS:
        if any(mark in reason.upper() for mark in marks):
            return text.format(reason=reason)
    return f"TLS handshake failed: {reason}"


def read_first_frame(conn: socket.socket) -> tuple[int, int, bytes, bytes]:
    """(type, function id, payload, the raw header) of a connection's first frame: HELLO or SERVICE."""
    conn.settimeout(protocol.PAYLOAD_TIMEOUT)
    header = protocol._recv_exact(conn, protocol.HEADER.size, "frame header", at_boundary=True)
    magic, version, ftype, fid, length = protocol.HEADER.unpack(header)
    if ftype == SERVICE and magic == protocol.MAGIC and version == protocol.VERSION:
        if length > protocol.MAX_PAYLOAD:
            raise ProtocolError(f"payload of {length} bytes exceeds the {protocol.MAX_PAYLOAD}-byte limit")
    else:
        ftype, fid, length = protocol.parse_header(header)
    payload = protocol._recv_exact(conn, length, "frame payload") if length else b""
    return ftype, fid, payload, header


def recv_reply(sock: socket.socket) -> bytes:
    """One whole REPLY or ERROR frame from the local server, as bytes to pass on."""
    header = protocol._recv_exact(sock, protocol.HEADER.size, "reply header", at_boundary=True)
    length = struct.unpack_from("<I", header, 12)[0]
    if length > protocol.MAX_PAYLOAD:
        raise ProtocolError(f"reply of {length} bytes exceeds the {protocol.MAX_PAYLOAD}-byte limit")
    return header + (protocol._recv_exact(sock, length, "reply payload") if length else b"")


Service = Callable[[dict[str, Any], Peer], dict[str, Any]]


class NetworkListener:
    """The TCP listener, one thread per connection (the handshake runs there, not in the accept loop)."""

    def __init__(self, host: str, port: int, kmdata: Path, local_socket: Path, rfs: bool = False) -> None:
        self.host, self.port = host, port
        self.kmdata = Path(kmdata)
        self.local_socket = Path(local_socket)
        self.rfs_enabled = rfs
        self.identity: netid.Identity | None = None
        self.context: ssl.SSLContext | None = None
        self.listener: socket.socket | None = None
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.admin_ids = _ids(ADMIN_CALLS)
        self.so_login_ids = _ids(SO_LOGIN_CALLS)
        self.services: dict[str, Service] = {"enroll": self._enroll}
        self.thread: threading.Thread | None = None

    # ---- start and stop -----------------------------------------------------------------------
    def open(self) -> None:
        """The KNETI (made on first need), the TLS context and the bound socket: a refused port is
        said before the server reports itself ready."""
        esn = netid.module_esn(self.kmdata)
        self.identity = netid.module_identity(self.kmdata, esn)
        self.context = server_context(self.identity)
        if self.rfs_enabled:
            from pkcs11_shim.hardserver.rfs import RfsService

            self.services.update(RfsService(self.kmdata).services())
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as exc:
            listener.close()
            raise RuntimeError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        listener.listen(64)
        listener.settimeout(0.5)
        self.port = listener.getsockname()[1]
        self.listener = listener

    def _ready(self) -> tuple[socket.socket, netid.Identity]:
        """The bound socket and the module identity; they exist from bind() on, and `python -O`
        would strip an assert that said so."""
        if self.listener is None or self.identity is None:
            raise RuntimeError(f"network listener {self.host}:{self.port}: not bound (bind() comes before start())")
        return self.listener, self.identity

    def start(self) -> None:
        self._ready()
        log.info("hardserver listening on %s:%d (mutual TLS 1.3; module %s, KNETI hash %s%s)", self.host, self.port,
                 self.identity.name, self.identity.key_hash, "; RFS" if self.rfs_enabled else "")
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="hardserver-net")
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
        with self.lock:
            conns = list(self.connections)
        protocol.shut_down(conns)
        if self.thread is not None:
            self.thread.join(timeout=2)

    # ---- connections --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener, _identity = self._ready()
        while not self.stopping.is_set():
            try:
                raw, addr = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                if len(self.connections) >= MAX_NETWORK_CONNECTIONS:
                    log.warning("refused %s: too many network connections (%d)", addr[0], MAX_NETWORK_CONNECTIONS)
                    raw.close()
                    continue
                self.connections.add(raw)
            threading.Thread(target=self._serve, args=(raw, addr[0]), daemon=True, name="hardserver-tls").start()

    def _serve(self, raw: socket.socket, ip: str) -> None:
        if self.context is None:
            raise RuntimeError(f"network listener {self.host}:{self.port}: no TLS context (bind() comes before serving)")
        conn: socket.socket = raw
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small reply per call: send it now
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.warning("refused %s: %s", ip, _handshake_reason(exc))
                return
            with self.lock:
                self.connections.discard(raw)
                self.connections.add(conn)
            der = conn.getpeercert(binary_form=True)
            peer = Peer(ip, netcrypto.key_hash_of_cert(der) if der else None)
            try:
                ftype, fid, payload, header = read_first_frame(conn)
            except ConnectionGone:
                log.debug("%s closed the connection after the handshake (anonkneti, or it refused our key)", peer)
                return
            except (ProtocolError, OSError) as exc:
                log.warning("refused %s: %s", peer, exc)
                return
            if ftype == SERVICE:
                self._services(conn, peer, payload)
                return
            try:
                peer = self._admit(peer)
            except Refused as exc:
                log.warning("refused %s: %s; nothing served", ip, exc)
                self._send_error(conn, CKR.DEVICE_ERROR, f"this module does not serve this client: {exc}")
                return
            log.info("network client %s admitted (%s)", peer, "privileged" if peer.privileged else "unprivileged")
            self._relay(conn, peer, header + payload)
        except Exception:  # one connection's fault must not take the listener down
            log.exception("internal error serving network client %s", ip)
        finally:
            with self.lock:
                self.connections.discard(conn)
                self.connections.discard(raw)
            try:
                conn.close()
            except OSError:
                pass

    def _admit(self, peer: Peer) -> Peer:
        if peer.key_hash is None:
            raise Refused("no client certificate (an unenrolled client)")
        try:
            config = netconfig.read(netconfig.config_path(self.kmdata))
        except netconfig.ConfigError as exc:
            raise Refused(f"the permitted-client list is unreadable: {exc}") from None
        entry = admission(config, peer.key_hash, peer.addr)
        return Peer(peer.addr, peer.key_hash, entry.get("clientperm") == "priv")

    @staticmethod
    def _send_error(conn: socket.socket, rv: int, message: str, closes: bool = True) -> None:
        try:
            protocol.send_frame(conn, protocol.ERROR, 0, protocol.error_payload(rv, message, closes))
        except OSError:
            pass

    # ---- PKCS#11 over the network: relayed to the local socket ----------------------------------
    def refusal(self, peer: Peer, fid: int, payload: bytes) -> tuple[str, int] | None:
        """(function, CKR) when `peer` may not make this call, else None."""
        if peer.privileged:
            return None
        if fid in self.admin_ids:
            return self.admin_ids[fid]
        if fid in self.so_login_ids and len(payload) >= 16 and struct.unpack_from("<Q", payload, 8)[0] == UserType.SO:
            name, rv = self.so_login_ids[fid]
            return f"{name} as Security Officer", rv
        return None

    def _relay(self, conn: socket.socket, peer: Peer, hello: bytes) -> None:
        local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                local.connect(str(self.local_socket))
            except OSError as exc:
                log.error("network client %s: the local socket %s does not answer: %s", peer, self.local_socket, exc)
                self._send_error(conn, CKR.DEVICE_ERROR, "the hardserver is stopping")
                return
            with self.lock:
                self.connections.add(local)
            local.sendall(hello)
            conn.sendall(recv_reply(local))
            while not self.stopping.is_set():
                try:
                    _ftype, fid, payload = protocol.read_frame(conn)
                except ConnectionGone:
                    return
                except ProtocolError as exc:
                    log.warning("refused a frame from network client %s: %s", peer, exc)
                    self._send_error(conn, exc.rv, str(exc))
                    return
                refused = self.refusal(peer, fid, payload)
                if refused is not None:
                    name, rv = refused
                    log.warning("refused %s from unprivileged network client %s: world administration needs "
                                "clientperm=priv", name, peer)
                    protocol.send_frame(conn, protocol.ERROR, fid, protocol.error_payload(
                        rv, f"{name} needs a privileged client (clientperm=priv)", False))
                    continue
                local.sendall(protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, protocol.CALL, fid,
                                                   len(payload)) + payload)
                conn.sendall(recv_reply(local))
        except ConnectionGone:
            return
        except (OSError, ProtocolError) as exc:
            if not self.stopping.is_set():
                log.warning("network client %s: %s", peer, exc)
        finally:
            with self.lock:
                self.connections.discard(local)
            local.close()

    # ---- network-only requests ----------------------------------------------------------------
    def _services(self, conn: socket.socket, peer: Peer, payload: bytes) -> None:
        """SERVICE requests, one after the other, until the client closes the connection."""
        while not self.stopping.is_set():
            self._service(conn, peer, payload)
            try:
                ftype, _fid, payload, _header = read_first_frame(conn)
            except (ConnectionGone, ProtocolError, OSError):
                return
            if ftype != SERVICE:
                log.warning("refused %s: a PKCS#11 frame on a network-request connection", peer)
                return

    def _service(self, conn: socket.socket, peer: Peer, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            op = request["op"]
            handler = self.services[op]
        except (ValueError, KeyError, TypeError):
            log.warning("refused %s: an unknown network request", peer)
            self._answer(conn, {"error": "unknown request" + ("" if self.rfs_enabled else
                                                              " (this hardserver is not an RFS: start it with --rfs)")})
            return
        if op != "enroll":
            try:
                peer = self._admit(peer)
            except Refused as exc:
                log.warning("refused %s: %s; nothing served", peer.addr, exc)
                self._answer(conn, {"error": f"this module does not serve this client: {exc}"})
                return
        try:
            answer = handler(request, peer)
        except Refused as exc:
            log.warning("refused %s from %s: %s", op, peer, exc)
            answer = {"error": str(exc)}
        self._answer(conn, answer)

    @staticmethod
    def _answer(conn: socket.socket, answer: dict[str, Any]) -> None:
        try:
            protocol.send_frame(conn, protocol.REPLY, 0, json.dumps(answer).encode("utf-8"))
        except (OSError, ProtocolError) as exc:
            log.warning("could not answer a network request: %s", exc)

    def _enroll(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        _listener, identity = self._ready()
        try:
            public = base64.b64decode(request["public_key"])
            cert = netcrypto.issue_client_certificate(identity.key_pem, identity.cert_pem, public)
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(f"no usable public key in the enrolment request ({exc})") from None
        key_hash = netcrypto.key_hash_of_cert(cert)
        log.info("issued a client certificate to %s for key %s (served once permitted: softshield hardserver "
                 "permit %s)", peer.addr, key_hash, key_hash)
        return {"cert": base64.b64encode(cert).decode("ascii"), "esn": identity.name}
