"""Shared set-up of the hardserver tests: a server subprocess on a throw-away socket and kmdata, the
client library, pkcs11-tool and python-pkcs11 (under Python 3.12 and 3.13, from scripts/setup.sh's
.venv312 / .venv313) driving it, and p11ctypes.RawClient, a ctypes view of the client library for exact return codes."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from p11ctypes import CLIENT_SO

ROOT = Path(__file__).resolve().parents[2]
SERVER_SO = ROOT / "build" / "libsoftshield-embedded.so"
SO_PIN, USER_PIN = "12345678", "1234"
IV = bytes(range(16))
CLIENT_SCRIPT = Path(__file__).with_name("client_worker.py")
VENVS = {"3.12": ROOT / ".venv312" / "bin" / "python", "3.13": ROOT / ".venv313" / "bin" / "python"}


def venv_python(version: str) -> Path:
    python = VENVS[version]
    if not python.is_file():
        if os.environ.get("CI"):  # CI provides every version (scripts/setup.sh): missing is a failure
            pytest.fail(f"no Python {version} venv at {python.parent.parent}: scripts/setup.sh did not make it")
        pytest.skip(f"no Python {version} venv with python-pkcs11 at {python.parent.parent}; "
                    "scripts/setup.sh creates it when python{version} is installed")
    return python


def default_workers() -> int:
    """The worker count a server started here gets: SOFTSHIELD_HARDSERVER_WORKERS (so the suite runs
    with any count), else one per core, as `softshield hardserver` chooses."""
    value = os.environ.get("SOFTSHIELD_HARDSERVER_WORKERS")
    return int(value) if value else len(os.sched_getaffinity(0))


class Server:
    """A `softshield hardserver` subprocess; restartable on the same socket and kmdata."""

    def __init__(self, work: Path, workers: int | None = None) -> None:
        self.work = work
        self.workers = workers or default_workers()
        self.kmdata = work / "kmdata"
        self.kmdata.mkdir(exist_ok=True)
        self.socket = work / "run" / "hardserver.sock"
        self.log = work / "hardserver.log"
        self.proc: subprocess.Popen | None = None
        self.stopped: list[int] = []
        # These tests start, stop and kill their own server: a client must never start another one.
        self.env = {**os.environ, "SOFTSHIELD_HARDSERVER": str(self.socket), "NFAST_KMDATA": str(self.kmdata),
                    "SOFTSHIELD_HARDSERVER_TIMEOUT": "120", "SOFTSHIELD_HARDSERVER_AUTOSTART": "0"}

    def start(self) -> None:
        log = open(self.log, "a")
        seen = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "softshield_cli.main", "hardserver", "--socket", str(self.socket),
             "--kmdata", str(self.kmdata), "--library", str(SERVER_SO), "--log-level", "debug",
             "--workers", str(self.workers)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hardserver exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if self._all_workers_ready(self.log.read_text()[seen:]):
                return
            time.sleep(0.1)
        raise AssertionError(f"hardserver did not start:\n{self.log.read_text()}")

    def _all_workers_ready(self, text: str) -> bool:
        """Listening, and with several workers every one taking clients (the dispatcher accepts once
        the first is ready): a test that places clients on workers needs them all."""
        if "listening on" not in text:
            return False
        ready = set(re.findall(r"worker (\d+) \(pid \d+\) takes clients", text))
        return self.workers == 1 or len(ready) == self.workers

    def worker_of(self, pid: int) -> int:
        """The worker the dispatcher gave the client process `pid` (its log line); 0 with one worker."""
        if self.workers == 1:
            return 0
        found = re.findall(rf"client pid {pid} on worker (\d+) \(pid \d+\)", self.log_text())
        assert found, f"no worker serves client pid {pid}:\n{self.log_text()}"
        return int(found[-1])

    def worker_pids(self) -> dict[int, int]:
        """worker index -> pid of the workers now taking clients (the latest of each index)."""
        return {int(i): int(pid) for i, pid in re.findall(r"worker (\d+) \(pid (\d+)\) takes clients", self.log_text())}

    def processes(self) -> list[int]:
        """The server's pids: the dispatcher (or the only process) and its workers."""
        assert self.proc is not None
        pids = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def pause(self, limit: float = 10) -> None:
        """SIGSTOP, returning once every server thread is stopped: kill() returns before a thread
        running on the other core has stopped, and that thread could still answer a request."""
        assert self.proc is not None
        self.stopped = self.processes()  # with workers, they answer the calls: stop them all
        for pid in self.stopped:
            os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            states = [_task_state(task) for pid in self.stopped for task in _tasks(pid)]
            if all(state in (None, "T", "t") for state in states):
                return
            time.sleep(0.01)
        raise AssertionError(f"server {self.proc.pid} did not stop within {limit}s")

    def resume(self) -> None:
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def log_text(self) -> str:
        return self.log.read_text()


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []


