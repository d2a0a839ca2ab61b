"""Shared helpers for the Security World tests: a throw-away kmdata per test, the `softshield` CLI
and pkcs11-tool run as child processes against it (each child reads NFAST_KMDATA at start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SO = ROOT / "build" / "libsoftshield-pkcs11.so"
ACS_PINS = {"acs-1.card": "1111", "acs-2.card": "2222", "acs-3.card": "3333"}


class World:
    """One kmdata directory with its reader, and the commands run against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kmdata = root / "kmdata"
        self.local = self.kmdata / "local"
        self.reader = self.kmdata / "reader"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CKNFAST_", "NFAST_", "SOFTSHIELD_"))}
        self.env["NFAST_KMDATA"] = str(self.kmdata)
        self.env["SOFTSHIELD_CKNFASTRC"] = str(root / "no-cknfastrc")  # never the user's own file
        self.env["SOFTSHIELD_CONFIG"] = str(root / "no-config.toml")

    def pin_file(self, name: str, lines: dict[str, str]) -> Path:
        path = self.root / name
        path.write_text("".join(f"{card} {pin}\n" for card, pin in lines.items()))
        return path

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "softshield_cli.main", *args], capture_output=True,
                                text=True, cwd=ROOT, env={**self.env, **(env or {})}, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"softshield {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def tool(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        tool = shutil.which("pkcs11-tool")
        if tool is None:
            pytest.fail("pkcs11-tool (Debian package opensc) is not installed; scripts/setup.sh installs it")
        result = subprocess.run([tool, "--module", str(SO), *args], capture_output=True, text=True,
                                env={**self.env, **(env or {})}, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"pkcs11-tool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def new_world(self, suite: str = "DLf1024s160mRijndael", quorum: str = "2/3") -> subprocess.CompletedProcess:
        pins = self.pin_file("acs-pins", ACS_PINS)
        return self.cli("new-world", "--initialize", f"--cipher-suite={suite}", "--module=1",
                        f"--acs-quorum={quorum}", "--pin-file", str(pins))

    def generatekey(self, *params: str, pin_file: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        extra = ["--pin-file", str(pin_file)] if pin_file else []
        return self.cli("generatekey", "--generate", *extra, *params, check=check)


def python_child(code: str, world: World, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python (its own library load and C_Initialize) against `world`."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**world.env, "PYTHONPATH": str(ROOT / "tests" / "world"), **(env or {})},
                          timeout=300)
