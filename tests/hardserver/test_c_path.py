"""The hardserver's C per-call path answers byte for byte as the Python path does.

Two one-worker servers over copies of the same kmdata, one with the C loop (the default) and one
with SOFTSHIELD_HARDSERVER_C_PATH=0, get the same frames from two clients: the calls the C loop
answers (wrap, encrypt, digest, sign, attribute reads, searches), the ones it hands to Python
(sessions, logins, object creation), refusals the C decoder leaves to the Python path (stray
pointers, short templates, unknown functions) and the per-application rules (another client's
session, its session objects, a login held by another client). Every reply frame must be equal.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path

import cffi
import pytest

from hsenv import SO_PIN, USER_PIN, Server, init_token, new_server  # noqa: F401
from pkcs11_shim.constants import CKR, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11_shim.functions import NATIVE, plans, read_functions
from pkcs11_shim.hardserver import protocol, routes
from pkcs11_shim.hardserver.clients import HOOKS

FIDS = {p.name: p.fid for p in plans(read_functions())}
HEADER = struct.Struct("<4sHHII")


def _sizes() -> dict[str, int]:
    ffi = cffi.FFI()
    ffi.cdef(re.sub(r"/\*.*?\*/", "", (NATIVE / "pkcs11_types.h").read_text(), flags=re.S))
    sizes = {name: ffi.sizeof(name) for name in ("CK_INFO", "CK_TOKEN_INFO", "CK_SESSION_INFO", "CK_MECHANISM_INFO")}
    sizes["utcTime"] = ffi.offsetof("CK_TOKEN_INFO", "utcTime")
    return sizes


SIZES = _sizes()
#: Where a C_GetTokenInfo reply holds the token's clock (rv, has-struct, then the struct): the two
#: servers answer at different seconds.
UTC_TIME = slice(9 + SIZES["utcTime"], 9 + SIZES["utcTime"] + 16)


def u64(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def ulong_in(data: bytes) -> bytes:
    return b"\x01" + u64(len(data)) + data


def node(data: bytes, *relocations: tuple[int, bytes]) -> bytes:
    return b"\x00" + u64(len(data)) + data + u64(len(relocations)) + b"".join(u64(o) + c for o, c in relocations)


def mechanism(mech: int, param: bytes | None = None, length: int = 0) -> bytes:
    if param is None:
        return b"\x01" + u64(mech) + b"\x00" + u64(0)
    return b"\x01" + u64(mech) + b"\x01" + u64(length) + param


def template(*entries: tuple[int, bytes]) -> bytes:
    return b"\x01" + u64(len(entries)) + b"".join(u64(t) + b"\x01" + u64(len(v)) + v for t, v in entries)


def template_io(*entries: tuple[int, int | None]) -> bytes:
    """(type, capacity or None for a size query)."""
    out = b"\x01" + u64(len(entries))
    for a_type, capacity in entries:
        out += u64(a_type) + (b"\x00" + u64(0) if capacity is None else b"\x01" + u64(capacity))
    return out


TRUE, FALSE = b"\x01", b"\x00"
WRAPPING_VALUE, TARGET_VALUE = bytes(range(32)), bytes(range(100, 132))


def secret(value: bytes, *extra: tuple[int, bytes]) -> bytes:
    return template((Attribute.CLASS, u64(ObjectClass.SECRET_KEY)), (Attribute.KEY_TYPE, u64(KeyType.AES)),
                    (Attribute.VALUE, value), (Attribute.TOKEN, FALSE), (Attribute.SENSITIVE, FALSE), *extra)


class Peer:
    """One client connection (its own HELLO token) that records every reply frame."""

    def __init__(self, server: Server, token: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(server.socket))
        self.frames: list[tuple[int, bytes]] = []
        self.send(protocol.HELLO, 0, struct.pack("<IIQ16s", 8, 8, 4242, token))

    def send(self, ftype: int, fid: int, payload: bytes) -> tuple[int, bytes]:
        self.sock.sendall(HEADER.pack(b"SSHS", protocol.VERSION, ftype, fid, len(payload)) + payload)
        header = self._exact(16)
        _magic, _version, rtype, _fid, n = HEADER.unpack(header)
        reply = self._exact(n)
        self.frames.append((rtype, reply))
        return rtype, reply

    def call(self, name: str, payload: bytes) -> tuple[int, bytes]:
        return self.send(protocol.CALL, FIDS[name], payload)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def rv_of(reply: tuple[int, bytes]) -> int:
    return struct.unpack_from("<Q", reply[1])[0]


def ulong_out(reply: tuple[int, bytes]) -> int:
    return struct.unpack_from("<Q", reply[1], 8)[0]


def conversation(server: Server, label: str) -> list[tuple[int, bytes]]:
    """The same calls on `server`, every reply frame in order."""
    a, b = Peer(server, b"a" * 16), Peer(server, b"b" * 16)
    try:
        a.call("C_GetInfo", b"\x01" + u64(SIZES["CK_INFO"]))
        # The length query first, as PKCS#11 clients make it: only it may show slots another process
        # (here: pkcs11-tool, perhaps through another worker) made since this module last looked.
        a.call("C_GetSlotList", u64(1) + b"\x02" + u64(0))
        slots = a.call("C_GetSlotList", u64(1) + b"\x03" + u64(16))
        count = struct.unpack_from("<Q", slots[1], 8)[0]
        slot = None
        for i in range(count):
            candidate = struct.unpack_from("<Q", slots[1], 17 + 8 * i)[0]
            info = a.call("C_GetTokenInfo", u64(candidate) + b"\x01" + u64(SIZES["CK_TOKEN_INFO"]))
            a.frames[-1] = (info[0], info[1][:UTC_TIME.start] + bytes(16) + info[1][UTC_TIME.stop:])
            if info[1][9:41].decode().rstrip() == label:
                slot = candidate
        assert slot is not None
        session = ulong_out(a.call("C_OpenSession", u64(slot, 6) + b"\x01" + u64(0)))
        a.call("C_GetSessionInfo", u64(session) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        assert rv_of(a.call("C_Login", u64(session, 1) + ulong_in(USER_PIN.encode()))) == CKR.OK
        a.call("C_GetSessionInfo", u64(session) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        wrapping = ulong_out(a.call("C_CreateObject", u64(session) + secret(
            WRAPPING_VALUE, (Attribute.WRAP, TRUE), (Attribute.ENCRYPT, TRUE), (Attribute.SIGN, TRUE),
            (Attribute.LABEL, b"wrapping")) + b"\x01" + u64(0)))
        target = ulong_out(a.call("C_CreateObject", u64(session) + secret(
            TARGET_VALUE, (Attribute.EXTRACTABLE, TRUE)) + b"\x01" + u64(0)))
        kwp = mechanism(Mechanism.AES_KEY_WRAP_KWP)
        # The two-call convention, a short buffer, an exact one.
        a.call("C_WrapKey", u64(session) + kwp + u64(wrapping, target) + b"\x02" + u64(0))
        a.call("C_WrapKey", u64(session) + kwp + u64(wrapping, target) + b"\x03" + u64(8))
        a.call("C_WrapKey", u64(session) + kwp + u64(wrapping, target) + b"\x03" + u64(40))
        a.call("C_WrapKey", u64(session) + kwp + u64(wrapping, target) + b"\x01" + u64(0))
        # Encryption: no parameter, bytes, a struct with relocated pointers (GCM: IV and AAD).
        a.call("C_EncryptInit", u64(session) + mechanism(Mechanism.AES_ECB) + u64(wrapping))
        a.call("C_Encrypt", u64(session) + ulong_in(bytes(32)) + b"\x02" + u64(0))
        a.call("C_Encrypt", u64(session) + ulong_in(bytes(32)) + b"\x03" + u64(64))
        a.call("C_EncryptInit", u64(session) + mechanism(Mechanism.AES_CBC_PAD, node(bytes(16)), 16) + u64(wrapping))
        a.call("C_EncryptUpdate", u64(session) + ulong_in(b"x" * 20) + b"\x03" + u64(64))
        a.call("C_EncryptFinal", u64(session) + b"\x03" + u64(64))
        gcm = u64(0, 12, 96, 0, 5, 128)
        a.call("C_EncryptInit", u64(session) + mechanism(
            Mechanism.AES_GCM, node(gcm, (0, node(bytes(range(12)))), (24, node(b"hello"))), 48) + u64(wrapping))
        a.call("C_Encrypt", u64(session) + ulong_in(b"plaintext") + b"\x03" + u64(64))
        # Refused by the codec: a pointer over a length member, a short IV buffer.
        a.call("C_EncryptInit", u64(session) + mechanism(
            Mechanism.AES_GCM, node(gcm, (0, node(bytes(12))), (8, node(bytes(4)))), 48) + u64(wrapping))
        a.call("C_EncryptInit", u64(session) + mechanism(
            Mechanism.AES_GCM, node(gcm, (0, node(bytes(11)))), 48) + u64(wrapping))
        a.call("C_DigestInit", u64(session) + mechanism(Mechanism.SHA256))
        a.call("C_Digest", u64(session) + ulong_in(b"abc") + b"\x03" + u64(32))
        a.call("C_SignInit", u64(session) + mechanism(Mechanism.AES_CMAC) + u64(wrapping))
        a.call("C_Sign", u64(session) + ulong_in(b"message") + b"\x03" + u64(16))
        # Attribute reads: a value, a size query, a short buffer, a sensitive-free value, a nested
        # template's size, an attribute the object lacks.
        a.call("C_GetAttributeValue", u64(session, wrapping) + template_io(
            (Attribute.CLASS, 8), (Attribute.LABEL, None), (Attribute.VALUE, 4), (Attribute.VALUE_LEN, 8),
            (Attribute.WRAP_TEMPLATE, None), (Attribute.MODULUS, 256)))
        a.call("C_GetAttributeValue", u64(session, target) + template_io((Attribute.VALUE, 32), (Attribute.TOKEN, 1)))
        a.call("C_GetAttributeValue", u64(session, 999999) + template_io((Attribute.CLASS, 8)))
        a.call("C_FindObjectsInit", u64(session) + template((Attribute.LABEL, b"wrapping")))
        a.call("C_FindObjects", u64(session) + b"\x01" + u64(10) + b"\x01" + u64(0))
        a.call("C_FindObjectsFinal", u64(session))
        a.call("C_GetMechanismInfo", u64(slot, Mechanism.AES_KEY_WRAP_KWP) + b"\x01" + u64(SIZES["CK_MECHANISM_INFO"]))
        a.call("C_GenerateRandom", u64(session) + b"\x00" + u64(16))  # no buffer: only the rv is compared
        # Malformed calls inside whole frames.
        a.call("C_Digest", u64(session) + b"\x01" + u64(1000) + b"short")
        a.send(protocol.CALL, 0xDEADBEEF, b"")
        a.call("C_GetSlotList", u64(1) + b"\x00" + u64(0) + b"junk")
        # Another client: a's session and a's session objects are not b's; a holds the login on the
        # slot, so b's own session is public until b logs in with the same PIN.
        b.call("C_GenerateRandom", u64(session) + b"\x01" + u64(8))
        other = ulong_out(b.call("C_OpenSession", u64(slot, 6) + b"\x01" + u64(0)))
        b.call("C_GetSessionInfo", u64(other) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        b.call("C_EncryptInit", u64(other) + mechanism(Mechanism.AES_ECB) + u64(wrapping))
        b.call("C_GetAttributeValue", u64(other, target) + template_io((Attribute.CLASS, 8)))
        b.call("C_Login", u64(other, 1) + ulong_in(USER_PIN.encode()))
        b.call("C_GetSessionInfo", u64(other) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        b.call("C_WrapKey", u64(other) + kwp + u64(wrapping, target) + b"\x03" + u64(40))
        b.call("C_Logout", u64(other))
        b.call("C_GetSessionInfo", u64(other) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        a.call("C_CloseSession", u64(session))
        a.call("C_GetSessionInfo", u64(session) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        b.call("C_GetSessionInfo", u64(other) + b"\x01" + u64(SIZES["CK_SESSION_INFO"]))
        frames = a.frames + b.frames
    finally:
        a.close()
        b.close()
    # C_GenerateRandom into no buffer answers rv and nothing random; every other reply is exact.
    return frames


def answered_counts(log: str, prefix: str = "") -> list[tuple[int, int]]:
    """(calls answered in C, calls) of each connection of this process the log reports as ended
    (pkcs11-tool's connections, which end on their own time, are another pid)."""
    pattern = rf"{prefix}.*connection of client pid {os.getpid()}: the C loop answered (\d+) of (\d+) calls"
    return [(int(n), int(m)) for n, m in re.findall(pattern, log)]


@pytest.fixture(scope="module")
def servers():
    """(C loop server, Python path server, token label) over copies of one kmdata."""
    first = new_server(workers=1)
    label = init_token(first)
    first.terminate()
    work = Path(tempfile.mkdtemp(prefix="softshield-hs-py-"))
    shutil.copytree(first.kmdata, work / "kmdata")
    python_only = Server(work, workers=1)
    python_only.env["SOFTSHIELD_HARDSERVER_C_PATH"] = "0"
    first.start()
    python_only.start()
    yield first, python_only, label
    for server in (first, python_only):
        if server.alive():
            server.terminate()
        shutil.rmtree(server.work, ignore_errors=True)


def test_c_path_replies_equal_python_path(servers) -> None:
    with_c, python_only, label = servers
    expected = conversation(python_only, label)
    seen = len(with_c.log_text())
    got = conversation(with_c, label)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"reply {i} differs: C loop {g!r}, Python path {e!r}"
    # The conversation did take both paths (each connection logs its count as it ends), and the
    # reference server never ran the C loop.
    deadline = time.monotonic() + 30
    while len(answered_counts(with_c.log_text()[seen:])) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = with_c.log_text()[seen:]
    counts = answered_counts(log)
    assert len(counts) == 2, log
    assert sum(n for n, _ in counts) >= 25 and all(n < m for n, m in counts), counts
    assert "C per-call path off" in python_only.log_text()
    assert not re.search(r"answered [1-9]\d* of", python_only.log_text())


def test_every_function_has_one_path() -> None:
    """The hot calls are answered in C; whatever changes per-client state takes the Python path."""
    by_name = {p.name: routes.python_reason(p) for p in plans(read_functions())}
    for name in ("C_WrapKey", "C_Encrypt", "C_EncryptInit", "C_Decrypt", "C_Sign", "C_SignInit", "C_Verify",
                 "C_Digest", "C_GenerateRandom", "C_GetAttributeValue", "C_FindObjectsInit", "C_FindObjects",
                 "C_GetSessionInfo", "C_GetInfo"):
        assert by_name[name] is None, name
    for name in set(HOOKS) - {"C_FindObjects"}:  # C_FindObjects: C unless session objects exist
        assert by_name[name] is not None, name
    for name in ("C_GenerateKey", "C_UnwrapKey", "C_CreateObject", "C_DestroyObject", "C_LoginBegin",
                 "C_EncryptMessage", "C_MessageEncryptInit"):
        assert by_name[name] is not None, name


def test_workers_answer_in_c() -> None:
    """A worker process of a several-worker server runs the C loop too (the dispatcher hands it the
    connection's descriptor, the worker answers HELLO and serves it as the single process does)."""
    server = new_server(workers=2)
    try:
        label = init_token(server)
        seen = len(server.log_text())
        conversation(server, label)
        deadline = time.monotonic() + 30
        while len(answered_counts(server.log_text()[seen:])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.log_text()[seen:]
        counts = answered_counts(log, r"hardserver worker \d+ DEBUG ")
        assert len(counts) == 2 and sum(n for n, _ in counts) >= 25, log
    finally:
        server.terminate()
        shutil.rmtree(server.work, ignore_errors=True)


class Keeper:
    """Connections of one client token: one kept open (the client's sessions live while it does), and
    a fresh one per fuzzed frame, since a refused frame may close its connection."""

    def __init__(self, server: Server, token: bytes) -> None:
        self.server, self.token = server, token
        self.main = Peer(server, token)

    def one(self, name: str, payload: bytes) -> tuple[int, bytes] | str:
        peer = Peer(self.server, self.token)
        try:
            return peer.call(name, payload)
        except (AssertionError, OSError) as exc:  # closed after an ERROR frame, or before answering
            return f"closed: {type(exc).__name__}"
        finally:
            peer.close()


def _mutations(payload: bytes, rng) -> list[bytes]:
    out = []
    for _ in range(12):
        data = bytearray(payload)
        kind = rng.randrange(4)
        if kind == 0 and data:  # one byte changed
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1 and data:  # a u64 field set to a boundary value
            at = rng.randrange(max(1, len(data) - 7))
            data[at:at + 8] = rng.choice((0, 1, 7, 8, 23, 24, 48, 0xFFFFFFFF, 2**63, 2**64 - 1)).to_bytes(8, "little")
        elif kind == 2:  # cut short
            del data[rng.randrange(len(data) + 1):]
        else:  # bytes appended
            data += bytes(rng.randrange(1, 24))
        out.append(bytes(data))
    return out


def test_c_path_refuses_and_answers_as_python_path_on_mutated_frames(servers) -> None:
    """Each byte-level mutation of well-formed calls (lengths, counts, flags, offsets, cut short,
    extended) gets the same reply from the C loop as from the Python path, or closes both."""
    import random

    with_c, python_only, label = servers
    results = []
    for server in (python_only, with_c):
        rng = random.Random(20)
        keeper = Keeper(server, b"f" * 16)
        a = keeper.main
        # The length query first, as PKCS#11 clients make it: only it may show slots another process
        # (here: pkcs11-tool, perhaps through another worker) made since this module last looked.
        a.call("C_GetSlotList", u64(1) + b"\x02" + u64(0))
        slots = a.call("C_GetSlotList", u64(1) + b"\x03" + u64(16))
        slot = None
        for i in range(struct.unpack_from("<Q", slots[1], 8)[0]):
            candidate = struct.unpack_from("<Q", slots[1], 17 + 8 * i)[0]
            info = a.call("C_GetTokenInfo", u64(candidate) + b"\x01" + u64(SIZES["CK_TOKEN_INFO"]))
            if info[1][9:41].decode().rstrip() == label:
                slot = candidate
        session = ulong_out(a.call("C_OpenSession", u64(slot, 6) + b"\x01" + u64(0)))
        a.call("C_Login", u64(session, 1) + ulong_in(USER_PIN.encode()))
        key = ulong_out(a.call("C_CreateObject", u64(session) + secret(
            WRAPPING_VALUE, (Attribute.WRAP, TRUE), (Attribute.ENCRYPT, TRUE), (Attribute.EXTRACTABLE, TRUE),
            (Attribute.WRAP_TEMPLATE, b"")) + b"\x01" + u64(0)))
        gcm = u64(0, 12, 96, 0, 5, 128)
        oaep = u64(Mechanism.SHA256, 2, 1, 0, 0)
        base = [
            ("C_WrapKey", u64(session) + mechanism(Mechanism.AES_KEY_WRAP_KWP) + u64(key, key) + b"\x03" + u64(64)),
            ("C_EncryptInit", u64(session) + mechanism(
                Mechanism.AES_GCM, node(gcm, (0, node(bytes(range(12)))), (24, node(b"hello"))), 48) + u64(key)),
            ("C_WrapKey", u64(session) + mechanism(0x1054, node(u64(256, 0), (8, node(oaep))), 16)
             + u64(key, key) + b"\x03" + u64(512)),
            ("C_GetAttributeValue", u64(session, key) + template_io(
                (Attribute.CLASS, 8), (Attribute.LABEL, None), (Attribute.VALUE, 32), (Attribute.WRAP_TEMPLATE, None))),
            ("C_GetAttributeValue", u64(session, key) + b"\x01" + u64(1) + u64(Attribute.WRAP_TEMPLATE) + b"\x03"
             + u64(24) + b"\x01" + u64(1) + u64(Attribute.CLASS) + b"\x01" + u64(8)),
            ("C_FindObjectsInit", u64(session) + template((Attribute.LABEL, b"x"), (Attribute.CLASS, u64(4)))),
            ("C_FindObjects", u64(session) + b"\x01" + u64(4) + b"\x01" + u64(0)),
            ("C_DigestInit", u64(session) + mechanism(Mechanism.SHA256)),
            ("C_Digest", u64(session) + ulong_in(b"abc") + b"\x03" + u64(32)),
            ("C_GetSessionInfo", u64(session) + b"\x01" + u64(SIZES["CK_SESSION_INFO"])),
            ("C_InitToken", u64(slot) + ulong_in(b"1234") + b"\x01" + u64(32) + b" " * 32),
        ]
        replies = []
        for name, payload in base:
            for mutated in _mutations(payload, rng):
                replies.append(keeper.one(name, mutated))
        a.close()
        results.append(replies)
    expected, got = results
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"mutation {i}: C loop {g!r}, Python path {e!r}"
