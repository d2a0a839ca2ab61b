"""A forked child is a new application (PKCS#11 3.0 §5.1.2): until it calls C_Initialize itself, every
call that needs the library answers CKR_CRYPTOKI_NOT_INITIALIZED, and its own C_Initialize then
succeeds with none of the parent's sessions. The library tells the child apart by the fork
generation native/forks.h keeps, which a C host's own fork() (libc, here through ctypes) moves on
as Python's os.fork does."""

from __future__ import annotations

import ctypes

import pytest
from p11env import in_forked_child
from pkcs11_shim.constants import CKR


def _random(raw, session_handle: int) -> int:
    out = ctypes.create_string_buffer(32)
    return raw.C_GenerateRandom(ctypes.c_ulong(session_handle), out, ctypes.c_ulong(32))


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

    assert in_forked_child(fork, child) == [CKR.CRYPTOKI_NOT_INITIALIZED, CKR.CRYPTOKI_NOT_INITIALIZED, CKR.OK,
                                      CKR.SESSION_HANDLE_INVALID, CKR.OK]
    assert _random(raw, handle) == CKR.OK  # the parent's library and session are untouched


@pytest.mark.parametrize("fork", ["os.fork", "libc fork"])
def test_a_grandchild_is_refused_by_its_parents_library(raw, session, fork: str) -> None:
    """A child that initialised, then forked: its own child is a new application again."""
    handle = session.handle

    def child() -> list[int]:
        assert raw.C_Initialize(None) == CKR.OK
        return in_forked_child(fork, lambda: [raw.C_GetSessionInfo(ctypes.c_ulong(1), (ctypes.c_ulong * 4)())]) + \
            [raw.C_Finalize(None)]

    assert in_forked_child(fork, child) == [CKR.CRYPTOKI_NOT_INITIALIZED, CKR.OK]
    assert _random(raw, handle) == CKR.OK
