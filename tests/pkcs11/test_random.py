"""C_GenerateRandom (PKCS#11 3.0 §5.19): the handler checks, the C entry point fills the caller's
buffer from the kernel (native/random_fill.h). A refused call leaves the buffer as it was."""

from __future__ import annotations

import ctypes

import pytest
from pkcs11_shim.constants import CKR


def _draw(raw, session_handle: int, size: int, length: int | None = None) -> tuple[int, bytes]:
    out = ctypes.create_string_buffer(b"\xaa" * size, size)
    rv = raw.C_GenerateRandom(ctypes.c_ulong(session_handle), out, ctypes.c_ulong(size if length is None else length))
    return rv, out.raw


@pytest.mark.parametrize("size", [1, 32, 4096, 1 << 20])
def test_every_byte_asked_for_is_drawn(raw, session, size: int) -> None:
    draws = [_draw(raw, session.handle, size) for _ in range(3)]
    assert all(rv == CKR.OK for rv, _ in draws)
    values = [out for _, out in draws]
    if size >= 32:  # fresh bytes each call, no run of the 0xaa fill left (by chance: p < 2**-250)
        assert len(set(values)) == 3
        assert all(b"\xaa" * 32 not in out for out in values)


def test_a_refused_call_writes_nothing(raw, session) -> None:
    rv, out = _draw(raw, 0xFFFF_FFF0, 64)
    assert (rv, out) == (CKR.SESSION_HANDLE_INVALID, b"\xaa" * 64)


def test_a_prefix_only_is_written(raw, session) -> None:
    rv, out = _draw(raw, session.handle, 64, length=16)
    assert rv == CKR.OK and out[16:] == b"\xaa" * 48 and out[:16] != b"\xaa" * 16


def test_null_buffer(raw, session) -> None:
    assert raw.C_GenerateRandom(ctypes.c_ulong(session.handle), None, ctypes.c_ulong(0)) == CKR.OK
    assert raw.C_GenerateRandom(ctypes.c_ulong(session.handle), None, ctypes.c_ulong(8)) == CKR.ARGUMENTS_BAD
