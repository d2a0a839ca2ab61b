"""A forked child is a new application (PKCS#11 3.0 §5.1.2): until it calls C_Initialize itself, every
call that needs the library answers CKR_CRYPTOKI_NOT_INITIALIZED, and its own C_Initialize then
succeeds with none of the parent's sessions. The library tells the child apart by the fork
generation native/forks.h keeps, which a C host's own fork() (libc, here through ctypes) moves on
as Python's os.fork does."""

from __future__ import annotations

import ctypes
import os

import pytest
from pkcs11_shim.constants import CKR


def _random(raw, session_handle: int) -> int:
    out = ctypes.create_string_buffer(32)
    return raw.C_GenerateRandom(ctypes.c_ulong(session_handle), out, ctypes.c_ulong(32))


def _in_child(fork: str, child) -> list[int]:
    """The return codes `child()` gives in a forked child, sent back over a pipe."""
    read, write = os.pipe()
    pid = os.fork() if fork == "os.fork" else ctypes.CDLL(None, use_errno=True).fork()
    if pid == 0:  # pragma: no cover - the child: no pytest teardown
        try:
            os.close(read)
            os.write(write, b"".join(rv.to_bytes(8, "little") for rv in child()))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


@pytest.mark.parametrize("fork", ["os.fork", "libc fork"])
def test_a_forked_child_must_initialize_before_it_draws_random(raw, session, fork: str) -> None:
    handle = session.handle
    assert _random(raw, handle) == CKR.OK

    def child() -> list[int]:
        info = (ctypes.c_ulong * 4)()
        before = [_random(raw, handle), raw.C_GetSessionInfo(ctypes.c_ulong(handle), info)]
        initialized = raw.C_Initialize(None)
        # The child's own library holds none of the parent's sessions.
        return before + [initialized, _random(raw, handle), raw.C_Finalize(None)]

    assert _in_child(fork, child) == [CKR.CRYPTOKI_NOT_INITIALIZED, CKR.CRYPTOKI_NOT_INITIALIZED, CKR.OK,
                                      CKR.SESSION_HANDLE_INVALID, CKR.OK]
    assert _random(raw, handle) == CKR.OK  # the parent's library and session are untouched


@pytest.mark.parametrize("fork", ["os.fork", "libc fork"])
def test_a_grandchild_is_refused_by_its_parents_library(raw, session, fork: str) -> None:
    """A child that initialised, then forked: its own child is a new application again."""
    handle = session.handle

    def child() -> list[int]:
        assert raw.C_Initialize(None) == CKR.OK
        return _in_child(fork, lambda: [raw.C_GetSessionInfo(ctypes.c_ulong(1), (ctypes.c_ulong * 4)())]) + \
            [raw.C_Finalize(None)]

    assert _in_child(fork, child) == [CKR.CRYPTOKI_NOT_INITIALIZED, CKR.OK]
    assert _random(raw, handle) == CKR.OK
