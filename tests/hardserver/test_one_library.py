"""One library for every host: build/libsoftshield-pkcs11.so embeds the module where the process has
no Python or exactly the module's own, forwards to the hardserver from any other Python, and starts
that server itself when none listens (native/front/front.c, native/client/autostart.c)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hsenv import ROOT, venv_python
from pkcs11_shim.constants import CKR

FRONT_SO = ROOT / "build" / "libsoftshield-pkcs11.so"
HOST = Path(__file__).with_name("ctypes_host.py")
EMBEDDED, FORWARDED = "softshield embedded", "softshield via hardserver"


class AutoWorld:
    """A kmdata folder and a private socket folder; whatever server a client starts there is stopped
    at the end."""

    def __init__(self) -> None:
        # sun_path holds 108 bytes: keep the socket path short.
        self.work = Path(tempfile.mkdtemp(prefix="ss-auto-"))
        self.run = self.work / "run"
        self.socket = self.run / "hardserver.sock"
        self.pid_file = self.run / "hardserver.pid"
        self.log = self.run / "hardserver.log"
        (self.work / "kmdata").mkdir()
        # The server's worker count may come from the environment (the suite runs with any count).
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SOFTSHIELD_") or k == "SOFTSHIELD_HARDSERVER_WORKERS"}
        self.env.update({"NFAST_KMDATA": str(self.work / "kmdata"), "SOFTSHIELD_HARDSERVER": str(self.socket),
                         "SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT": "120", "XDG_RUNTIME_DIR": str(self.work / "xdg")})

    def host(self, python: str | Path, **extra: str) -> tuple[dict, str, float]:
        """ctypes_host.py under `python`; (its JSON, its stderr, wall seconds)."""
        env = {**self.env, **extra}
        start = time.monotonic()
        proc = subprocess.run([str(python), str(HOST), str(FRONT_SO)], env=env, capture_output=True, text=True,
                              timeout=60)
        elapsed = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout), proc.stderr, elapsed

    def server_pid(self) -> int:
        return int(self.pid_file.read_text())

    def worker_pids(self) -> list[int]:
        """The worker processes the server's log names (none when one process serves alone)."""
        text = self.log.read_text() if self.log.exists() else ""
        return [int(pid) for pid in re.findall(r"worker \d+ \(pid (\d+)\) takes clients", text)]

    def listening_lines(self) -> int:
        return self.log.read_text().count("hardserver listening on") if self.log.exists() else 0

    def stop(self) -> None:
        if self.pid_file.exists():
            try:
                os.kill(self.server_pid(), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["pkill", "-f", f"--socket {self.socket}"], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def world():
    w = AutoWorld()
    yield w
    w.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_other_python_forwards_to_a_server_it_starts(world: AutoWorld, version: str) -> None:
    result, stderr, _ = world.host(venv_python(version))
    assert result["python"] == version
    assert (result["initialize"], result["info"], result["slot_list"], result["finalize"]) == (CKR.OK,) * 4
    assert result["description"] == FORWARDED
    assert result["slots"] == 2
    assert stderr == ""
    pid = world.server_pid()
    assert _alive(pid)
    assert world.listening_lines() == 1
    # A second process finds the server running: no second start, and the answer is fast.
    again, _, _ = world.host(venv_python(version))
    assert again["initialize"] == CKR.OK and world.server_pid() == pid and world.listening_lines() == 1
    assert again["seconds"] < 0.5


def test_own_python_embeds(world: AutoWorld) -> None:
    env = {k: v for k, v in world.env.items() if k != "SOFTSHIELD_HARDSERVER"}
    world.env = env
    result, stderr, _ = world.host(sys.executable)
    assert result["python"] == "%d.%d" % sys.version_info[:2]
    assert (result["initialize"], result["description"], result["slots"]) == (CKR.OK, EMBEDDED, 2)
    assert not world.run.exists() and not (world.work / "xdg").exists()  # no server, no socket folder


def test_c_host_embeds_unless_told(world: AutoWorld) -> None:
    tool = shutil.which("pkcs11-tool")
    assert tool, "pkcs11-tool (opensc) is installed by scripts/setup.sh"
    env = {k: v for k, v in world.env.items() if k != "SOFTSHIELD_HARDSERVER"}
    shown = subprocess.run([tool, "--module", str(FRONT_SO), "--show-info"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert f"Library          {EMBEDDED}" in shown.stdout, shown.stdout + shown.stderr
    forced = subprocess.run([tool, "--module", str(FRONT_SO), "--show-info"], capture_output=True, text=True,
                            env={**env, "SOFTSHIELD_MODE": "hardserver"}, timeout=60)
    assert f"Library          {FORWARDED}" in forced.stdout, forced.stdout + forced.stderr
    world.pid_file = world.work / "xdg" / "softshield" / "hardserver.pid"
    assert _alive(world.server_pid())


def test_embedded_mode_is_refused_inside_another_python(world: AutoWorld) -> None:
    result, stderr, _ = world.host(venv_python("3.12"), SOFTSHIELD_MODE="embedded")
    assert result["initialize"] == CKR.GENERAL_ERROR
    assert "SOFTSHIELD_MODE=embedded, but this process already runs another Python" in stderr
    assert not world.pid_file.exists()


def test_unknown_mode_is_refused(world: AutoWorld) -> None:
    result, stderr, _ = world.host(venv_python("3.12"), SOFTSHIELD_MODE="sometimes")
    assert result["initialize"] == CKR.GENERAL_ERROR
    assert stderr.strip() == "softshield: SOFTSHIELD_MODE=sometimes is not one of embedded, hardserver, auto"


def test_racing_first_clients_start_one_server(world: AutoWorld) -> None:
    python = str(venv_python("3.12"))
    procs = [subprocess.Popen([python, str(HOST), str(FRONT_SO)], env=world.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert [r["initialize"] for r in results] == [CKR.OK] * 4
    assert world.listening_lines() == 1
    assert _alive(world.server_pid())


def test_killed_server_is_replaced_by_the_next_client(world: AutoWorld) -> None:
    python = venv_python("3.13")
    world.host(python)
    first = world.server_pid()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.socket.exists()  # left behind by the killed server
    result, _, _ = world.host(python)
    assert result["initialize"] == CKR.OK and result["description"] == FORWARDED
    assert world.server_pid() != first and _alive(world.server_pid())


def test_stale_socket_is_replaced(world: AutoWorld) -> None:
    world.run.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(world.socket))
    stale.close()  # the file stays, nobody listens
    result, _, _ = world.host(venv_python("3.12"))
    assert result["initialize"] == CKR.OK
    assert stat.S_ISSOCK(world.socket.lstat().st_mode) and _alive(world.server_pid())


@pytest.mark.parametrize("unsafe", ["other owner", "mode 0777"])
def test_unsafe_socket_folder_is_refused(world: AutoWorld, unsafe: str) -> None:
    world.run.mkdir(mode=0o700)
    if unsafe == "other owner":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(world.run, 65534, 65534)
    else:
        os.chmod(world.run, 0o777)
    result, stderr, elapsed = world.host(venv_python("3.12"))
    assert result["initialize"] == CKR.DEVICE_ERROR
    assert f"softshield: refusing the hardserver socket folder {world.run}" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not world.pid_file.exists() and not world.socket.exists()
    assert elapsed < 5


def test_socket_of_another_user_is_refused(world: AutoWorld) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a socket of another user needs root")
    world.run.mkdir(mode=0o700)
    theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.bind(str(world.socket))
    theirs.listen(1)
    os.chown(world.socket, 65534, 65534)
    try:
        result, stderr, _ = world.host(venv_python("3.12"))
    finally:
        theirs.close()
    assert result["initialize"] == CKR.DEVICE_ERROR
    assert f"softshield: refusing {world.socket}" in stderr


@pytest.mark.parametrize("python", ["missing", "exits", "hangs"])
def test_server_that_cannot_start_fails_within_5_s(world: AutoWorld, python: str) -> None:
    fake = world.work / "fake-python"
    if python == "exits":
        fake.write_text("#!/bin/sh\necho 'no module named softshield_cli' >&2\nexit 1\n")
    elif python == "hangs":
        fake.write_text("#!/bin/sh\nexec sleep 30\n")
    if fake.exists():
        fake.chmod(0o755)
    result, stderr, elapsed = world.host(venv_python("3.12"), SOFTSHIELD_PYTHON=str(fake))
    assert result["initialize"] == CKR.DEVICE_ERROR
    assert elapsed < 5
    expected = {"missing": f"softshield: the hardserver exited before it listened (log: {world.log}): "
                           f"softshield: cannot execute {fake} (set SOFTSHIELD_PYTHON)",
                "exits": f"softshield: the hardserver exited before it listened (log: {world.log}): "
                         "no module named softshield_cli",
                "hangs": f"softshield: the hardserver did not start listening on {world.socket} in time"}[python]
    assert stderr.startswith(expected), stderr
    subprocess.run(["pkill", "-f", str(fake)], capture_output=True)


def test_autostart_can_be_turned_off(world: AutoWorld) -> None:
    result, stderr, _ = world.host(venv_python("3.12"), SOFTSHIELD_HARDSERVER_AUTOSTART="0")
    assert result["initialize"] == CKR.DEVICE_ERROR
    assert "no hardserver on" in stderr and "SOFTSHIELD_HARDSERVER_AUTOSTART is off" in stderr
    assert not world.pid_file.exists()


def test_started_server_exits_when_idle(world: AutoWorld) -> None:
    result, _, _ = world.host(venv_python("3.12"), SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT="1")
    assert result["initialize"] == CKR.OK
    pid = world.server_pid()
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert not world.socket.exists() and not world.pid_file.exists()
    assert "no client for 1 s: exiting" in world.log.read_text()
    _assert_every_module_finalized(world)


def test_mode_from_cknfastrc(world: AutoWorld, tmp_path: Path) -> None:
    rc = tmp_path / "cknfastrc"
    rc.write_text("# as nShield's cknfastrc\nSOFTSHIELD_MODE = hardserver\n")
    env = {k: v for k, v in world.env.items() if k != "SOFTSHIELD_HARDSERVER"}
    env["SOFTSHIELD_CKNFASTRC"] = str(rc)
    world.env = env
    world.socket = world.work / "xdg" / "softshield" / "hardserver.sock"
    world.pid_file = world.socket.with_name("hardserver.pid")
    result, _, _ = world.host(sys.executable)  # the module's own Python, forwarded because the file says so
    assert (result["initialize"], result["description"]) == (CKR.OK, FORWARDED)
    assert _alive(world.server_pid())


def _assert_every_module_finalized(world: AutoWorld) -> None:
    """Each worker (or the one process) closed its clients' sessions and finalized its module
    before the server exited, and no worker outlives it."""
    workers = world.worker_pids()
    expected = int(os.environ.get("SOFTSHIELD_HARDSERVER_WORKERS") or len(os.sched_getaffinity(0)))
    assert len(workers) == (expected if expected > 1 else 0)
    assert not [w for w in workers if _alive(w)]
    assert world.log.read_text().count(f"module finalized (rv {CKR.OK:#x})") == max(1, len(workers))


def _softshield(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softshield_cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


def test_hand_started_server_refuses_a_loose_folder(world: AutoWorld) -> None:
    world.run.mkdir(mode=0o777)
    os.chmod(world.run, 0o777)
    done = _softshield("hardserver", "--socket", str(world.socket), env=world.env)
    assert done.returncode != 0
    assert done.stderr.strip() == (f"softshield hardserver: refusing the socket folder {world.run} (owner uid {os.geteuid()}, "
                                   f"mode 0777): it must be a folder owned by uid {os.geteuid()} that nobody else "
                                   "can write")
    assert not world.socket.exists()


def test_stop_stops_the_server_and_says_when_there_is_none(world: AutoWorld) -> None:
    world.host(venv_python("3.12"))
    pid = world.server_pid()
    stopped = _softshield("hardserver", "--stop", "--socket", str(world.socket), env=world.env)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"hardserver {pid} on {world.socket} stopped"
    assert not _alive(pid) and not world.socket.exists() and not world.pid_file.exists()
    _assert_every_module_finalized(world)
    again = _softshield("hardserver", "--stop", "--socket", str(world.socket), env=world.env)
    assert again.returncode != 0
    assert again.stderr.strip() == f"softshield hardserver: no hardserver pid file at {world.pid_file}"
