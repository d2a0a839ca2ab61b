"""Server killed, restarted and stopped: clients fail with CKR_DEVICE_REMOVED or
CKR_SESSION_HANDLE_INVALID, never hang; SIGTERM closes sessions and finalizes the module."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from hsenv import SERVER_SO, init_token, new_server, worker
from p11ctypes import RawClient
from pkcs11_shim.constants import CKR


@pytest.fixture
def own_server():
    srv = new_server()
    yield srv
    if srv.alive():
        srv.kill()
    shutil.rmtree(srv.work, ignore_errors=True)


@contextlib.contextmanager
def raw_session(server, timeout: int = 20) -> Iterator[tuple[RawClient, int]]:
    """The client library in this process, with a session on a fresh token; finalized afterwards."""
    label = init_token(server)
    raw = RawClient()
    assert raw.initialize(server, timeout=timeout) == 0
    try:
        rv, handle = raw.open_session(raw.slot_of(label))
        assert rv == 0
        yield raw, handle
    finally:
        raw.finalize()


def test_server_killed_and_restarted(own_server) -> None:
    label = init_token(own_server)
    proc = worker(own_server, "3.12", "wait", label, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    line = proc.stdout.readline().strip()
    assert line == "ready", proc.communicate(timeout=30)
    own_server.kill()
    own_server.start()  # same socket, same kmdata, no memory of the old sessions
    start = time.monotonic()
    out, err = proc.communicate("go\n", timeout=60)
    # The pooled connection died with the server: DEVICE_REMOVED; the retry reaches the new server,
    # which never issued that handle.
    assert out.split() == ["DeviceRemoved", "SessionHandleInvalid"], err
    assert time.monotonic() - start < 30


def test_server_gone_fails_fast(own_server) -> None:
    with raw_session(own_server) as (raw, handle):
        own_server.kill()
        start = time.monotonic()
        assert raw.random(handle)[0] == CKR.DEVICE_REMOVED
        assert raw.random(handle)[0] == CKR.DEVICE_REMOVED  # reconnecting finds nobody
        assert time.monotonic() - start < 5
    # With no server at all, C_Initialize says so at once.
    assert raw.initialize(own_server) == CKR.DEVICE_ERROR


def test_wedged_server_times_out(own_server) -> None:
    """A server that stops answering (SIGSTOP) costs the client its timeout, not a hang."""
    with raw_session(own_server, timeout=2) as (raw, handle):
        own_server.pause()
        try:
            start = time.monotonic()
            assert raw.random(handle)[0] == CKR.DEVICE_REMOVED
            assert 1.5 < time.monotonic() - start < 10
        finally:
            own_server.resume()


def test_sigterm_closes_sessions_and_finalizes(own_server) -> None:
    label = init_token(own_server)
    proc = worker(own_server, "3.13", "hold", label, "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    assert own_server.terminate() == 0
    proc.kill()
    proc.wait(timeout=30)
    log = own_server.log_text()
    assert "2 session(s) closed" in log
    assert f"module finalized (rv {CKR.OK:#x})" in log
    assert not own_server.socket.exists()


def test_in_process_stays_the_default(own_server, tmp_path) -> None:
    """The in-process library ignores SOFTSHIELD_HARDSERVER: client mode is the client library's."""
    env = {**os.environ, "SOFTSHIELD_HARDSERVER": str(tmp_path / "nobody.sock"), "NFAST_KMDATA": str(tmp_path / "km")}
    out = subprocess.run([shutil.which("pkcs11-tool"), "--module", str(SERVER_SO), "--show-info"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "softshield" in out.stdout


def test_frame_limit_is_a_clean_error(own_server) -> None:
    """Beyond the 16 MiB frame limit a call fails with CKR_DEVICE_MEMORY, and the next one works."""
    import ctypes

    with raw_session(own_server) as (raw, handle):
        assert raw.random(handle, 20 << 20)[0] == CKR.DEVICE_MEMORY  # the reply could not carry it
        assert raw.random(handle, 32)[0] == CKR.OK
        raw.lib.C_SeedRandom.restype = ctypes.c_ulong
        big = ctypes.create_string_buffer(17 << 20)
        assert raw.lib.C_SeedRandom(ctypes.c_ulong(handle), big, ctypes.c_ulong(17 << 20)) == CKR.DEVICE_MEMORY  # never sent
        assert raw.random(handle, 32)[0] == CKR.OK
        assert own_server.alive()
