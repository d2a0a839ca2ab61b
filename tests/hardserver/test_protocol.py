"""The wire protocol refuses malformed frames with a clear error, logs it, and keeps serving."""

from __future__ import annotations

import os
import socket
import stat
import struct

import pytest

from pkcs11_shim.constants import CKM_RSA_AES_KEY_WRAP, CKR, Attribute, Mechanism
from pkcs11_shim.build import read_functions
from pkcs11_shim.client_build import function_id
from pkcs11_shim.hardserver import protocol

HEADER = struct.Struct("<4sHHII")
FIDS = {f.name: function_id(f) for f in read_functions()}


def frame(ftype: int, fid: int, payload: bytes, *, magic: bytes = b"SSHS", version: int = protocol.VERSION,
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
        assert (magic, version) == (b"SSHS", protocol.VERSION)
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
        [hello(), frame(protocol.CALL, FIDS["C_DigestInit"], struct.pack("<Q", 1) + b"\x01" + struct.pack("<Q", Mechanism.SHA256)
                        + b"\x01" + struct.pack("<Q", 8) + b"\x00" + struct.pack("<Q", 8) + bytes(8)
                        + struct.pack("<Q", 1) + struct.pack("<Q", 4))],
        "pointer at offset 4 outside a 8-byte parameter"),
    "live pointer in a parameter": (
        # CKM_AES_GCM with a CK_GCM_PARAMS whose pIv holds an address of the client's (not relocated).
        [hello(), frame(protocol.CALL, FIDS["C_DigestInit"], struct.pack("<Q", 1) + b"\x01" + struct.pack("<Q", Mechanism.AES_GCM)
                        + b"\x01" + struct.pack("<Q", 48) + b"\x00" + struct.pack("<Q", 48)
                        + struct.pack("<QQQQQQ", 0x7FFF0000, 12, 96, 0, 0, 128) + struct.pack("<Q", 0))],
        "CK_GCM_PARAMS.pIv holds an address the client did not send"),
}


#: The rv of the error frame, where it is not CKR.DEVICE_ERROR (a broken frame: the device is unusable).
#: A pointer placed off a pointer member is a broken frame (checked before any length is read);
#: a pointer the client did not relocate is a bad parameter.
EXPECTED_RV = {"unknown function": CKR.FUNCTION_NOT_SUPPORTED,
               "live pointer in a parameter": CKR.MECHANISM_PARAM_INVALID}

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
    assert rv == EXPECTED_RV.get(case, CKR.DEVICE_ERROR)
    assert server.alive()
    assert message in server.log_text()
    # ... and the next client is served.
    ftype, rv, _ = exchange(server, hello(os.urandom(16)), shut_write=True)
    assert (ftype, rv) == (protocol.REPLY, 0)


def test_session_of_another_client_is_invalid(server, token) -> None:
    """Handles are per client: a guessed handle of someone else's session is refused."""
    from p11ctypes import RawClient

    raw = RawClient()
    assert raw.initialize(server) == 0
    try:
        rv, handle = raw.open_session(raw.slot_of(token))
        assert rv == 0
        # Another client (another token in HELLO) asks for random bytes on that session.
        payload = struct.pack("<Q", handle) + b"\x01" + struct.pack("<Q", 8)
        ftype, rv, _ = exchange(server, hello(os.urandom(16)), frame(protocol.CALL, FIDS["C_GenerateRandom"], payload),
                                shut_write=True)
        assert (ftype, rv) == (protocol.REPLY, CKR.SESSION_HANDLE_INVALID)
        assert raw.random(handle)[0] == 0  # still the owner's
    finally:
        raw.finalize()


def test_socket_is_private(server) -> None:
    assert stat.S_IMODE(os.stat(server.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.socket.parent).st_mode) == 0o700


# ---- lengths: the module is never handed a pointer whose length promises bytes the server lacks ----

