"""Shared set-up of the network tests: a hardserver listening on 127.0.0.1 (a free port) over mutual TLS,
client hosts as separate kmdata folders, and the commands a user runs (anonkneti, nethsmenroll,
hardserver permit, rfs-sync)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRONT_SO = ROOT / "build" / "libsoftshield-pkcs11.so"
SERVER_SO = ROOT / "build" / "libsoftshield-embedded.so"
PY312 = ROOT / ".venv312" / "bin" / "python"
HASH = re.compile(r"^[0-9a-f]{40}$")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def softshield(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "softshield_cli.main", *args], cwd=ROOT, capture_output=True,
                            text=True, env=env or os.environ.copy(), timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"softshield {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


class NetServer:
    """`softshield hardserver --listen 127.0.0.1:PORT` on its own kmdata and socket."""

    def __init__(self, work: Path, workers: int = 1, rfs: bool = False) -> None:
        self.work = work
        self.kmdata = work / "module-kmdata"
        self.socket = work / "run" / "hardserver.sock"
        self.log = work / "hardserver.log"
        self.workers = workers
        self.rfs = rfs
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "NFAST_KMDATA": str(self.kmdata), "SOFTSHIELD_HARDSERVER": str(self.socket),
                    "SOFTSHIELD_HARDSERVER_AUTOSTART": "0"}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.kmdata.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "a")
        command = [sys.executable, "-m", "softshield_cli.main", "hardserver", "--socket", str(self.socket),
                   "--kmdata", str(self.kmdata), "--library", str(SERVER_SO), "--workers", str(self.workers),
                   "--listen", self.address, "--log-level", "debug", *(["--rfs"] if self.rfs else [])]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hardserver exited with {self.proc.returncode}:\n{self.log.read_text()}")
            text = self.log.read_text()
            ready = len(set(re.findall(r"worker (\d+) \(pid \d+\) takes clients", text)))
            if f"listening on {self.address}" in text and f"listening on {self.socket}" in text and \
                    (self.workers == 1 or ready == self.workers):
                return
            time.sleep(0.1)
        raise AssertionError(f"hardserver did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def log_text(self) -> str:
        return self.log.read_text()

    def wait_for_log(self, pattern: str, limit: float = 10) -> str:
        """The first log line matching `pattern` (a regex), waiting for the server to write it."""
        deadline = time.monotonic() + limit
        while True:
            for line in self.log_text().splitlines():
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r}:\n{self.log_text()}")
            time.sleep(0.05)

    def identity(self) -> tuple[str, str]:
        """(ESN, KNETI hash), as anonkneti prints them on the module's host."""
        esn, kneti = softshield("anonkneti", "--kmdata", str(self.kmdata), env=self.env).stdout.split()
        return esn, kneti

    def permit(self, key_hash: str, *options: str) -> str:
        return softshield("hardserver", "permit", "--kmdata", str(self.kmdata), key_hash, *options, env=self.env).stdout


@dataclass
class ClientHost:
    """A client host: its own kmdata (its config and client key) and the environment its programs get."""

    kmdata: Path
    server: NetServer
    key_hash: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NFAST_KMDATA": str(self.kmdata), "SOFTSHIELD_HARDSERVER": f"tls://{self.server.address}",
                "SOFTSHIELD_HARDSERVER_AUTOSTART": "0", "SOFTSHIELD_HARDSERVER_TIMEOUT": "60"}

    @property
    def local_env(self) -> dict[str, str]:
        """The host's own tools on its own kmdata (a module of its own, as another module of the world)."""
        env = {k: v for k, v in self.env.items() if k != "SOFTSHIELD_HARDSERVER"}
        return {**env, "SOFTSHIELD_MODE": "embedded"}

    def enroll(self, *options: str) -> str:
        esn, kneti = self.server.identity()
        out = softshield("nethsmenroll", *options, self.server.address, esn, kneti, env=self.env).stdout
        self.key_hash = re.search(r"client key hash: ([0-9a-f]{40})", out).group(1)
        return out

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return softshield(*args, env=self.env, check=check)


def pkcs11_tool(host: ClientHost, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool (Debian package opensc) is not installed; scripts/setup.sh installs it")
    result = subprocess.run([tool, "--module", str(FRONT_SO), *args], capture_output=True, env=host.env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"pkcs11-tool {' '.join(args)} failed:\n{result.stdout!r}\n{result.stderr!r}")
    return result


def new_client(root: Path, server: NetServer, name: str) -> ClientHost:
    kmdata = root / name
    kmdata.mkdir(parents=True)
    return ClientHost(kmdata, server)


def start_server(workdir: Path, name: str, workers: int = 1, rfs: bool = False) -> NetServer:
    if not FRONT_SO.is_file() or not SERVER_SO.is_file():
        pytest.fail(f"build the libraries first (make build): {FRONT_SO}, {SERVER_SO}")
    work = workdir / name
    work.mkdir()
    server = NetServer(work, workers=workers, rfs=rfs)
    server.start()
    return server
