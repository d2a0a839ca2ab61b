"""Shared set-up for tests that drive the real .so: the library path, one throw-away kmdata for
the whole run, and the pkcs11-tool helpers that make tokens the way SoftHSM2 users do."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
SO = ROOT / "build" / "libsoftshield-pkcs11.so"

# The library reads NFAST_KMDATA at C_Initialize; set it before anything in this process loads it.
KMDATA = tempfile.mkdtemp(prefix="softshield-kmdata-")
os.environ["NFAST_KMDATA"] = KMDATA

SO_PIN = "12345678"
USER_PIN = "1234"
#: The value of the `kek` fixture's session AES-256 key, for tests that wrap with `cryptography` beside it.
KEK = bytes(range(32))


def pkcs11_tool(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool (Debian package opensc) is not installed; scripts/setup.sh installs it")
    result = subprocess.run([tool, "--module", str(SO), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"pkcs11-tool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def spare_slot(env: dict | None = None) -> int:
    """The slot offering an uninitialised token, as listed by pkcs11-tool."""
    out = pkcs11_tool("--list-slots", env=env).stdout
    slot = None
    for line in out.splitlines():
        if line.startswith("Slot "):
            slot = int(line.split("(")[1].split(")")[0], 16)
        elif "token state:   uninitialized" in line or "uninitialized" in line and slot is not None:
            return slot
    raise AssertionError(f"no uninitialised slot in:\n{out}")


def init_token(label: str | None = None, so_pin: str = SO_PIN, pin: str = USER_PIN,
               env: dict | None = None) -> str:
    """Initialise a fresh token the way SoftHSM2 users do, with pkcs11-tool; returns its label."""
    label = label or f"t-{uuid.uuid4().hex[:10]}"
    slot = spare_slot(env)
    pkcs11_tool("--init-token", "--slot", str(slot), "--label", label, "--so-pin", so_pin, env=env)
    pkcs11_tool("--init-pin", "--token-label", label, "--login", "--login-type", "so",
                "--so-pin", so_pin, "--pin", pin, env=env)
    return label


def in_forked_child(fork: str, child: Callable[[], list[int]]) -> list[int]:
    """The return codes `child()` gives in a child made by `fork` ("os.fork", or "libc fork" as a C host
    forks, through ctypes), sent back over a pipe."""
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
