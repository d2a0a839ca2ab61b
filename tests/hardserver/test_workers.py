"""A hardserver with two workers (pkcs11_shim.hardserver.dispatch): each client process on one
worker with all its connections, clients spread over workers, token objects and PIN counters shared
through kmdata, logins and sessions per worker, and a worker that dies costs only its own clients.

Each test has its own server, so that which worker is least loaded is known: a client that arrives
while one worker serves another client goes to the other worker."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hsenv import ROOT, SERVER_SO, Server, init_token, new_server, run_worker, worker
from p11ctypes import CK_ATTRIBUTE, CK_SESSION_INFO, RawClient
from pkcs11_shim.constants import Attribute, CKR, SessionState, UserType

ulong = ctypes.c_ulong


@pytest.fixture
def two_workers():
    srv = new_server(workers=2)
    yield srv
    if srv.alive():
        srv.terminate()
    shutil.rmtree(srv.work, ignore_errors=True)


def _kept(server: Server, token: str, label: str) -> tuple[subprocess.Popen, str]:
    """A client that made the token key `label` and stays connected: (its process, its ciphertext)."""
    proc = worker(server, "3.12", "keep", token, label, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    ciphertext = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
    return proc, ciphertext


def _release(proc: subprocess.Popen) -> None:
    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0


def test_two_clients_land_on_two_workers_and_share_token_objects(two_workers: Server) -> None:
    server = two_workers
    token = init_token(server)
    a, made = _kept(server, token, "made-on-a")
    try:
        b = worker(server, "3.13", "encrypt", token, "made-on-a", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        found, err = b.communicate(timeout=120)
        assert b.returncode == 0, err
        # B is a client of the other worker, whose module finds A's token key in kmdata: the same
        # key, so the same ciphertext of the same block under the same IV.
        assert {server.worker_of(a.pid), server.worker_of(b.pid)} == {0, 1}
        assert len(made) == 32 and found.strip() == made
    finally:
        _release(a)
    log = server.log_text()
    assert "worker 0 (pid" in log and "worker 1 (pid" in log


def test_a_clients_threads_and_connections_stay_on_one_worker(two_workers: Server) -> None:
    server = two_workers
    token = init_token(server)
    run_worker(server, "3.12", "genkey", token, "pool-aes")
    out = run_worker(server, "3.12", "pool", token, "pool-aes", "120")
    assert out.startswith("pool ok ")
    pid = int(out.split()[2])
    handed = re.findall(rf"connection \d+ of client pid {pid} to worker (\d+)", server.log_text())
    # The client library opened several connections for the pool's threads, each handed to the one
    # worker that holds the client's session.
    assert len(handed) >= 2, server.log_text()
    assert set(handed) == {str(server.worker_of(pid))}
    assert len(re.findall(rf"client pid {pid} on worker", server.log_text())) == 1


def _session_info(raw: RawClient, session: int) -> int:
    info = CK_SESSION_INFO()
    assert raw.lib.C_GetSessionInfo(ulong(session), ctypes.byref(info)) == CKR.OK
    return info.state


def _private_objects(raw: RawClient, session: int) -> list[int]:
    for name in ("C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_GetAttributeValue", "C_Login"):
        getattr(raw.lib, name).restype = ulong
    true = ctypes.c_ubyte(1)
    template = CK_ATTRIBUTE(Attribute.PRIVATE, ctypes.cast(ctypes.byref(true), ctypes.c_void_p), 1)
    assert raw.lib.C_FindObjectsInit(ulong(session), ctypes.byref(template), ulong(1)) == CKR.OK
    handles, count = (ulong * 64)(), ulong(0)
    assert raw.lib.C_FindObjects(ulong(session), handles, ulong(64), ctypes.byref(count)) == CKR.OK
    assert raw.lib.C_FindObjectsFinal(ulong(session)) == CKR.OK
    return list(handles[:count.value])


def test_a_login_on_one_worker_does_not_reach_the_other(two_workers: Server) -> None:
    server = two_workers
    token = init_token(server)
    a, _ = _kept(server, token, "private-on-a")  # logged in as the user, holding a private token key
    raw = RawClient()
    try:
        assert raw.initialize(server) == CKR.OK
        rv, session = raw.open_session(raw.slot_of(token))
        assert rv == CKR.OK
        assert server.worker_of(os.getpid()) != server.worker_of(a.pid)
        # This worker's module is not logged in: a public session that finds no private object.
        assert _session_info(raw, session) == SessionState.RW_PUBLIC_SESSION
        assert _private_objects(raw, session) == []
        # PIN counters are the token's, in kmdata: a wrong PIN here is refused by this worker's
        # module (and counted for the token), the right one logs this client in and shows the key.
        assert raw.lib.C_Login(ulong(session), ulong(UserType.USER), b"0000", ulong(4)) == CKR.PIN_INCORRECT
        assert raw.lib.C_Login(ulong(session), ulong(UserType.USER), b"1234", ulong(4)) == CKR.OK
        assert len(_private_objects(raw, session)) == 1
    finally:
        raw.finalize()
        _release(a)


def test_a_dead_worker_costs_only_its_clients(two_workers: Server) -> None:
    server = two_workers
    token = init_token(server)
    procs = [worker(server, version, "wait", token, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE) for version in ("3.12", "3.13")]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
    victim, survivor = procs
    index = server.worker_of(victim.pid)
    assert server.worker_of(survivor.pid) == 1 - index
    dead = server.worker_pids()[index]
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while server.worker_pids()[index] == dead and time.monotonic() < deadline:
        time.sleep(0.1)
    # The dispatcher says so and starts another worker in its place; the server keeps serving.
    assert server.worker_pids()[index] != dead
    assert re.search(rf"worker {index} \(pid {dead}\) died \(killed by SIGKILL\): its 1 client\(s\) lost their "
                     r"sessions; starting another", server.log_text())
    assert server.alive()
    out, err = victim.communicate("go\n", timeout=60)
    # Its connection died with the worker: DEVICE_REMOVED; the retry reaches a module that never
    # issued that session handle (as after a server restart).
    assert out.split() == ["DeviceRemoved", "SessionHandleInvalid"], err
    out, err = survivor.communicate("go\n", timeout=60)
    assert out.split() == ["ok", "ok"], err


def test_sigterm_stops_every_worker(two_workers: Server) -> None:
    server = two_workers
    token = init_token(server)
    holders = [worker(server, "3.12", "hold", token, "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(2)]
    try:
        for proc in holders:
            assert proc.stdout.readline().strip() == "ready"
        assert {server.worker_of(p.pid) for p in holders} == {0, 1}
        workers = server.worker_pids()
        assert server.terminate() == 0
    finally:
        for proc in holders:
            proc.kill()
            proc.wait(timeout=30)
    log = server.log_text()
    # Each worker closed its own client's two sessions and finalized its module.
    for proc in holders:
        assert f"client pid {proc.pid} gone: 2 session(s) closed" in log
    assert re.findall(rf"hardserver worker (\d) INFO module finalized \(rv {CKR.OK:#x}\)", log) in (["0", "1"], ["1", "0"])
    assert "hardserver stopped (2 workers)" in log
    assert not server.socket.exists()
    for pid in workers.values():
        assert not os.path.exists(f"/proc/{pid}")


def _softshield_hardserver(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softshield_cli.main", "hardserver", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, env, message", [
    (["--workers", "0"], {}, "--workers 0: give 1 or more"),
    ([], {"SOFTSHIELD_HARDSERVER_WORKERS": "many"},
     "SOFTSHIELD_HARDSERVER_WORKERS=many is not a number of workers (1 or more)"),
])
def test_a_bad_worker_count_is_one_line(tmp_path, args: list[str], env: dict[str, str], message: str) -> None:
    done = _softshield_hardserver("--socket", str(tmp_path / "run" / "hs.sock"), *args, **env)
    assert done.returncode != 0
    assert done.stderr.strip() == f"softshield hardserver: {message}"
    assert not (tmp_path / "run").exists()


def test_worker_count_from_cknfastrc(tmp_path) -> None:
    rc = tmp_path / "cknfastrc"
    rc.write_text("SOFTSHIELD_HARDSERVER_WORKERS = 3\n")
    sock = tmp_path / "run" / "hs.sock"
    log = tmp_path / "hs.log"
    env = {k: v for k, v in os.environ.items() if k != "SOFTSHIELD_HARDSERVER_WORKERS"}
    env.update(SOFTSHIELD_CKNFASTRC=str(rc), NFAST_KMDATA=str(tmp_path / "kmdata"))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "softshield_cli.main", "hardserver", "--socket", str(sock)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert f"hardserver listening on {sock} (module {SERVER_SO}, 3 workers)" in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert "hardserver stopped (3 workers)" in log.read_text()
