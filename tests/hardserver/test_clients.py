"""Client mode end to end: python-pkcs11 under Python 3.12 and 3.13 and pkcs11-tool share one
module through the hardserver; many clients at once; a client killed mid-operation."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hsenv import IV, Server, init_token, pkcs11_tool, run_worker, worker  # noqa: F401
from p11ctypes import RawClient

from pkcs11_shim.constants import CKR, UserType


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_python_pkcs11_mechanism_tour(server, token, version) -> None:
    out = run_worker(server, version, "tour", token)
    assert f"tour ok {version}" in out


def test_key_made_by_python_312_is_used_by_pkcs11_tool_and_313(server, token, tmp_path) -> None:
    ciphertext = run_worker(server, "3.12", "genkey", token, "shared-aes").strip()
    assert len(ciphertext) == 32
    listing = pkcs11_tool(server, "--token-label", token, "--login", "--pin", "1234", "--list-objects",
                          "--type", "secrkey").stdout
    assert "shared-aes" in listing
    # pkcs11-tool encrypts the same block with the same key and IV: the same ciphertext.
    (tmp_path / "zero").write_bytes(bytes(16))
    pkcs11_tool(server, "--token-label", token, "--login", "--pin", "1234", "--encrypt", "-m", "AES-CBC",
                "--iv", IV.hex(), "--label", "shared-aes", "-i", str(tmp_path / "zero"), "-o", str(tmp_path / "ct"))
    assert (tmp_path / "ct").read_bytes().hex() == ciphertext
    assert "stress ok" in run_worker(server, "3.13", "stress", token, "shared-aes", "2")


def test_eight_clients_at_once(server, token) -> None:
    run_worker(server, "3.12", "genkey", token, "stress-aes")
    procs = [worker(server, ("3.12", "3.13")[i % 2], "stress", token, "stress-aes", "15",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert rc == 0, f"{out}\n{err}"
        assert "stress ok" in out
    assert server.alive()


def test_client_killed_mid_operation_leaves_no_sessions(server, token) -> None:
    """The server closes a killed client's sessions, and its log line names the client's pid and how
    many it closed. (ulSessionCount counts the sessions of the module that answers, with several
    workers those of one worker's clients: the next test reads it with one worker.)"""
    proc = worker(server, "3.12", "hold", token, "3", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # inside its encrypt loop
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    gone = f"client pid {proc.pid} gone: 3 session(s) closed"
    deadline = time.monotonic() + 20
    while gone not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone in server.log_text()
    assert server.alive()
    # The token is usable (and logged out: the killed client held the only login).
    assert "tour ok" in run_worker(server, "3.13", "tour", token)


def test_session_count_follows_a_killed_client(one_module_server) -> None:
    """Seen from a client of the same module: the count rises by the sessions another client opens
    and falls back when it is killed (one worker, so that both clients share its module)."""
    server, token = one_module_server, init_token(one_module_server)
    raw = RawClient()
    assert raw.initialize(server) == 0
    try:
        slot = raw.slot_of(token)
        before = raw.session_count(slot)
        proc = worker(server, "3.12", "hold", token, "3", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "ready"
        assert raw.session_count(slot) == before + 3
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while raw.session_count(slot) != before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert raw.session_count(slot) == before
    finally:
        raw.finalize()


def test_threads_of_one_process_share_its_sessions(server, token) -> None:
    run_worker(server, "3.13", "genkey", token, "thread-aes")
    assert "threads ok" in run_worker(server, "3.13", "threads", token, "thread-aes", "20")


def test_login_is_joined_only_with_the_right_pin(server, token) -> None:
    """While another client holds the token's login, a second client joins it with the same PIN,
    is refused with a wrong one, and its C_Logout / C_CloseAllSessions leave the first client alone."""
    import ctypes

    raw = RawClient()
    assert raw.initialize(server) == CKR.OK
    so = raw.lib
    so.C_Login.restype = so.C_Logout.restype = so.C_CloseAllSessions.restype = ctypes.c_ulong
    proc = worker(server, "3.12", "hold", token, "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "ready"
        slot = raw.slot_of(token)
        rv, handle = raw.open_session(slot)
        assert rv == CKR.OK
        login = so.C_Login
        user = ctypes.c_ulong(UserType.USER)
        assert login(ctypes.c_ulong(handle), user, b"9999", ctypes.c_ulong(4)) == CKR.PIN_INCORRECT
        assert login(ctypes.c_ulong(handle), user, b"1234", ctypes.c_ulong(4)) == CKR.OK
        assert login(ctypes.c_ulong(handle), user, b"1234", ctypes.c_ulong(4)) == CKR.USER_ALREADY_LOGGED_IN
        assert so.C_Logout(ctypes.c_ulong(handle)) == CKR.OK
        assert so.C_Logout(ctypes.c_ulong(handle)) == CKR.USER_NOT_LOGGED_IN  # for this client
        before = raw.session_count(slot)
        assert so.C_CloseAllSessions(ctypes.c_ulong(slot)) == 0
        assert raw.session_count(slot) == before - 1  # only ours; the worker's two remain
        assert proc.poll() is None  # still encrypting
    finally:
        proc.kill()
        proc.wait(timeout=30)
        raw.finalize()


def test_mechanism_tour_with_the_spin_before_each_read_off() -> None:
    """SOFTSHIELD_SPIN_US=0 (native/spin_wait.h): client and server block in recv at once, and every
    answer is the same as with the spin (the tour above runs with the default)."""
    work = Path(tempfile.mkdtemp(prefix="softshield-hs-nospin-"))
    server = Server(work)
    server.env["SOFTSHIELD_SPIN_US"] = "0"
    server.start()
    try:
        assert "tour ok 3.12" in run_worker(server, "3.12", "tour", init_token(server))
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)
