"""Shared helpers for the ecosystem tests: the tools people already use (OpenSSL's pkcs11 engine, p11-kit,
GnuTLS p11tool, pkcs11-tool, python-pkcs11, our own CLI) driving the real .so, on one throw-away
kmdata (tests/pkcs11/p11env) and a token made the SoftHSM2 way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))

from p11env import KMDATA, ROOT, SO, SO_PIN, USER_PIN, init_token, pkcs11_tool  # noqa: E402,F401

ENGINE = Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so")
P11_KIT_PROXY = Path("/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so")


def run(*argv: str, env: dict | None = None, timeout: float = 60, check: bool = True,
        cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            env={**os.environ, **(env or {})}, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def softshield(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "softshield_cli.main", *args, env={"SOFTSHIELD_PKCS11_LIB": str(SO), **(env or {})},
               check=check, cwd=ROOT)