def _task_state(task: Path) -> str | None:
    """The state letter of /proc/<pid>/task/<tid>/stat (after the parenthesised name), or None for
    a thread that has just exited."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def pkcs11_tool(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool (Debian package opensc) is not installed; scripts/setup.sh installs it")
    result = subprocess.run([tool, "--module", str(CLIENT_SO), *args], capture_output=True, text=True,
                            env=server.env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"pkcs11-tool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def init_token(server: Server) -> str:
    """A fresh token made through the client library, the SoftHSM2 way; returns its label."""
    label = f"hs-{uuid.uuid4().hex[:8]}"
    slots = pkcs11_tool(server, "--list-slots").stdout
    slot = current = None
    for line in slots.splitlines():
        if line.startswith("Slot "):
            current = int(line.split("(")[1].split(")")[0], 16)
        if "uninitialized" in line and slot is None:
            slot = current
    assert slot is not None, slots
    pkcs11_tool(server, "--init-token", "--slot", str(slot), "--label", label, "--so-pin", SO_PIN)
    pkcs11_tool(server, "--init-pin", "--token-label", label, "--login", "--login-type", "so",
                "--so-pin", SO_PIN, "--pin", USER_PIN)
    return label


def worker(server: Server, version: str, *args: str, **popen) -> subprocess.Popen:
    """tests/hardserver/client_worker.py under python-pkcs11 of the given Python version (the numbers
    python-pkcs11 lacks from pkcs11_shim.constants and p11ctypes, which need nothing beyond python-pkcs11)."""
    env = {**server.env, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "vectors"), str(ROOT / "tests"), str(ROOT)])}
    return subprocess.Popen([str(venv_python(version)), str(CLIENT_SCRIPT), str(CLIENT_SO), *args],
                            env=env, text=True, **popen)


def run_worker(server: Server, version: str, *args: str, timeout: float = 120) -> str:
    proc = worker(server, version, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker {args} under {version} failed:\n{out}\n{err}"
    return out


def new_server(workers: int | None = None) -> Server:
    work = Path(tempfile.mkdtemp(prefix="softshield-hs-"))
    server = Server(work, workers)
    server.start()
    return server


def session_aes_key(so: ctypes.CDLL, session: int, value: bytes, extra: tuple) -> int:
    """A session AES key with CKA_VALUE `value` and the `extra` (type, bytes) attributes, made with
    C_CreateObject through `so`; its handle."""
    from p11ctypes import CK_ATTRIBUTE

    from pkcs11_shim.constants import CKR, Attribute, KeyType, ObjectClass

    pairs = [(Attribute.CLASS, ObjectClass.SECRET_KEY.to_bytes(8, "little")),
             (Attribute.KEY_TYPE, KeyType.AES.to_bytes(8, "little")), (Attribute.VALUE, value),
             (Attribute.TOKEN, b"\x00"), *extra]
    keep = [ctypes.create_string_buffer(v, len(v)) for _t, v in pairs]
    attrs = (CK_ATTRIBUTE * len(pairs))(*[CK_ATTRIBUTE(t, ctypes.cast(b, ctypes.c_void_p), len(v))
                                          for (t, v), b in zip(pairs, keep)])
    handle = ctypes.c_ulong(0)
    assert so.C_CreateObject(ctypes.c_ulong(session), attrs, ctypes.c_ulong(len(attrs)), ctypes.byref(handle)) == CKR.OK
    return handle.value


@contextmanager
def user_session(server: "Server", token: str, *functions: str) -> Iterator[tuple[ctypes.CDLL, int]]:
    """The client library in this process with a user session on `token` (whose login other clients
    of the module may already hold); `functions` return CK_RV. Finalized afterwards."""
    from p11ctypes import RawClient
    from pkcs11_shim.constants import CKR, UserType

    raw = RawClient()
    assert raw.initialize(server) == CKR.OK
    for name in ("C_Login", *functions):
        getattr(raw.lib, name).restype = ctypes.c_ulong
    try:
        rv, session = raw.open_session(raw.slot_of(token))
        assert rv == CKR.OK
        login = raw.lib.C_Login(ctypes.c_ulong(session), ctypes.c_ulong(UserType.USER), USER_PIN.encode(),
                                ctypes.c_ulong(len(USER_PIN)))
        assert login in (CKR.OK, CKR.USER_ALREADY_LOGGED_IN)
        yield raw.lib, session
    finally:
        raw.finalize()
