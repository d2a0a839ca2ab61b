"""Shared helpers of the reliability tests (imported by name: `conftest` is not importable as a
module when every test folder has one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SO = ROOT / "build" / "libsoftshield-pkcs11.so"
PY = sys.executable
SO_PIN, USER_PIN = "12345678", "1234"


def child_env(kmdata: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CKNFAST_", "SOFTSHIELD_LOG", "NFAST_KMDATA"))}
    env["NFAST_KMDATA"] = str(kmdata)
    env.update(extra)
    return env


def p11cli(kmdata: Path, *args: str, timeout: float = 60, **extra: str):
    result = subprocess.run([PY, str(HERE / "p11cli.py"), *args], capture_output=True, text=True,
                            env=child_env(kmdata, **extra), timeout=timeout)
    assert result.returncode == 0, f"p11cli {args} failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)