def u64(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def node(data: bytes, *relocations: tuple[int, bytes]) -> bytes:
    """A parameter node as ss_put_node writes it: writeback flag, length, bytes, relocations."""
    return b"\x00" + u64(len(data)) + data + u64(len(relocations)) + b"".join(u64(o) + child for o, child in relocations)


def mechanism(mech: int, param: bytes, length: int) -> bytes:
    return b"\x01" + u64(mech) + b"\x01" + u64(length) + param


SIZEOF_ATTRIBUTE = 24


def gcm(iv_len: int, aad_len: int = 0) -> bytes:
    """CK_GCM_PARAMS {pIv, ulIvLen, ulIvBits, pAAD, ulAADLen, ulTagBits} with NULL pointers."""
    return u64(0, iv_len, iv_len * 8, 0, aad_len, 128)


LENGTH_FAULTS = {
    "input shorter than its length": (
        "C_SeedRandom", u64(1) + b"\x01" + u64(1000) + bytes(10),
        "pSeed: length 1000, but only 10 bytes follow", CKR.ARGUMENTS_BAD),
    "fixed input short": (  # C_InitToken's label: the module reads 32 bytes
        "C_InitToken", u64(0) + b"\x01" + u64(4) + b"1234" + b"\x01" + u64(3) + b"abc",
        "pLabel: 3 bytes sent, the function reads 32", CKR.ARGUMENTS_BAD),
    "attribute value shorter than ulValueLen": (
        "C_FindObjectsInit", u64(1) + b"\x01" + u64(1) + u64(Attribute.LABEL) + b"\x01" + u64(100) + b"abcd",
        f"attribute {Attribute.LABEL:#x} value: length 100, but only 4 bytes follow", CKR.ARGUMENTS_BAD),
    "nested template shorter than ulValueLen": (
        "C_CreateObject", u64(1) + b"\x01" + u64(1) + u64(Attribute.WRAP_TEMPLATE) + b"\x03" + u64(100 * SIZEOF_ATTRIBUTE)
        + b"\x01" + u64(1) + u64(Attribute.CLASS) + b"\x01" + u64(8) + u64(4) + b"\x01" + u64(0),
        "ulValueLen 2400 names 100 attributes, 1 sent", CKR.ARGUMENTS_BAD),
    "nested template in a plain attribute": (
        "C_CreateObject", u64(1) + b"\x01" + u64(1) + u64(Attribute.LABEL) + b"\x03" + u64(SIZEOF_ATTRIBUTE)
        + b"\x01" + u64(0) + b"\x01" + u64(0),
        f"attribute {Attribute.LABEL:#x} is no attribute array", CKR.ARGUMENTS_BAD),
    # Attribute.ALLOWED_MECHANISMS has CKF_ARRAY_ATTRIBUTE, but holds CK_MECHANISM_TYPEs: never nested.
    "nested template in Attribute.ALLOWED_MECHANISMS": (
        "C_CreateObject", u64(1) + b"\x01" + u64(1) + u64(Attribute.ALLOWED_MECHANISMS) + b"\x03" + u64(SIZEOF_ATTRIBUTE)
        + b"\x01" + u64(0) + b"\x01" + u64(0),
        f"attribute {Attribute.ALLOWED_MECHANISMS:#x} is no attribute array", CKR.ARGUMENTS_BAD),
    "unknown attribute entry flags": (
        "C_CreateObject", u64(1) + b"\x01" + u64(1) + u64(Attribute.LABEL) + b"\x02" + u64(0) + b"\x01" + u64(0),
        f"attribute {Attribute.LABEL:#x}: entry flags 2 unknown", CKR.ARGUMENTS_BAD),
    "parameter shorter than ulParameterLen": (
        "C_DigestInit", u64(1) + mechanism(Mechanism.SHA256, node(bytes(8)), 64),
        "8 bytes sent, its length argument says 64", CKR.ARGUMENTS_BAD),
    "embedded length beyond its buffer": (
        "C_EncryptInit", u64(1) + mechanism(Mechanism.AES_GCM, node(gcm(4096), (0, node(bytes(12)))), 48) + u64(7),
        "CK_GCM_PARAMS.pIv: 12 bytes sent; ulIvLen = 4096 needs 4096", CKR.MECHANISM_PARAM_INVALID),
    "pointer over a length member": (
        "C_EncryptInit", u64(1) + mechanism(Mechanism.AES_GCM, node(gcm(12), (0, node(bytes(12))), (8, node(bytes(4)))), 48)
        + u64(7),
        "a pointer at offset 8, which is no pointer member of CK_GCM_PARAMS", CKR.MECHANISM_PARAM_INVALID),
    "pointers in a parameter that has none": (
        "C_DigestInit", u64(1) + mechanism(Mechanism.SHA256, node(bytes(8), (0, node(bytes(4)))), 8),
        "carries pointers where its mechanism's parameter has none", CKR.MECHANISM_PARAM_INVALID),
    "nested struct of the wrong size": (  # CK_RSA_AES_KEY_WRAP_PARAMS.pOAEPParams -> 40-byte OAEP params
        "C_WrapKey", u64(1) + mechanism(CKM_RSA_AES_KEY_WRAP, node(u64(256, 0), (8, node(bytes(8)))), 16)
        + u64(7, 8) + b"\x02" + u64(0),
        "pOAEPParams: 8 bytes sent; sizeof(CK_RSA_PKCS_OAEP_PARAMS) needs 40", CKR.MECHANISM_PARAM_INVALID),
    "message parameter shorter than its length": (
        "C_EncryptMessage", u64(1) + b"\x01" + u64(48) + node(bytes(8)),
        "the per-message parameter: 8 bytes sent, its length argument says 48", CKR.ARGUMENTS_BAD),
}


@pytest.mark.parametrize("case", list(LENGTH_FAULTS))
def test_lengths_are_checked_against_the_bytes_sent(server, case) -> None:
    """Each length field is checked against the buffer the frame holds before the module sees it;
    the call is refused with an ERROR frame that keeps the connection, and the server serves on."""
    function, payload, message, rv_expected = LENGTH_FAULTS[case]
    ftype, rv, text = exchange(server, hello(os.urandom(16)), frame(protocol.CALL, FIDS[function], payload),
                               shut_write=True)
    assert ftype == protocol.ERROR, (ftype, rv, text)
    assert text[0] == 0  # the stream is in step: the connection stays
    assert message in text[1:].decode()
    assert rv == rv_expected
    assert server.alive()
    ftype, rv, _ = exchange(server, hello(os.urandom(16)), shut_write=True)
    assert (ftype, rv) == (protocol.REPLY, 0)


def test_output_capacity_is_capped_by_the_frame_limit(server) -> None:
    """A client asking for a 2**60-entry output gets a buffer the frame can carry, not an allocation
    of its choosing: the module answers with the real count."""
    ftype, rv, rest = exchange(server, hello(os.urandom(16)),
                               frame(protocol.CALL, FIDS["C_GetSlotList"], u64(0) + b"\x03" + u64(1 << 60)),
                               shut_write=True)
    assert (ftype, rv) == (protocol.REPLY, 0)
    count = struct.unpack("<Q", rest[:8])[0]
    assert 1 <= count < 64 and rest[8] == 1 and len(rest) == 9 + 8 * count
