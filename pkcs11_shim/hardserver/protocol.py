"""The hardserver wire protocol: framing and payload primitives (see native/client/ss_client.h).

Header (16 bytes, little-endian): magic b"SSHS", u16 version, u16 frame type, u32 function id,
u32 payload length. A payload is at most MAX_PAYLOAD bytes; CK_ULONG and lengths travel as u64.
An ERROR payload is u64 rv, u8 "the connection closes", then a UTF-8 message.
"""

from __future__ import annotations

import socket
import struct

from pkcs11_shim.constants import CKR

MAGIC = b"SSHS"
VERSION = 2  # 2: nested template replies carry each entry's type
MAX_PAYLOAD = 16 * 1024 * 1024
HEADER = struct.Struct("<4sHHII")

HELLO, CALL, REPLY, ERROR = 1, 2, 3, 4
HELLO_PAYLOAD = struct.Struct("<IIQ16s")  # sizeof(CK_ULONG), sizeof(void *), pid, client token
PAYLOAD_TIMEOUT = 30.0  # seconds for the rest of a frame once its header arrived


class ProtocolError(Exception):
    """A frame or call we refuse: answered with an ERROR frame. A framing fault closes the connection
    (the stream is out of step); a refused call inside a whole frame does not."""

    def __init__(self, message: str, rv: int = CKR.DEVICE_ERROR) -> None:
        super().__init__(message)
        self.rv = rv


class ConnectionGone(Exception):
    """The peer closed the connection between frames (a frame cut short is a ProtocolError)."""


def _recv_exact(sock: socket.socket, n: int, what: str, *, at_boundary: bool = False) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            if at_boundary and got == 0:
                raise ConnectionGone("closed")
            raise ProtocolError(f"truncated {what}: got {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def parse_header(header: bytes) -> tuple[int, int, int]:
    """(frame type, function id, payload length) of a whole header, or the ProtocolError refusing it."""
    magic, version, ftype, fid, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r} (not a softshield client?)")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version} not supported (this hardserver speaks {VERSION})")
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    if ftype not in (HELLO, CALL):
        raise ProtocolError(f"unexpected frame type {ftype}")
    return ftype, fid, length


def read_frame(sock: socket.socket, payload_timeout: float | None = PAYLOAD_TIMEOUT) -> tuple[int, int, bytes]:
    """(frame type, function id, payload). Waits for a header as long as the client likes (pooled
    connections sit idle), then expects the rest of the frame within `payload_timeout`."""
    sock.settimeout(None)
    header = _recv_exact(sock, HEADER.size, "frame header", at_boundary=True)
    sock.settimeout(payload_timeout)
    ftype, fid, length = parse_header(header)
    try:
        payload = _recv_exact(sock, length, "frame payload") if length else b""
    except socket.timeout:
        raise ProtocolError(f"truncated frame: payload of {length} bytes did not arrive") from None
    return ftype, fid, payload


def hello_fields(ftype: int, payload: bytes) -> tuple[int, int, int, bytes]:
    """(sizeof(CK_ULONG), sizeof(void *), pid, client token) of a connection's first frame."""
    if ftype != HELLO or len(payload) != HELLO_PAYLOAD.size:
        raise ProtocolError("the first frame must be HELLO")
    return HELLO_PAYLOAD.unpack(payload)


def send_frame(sock: socket.socket, ftype: int, fid: int, payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"reply of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    sock.sendall(HEADER.pack(MAGIC, VERSION, ftype, fid, len(payload)) + payload)


def error_payload(rv: int, message: str, closes: bool = True) -> bytes:
    """u64 rv | u8 the server closes the connection after this frame | UTF-8 message."""
    return struct.pack("<QB", rv, closes) + message.encode("utf-8", "replace")


class Reader:
    """Reads a CALL payload; running past its end is a ProtocolError, never an IndexError."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(f"truncated payload: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        return self.take(1)[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} unexpected bytes after the arguments")


class Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(bytes((v,)))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack("<Q", v))

    def raw(self, b: bytes) -> None:
        self.parts.append(b)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def shut_down(connections: list[socket.socket]) -> None:
    """End every connection's stream both ways: the thread serving each, blocked in a read, sees the
    end and cleans up on its own (closing the socket under it would leave it reading a dead fd)."""
    for conn in connections:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
