"""The wire protocol refuses malformed frames with a clear error, logs it, and keeps serving."""

from __future__ import annotations

import os
import socket
import stat
import struct

import pytest

from pkcs11_shim.build import read_functions
from pkcs11_shim.client_build import function_id
from pkcs11_shim.hardserver import protocol

HEADER = struct.Struct("<4sHHII")
FIDS = {f.name: function_id(f) for f in read_functions()}


def frame(ftype: int, fid: int, payload: bytes, *, magic: bytes = b"SSHS", version: int = 1,
          length: int | None = None) -> bytes:
    return HEADER.pack(magic, version, ftype, fid, len(payload) if length is None else length) + payload


def hello(token: bytes = b"t" * 16, ulong_size: int = 8) -> bytes:
    return frame(protocol.HELLO, 0, struct.pack("<IIQ16s", ulong_size, 8, os.getpid(), token))


def exchange(server, *chunks: bytes, shut_write: bool = False) -> tuple[int, int, bytes]:
    """Send chunks, read the last frame the server answers with before it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(server.socket))
        for chunk in chunks:
            s.sendall(chunk)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    frames = []
    while data:
        magic, version, ftype, fid, n = HEADER.unpack(data[:16])
        assert (magic, version) == (b"SSHS", 1)
        frames.append((ftype, struct.unpack("<Q", data[16:24])[0], data[24:16 + n]))  # ERROR: closes, message
        data = data[16 + n:]
    assert frames, "the server closed without a reply"
    return frames[-1]


MALFORMED = {
    "bad magic": ([frame(protocol.CALL, 0, b"", magic=b"HTTP")], "bad magic"),
    "bad version": ([frame(protocol.HELLO, 0, b"", version=99)], "protocol version 99 not supported"),
    "oversized": ([frame(protocol.CALL, 0, b"", length=protocol.MAX_PAYLOAD + 1)], "exceeds the 16777216-byte limit"),
    "truncated": ([frame(protocol.HELLO, 0, b"x" * 10, length=100)], "truncated frame payload: got 10 of 100 bytes"),
    "call before hello": ([frame(protocol.CALL, FIDS["C_GetInfo"], b"\x01" + struct.pack("<Q", 88))],
                          "the first frame must be HELLO"),
    "abi mismatch": ([hello(ulong_size=4)], "client ABI (CK_ULONG 4, pointer 8 bytes) differs"),
    "unknown function": ([hello(), frame(protocol.CALL, 0xDEADBEEF, b"")], "unknown function id 0xdeadbeef"),
    "short arguments": ([hello(), frame(protocol.CALL, FIDS["C_GenerateRandom"], b"\x01\x02\x03")],
                        "truncated payload"),
    "trailing bytes": ([hello(), frame(protocol.CALL, FIDS["C_GetSlotList"],
                                       struct.pack("<Q", 1) + b"\x00" + struct.pack("<Q", 0) + b"junk")],
                       "4 unexpected bytes after the arguments"),
    "pointer outside its parameter": (
        [hello(), frame(protocol.CALL, FIDS["C_DigestInit"], struct.pack("<Q", 1) + b"\x01" + struct.pack("<Q", 0x250)
                        + b"\x01" + struct.pack("<Q", 8) + b"\x00" + struct.pack("<Q", 8) + bytes(8)
                        + struct.pack("<Q", 1) + struct.pack("<Q", 4))],
        "pointer at offset 4 outside a 8-byte parameter"),
    "live pointer in a parameter": (
        # CKM_AES_GCM with a CK_GCM_PARAMS whose pIv holds an address of the client's (not relocated).
        [hello(), frame(protocol.CALL, FIDS["C_DigestInit"], struct.pack("<Q", 1) + b"\x01" + struct.pack("<Q", 0x1087)
                        + b"\x01" + struct.pack("<Q", 48) + b"\x00" + struct.pack("<Q", 48)
                        + struct.pack("<QQQQQQ", 0x7FFF0000, 12, 96, 0, 0, 128) + struct.pack("<Q", 0))],
        "CK_GCM_PARAMS.pIv holds an address the client did not send"),
}


#: Faults inside a whole frame refuse the call only; the others close the connection.
CALL_FAULTS = {"unknown function", "short arguments", "trailing bytes", "pointer outside its parameter",
               "live pointer in a parameter"}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frame_is_refused_clearly(server, case) -> None:
    chunks, message = MALFORMED[case]
    ftype, rv, text = exchange(server, *chunks, shut_write=case in CALL_FAULTS | {"truncated"})
    assert ftype == protocol.ERROR
    assert text[0] == (case not in CALL_FAULTS)
    assert message in text[1:].decode()
    assert rv in (protocol.CKR_DEVICE_ERROR, protocol.CKR_FUNCTION_NOT_SUPPORTED, 0x71)
    assert server.alive()
    assert message in server.log_text()
    # ... and the next client is served.
    ftype, rv, _ = exchange(server, hello(os.urandom(16)), shut_write=True)
    assert (ftype, rv) == (protocol.REPLY, 0)


def test_session_of_another_client_is_invalid(server, token) -> None:
    """Handles are per client: a guessed handle of someone else's session is refused."""
    from hsenv import RawClient

    raw = RawClient()
    assert raw.initialize(server) == 0
    try:
        rv, handle = raw.open_session(raw.slot_of(token))
        assert rv == 0
        # Another client (another token in HELLO) asks for random bytes on that session.
        payload = struct.pack("<Q", handle) + b"\x01" + struct.pack("<Q", 8)
        ftype, rv, _ = exchange(server, hello(os.urandom(16)), frame(protocol.CALL, FIDS["C_GenerateRandom"], payload),
                                shut_write=True)
        assert (ftype, rv) == (protocol.REPLY, 0xB3)  # CKR_SESSION_HANDLE_INVALID
        assert raw.random(handle)[0] == 0  # still the owner's
    finally:
        raw.finalize()


def test_socket_is_private(server) -> None:
    assert stat.S_IMODE(os.stat(server.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.socket.parent).st_mode) == 0o700
