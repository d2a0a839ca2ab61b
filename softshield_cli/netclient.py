"""The Python side of a network client: one mutual-TLS 1.3 connection to a module's hardserver.

The C client library speaks PKCS#11 over the same channel (native/client/transport_tls.c); the tools
here (anonkneti, nethsmenroll, rfs-sync) send SERVICE requests. A connection checks the module's KNETI
hash against the pin before it sends anything, and presents the client's certificate once enrolled.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import netid
from emulator.crypto import netid as netcrypto
from pkcs11_shim.hardserver import netconfig, protocol
from pkcs11_shim.hardserver.network import SERVICE, load_identity, recv_reply

from .main import CommandError

TIMEOUT = 30.0


@dataclass
class Connection:
    sock: ssl.SSLSocket
    esn: str
    kneti_hash: str

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """One SERVICE request and its JSON answer; an answer with "error" raises CommandError."""
        payload = json.dumps(body).encode("utf-8")
        try:
            header = protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, SERVICE, 0, len(payload))
            self.sock.sendall(header + payload)
            frame = recv_reply(self.sock)
        except (OSError, protocol.ProtocolError, protocol.ConnectionGone) as exc:
            raise CommandError(f"the module closed the connection ({exc or 'refused'}): see its log") from None
        ftype = protocol.HEADER.unpack_from(frame)[2]
        if ftype == protocol.ERROR:
            raise CommandError(frame[protocol.HEADER.size + 9:].decode("utf-8", "replace"))
        answer = json.loads(frame[protocol.HEADER.size:])
        if "error" in answer:
            raise CommandError(answer["error"])
        return answer

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def connect(host: str, port: int, pin: str | None, identity: netid.Identity | None = None) -> Connection:
    """TLS 1.3 to HOST:PORT; the module's key must hash to `pin` (None: anonkneti, which only reads it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # The module's certificate is self-signed: trust is the pinned key hash, checked below, before
    # anything is sent (TLS has already made the module prove it holds that key).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if identity is not None:
        load_identity(ctx, identity)
    try:
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
    except OSError as exc:
        raise CommandError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock = ctx.wrap_socket(raw)
    except (ssl.SSLError, OSError) as exc:
        raw.close()
        raise CommandError(f"TLS 1.3 with {host}:{port} failed: {exc}") from None
    der = sock.getpeercert(binary_form=True)
    conn = Connection(sock, netcrypto.common_name(der), netcrypto.key_hash_of_cert(der))
    if pin is not None and conn.kneti_hash != pin:
        conn.close()
        raise CommandError(f"{host}:{port} presented KNETI hash {conn.kneti_hash}, not the pinned {pin}: "
                           "pin mismatch, refused")
    return conn


def kmdata_of(arg: Path | None) -> Path:
    from emulator.paths import resolve_kmdata

    return resolve_kmdata(arg)


def enrolled_pin(kmdata: Path, host: str, port: int) -> tuple[str, str]:
    """(ESN, KNETI hash) the client pinned for HOST:PORT in [nethsm_imports]."""
    config = netconfig.read(netconfig.config_path(kmdata))
    for entry in config.entries("nethsm_imports"):
        if entry.get("remote_ip") == host and int(entry.get("remote_port") or netconfig.DEFAULT_PORT) == port:
            return entry.get("remote_esn", ""), entry.get("keyhash", "")
    raise CommandError(f"not enrolled with {host}:{port}: run softshield nethsmenroll {host}:{port} ESN KNETI-HASH "
                       f"first (no [nethsm_imports] entry in {netconfig.config_path(kmdata)})")


def enrolled_connection(kmdata: Path, host: str, port: int) -> Connection:
    esn, pin = enrolled_pin(kmdata, host, port)
    identity = netid.client_identity(netid.client_dir(kmdata), esn)
    if identity is None:
        raise CommandError(f"no client key and certificate from module {esn} in {netid.client_dir(kmdata)}: "
                           "run nethsmenroll")
    return connect(host, port, pin, identity)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
