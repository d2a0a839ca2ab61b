"""Configuration read once at C_Initialize: environment, then a cknfastrc-style file.

nShield's library reads `NAME=value` lines from `cknfastrc` in $NFAST_HOME (environment wins);
we read the same format from SOFTSHIELD_CKNFASTRC, else $NFAST_HOME/cknfastrc, else
~/.config/softshield/cknfastrc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _rc_path() -> Path | None:
    explicit = os.environ.get("SOFTSHIELD_CKNFASTRC")
    if explicit:
        return Path(explicit)
    home = os.environ.get("NFAST_HOME")
    if home and (Path(home) / "cknfastrc").is_file():
        return Path(home) / "cknfastrc"
    user = Path.home() / ".config" / "softshield" / "cknfastrc"
    return user if user.is_file() else None


def _read_rc(path: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if path is None or not path.is_file():
        return values
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def _flag(value: str | None) -> bool:
    return bool(value) and value.strip() not in ("0", "", "no", "false")


@dataclass(frozen=True)
class Config:
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls) -> "Config":
        values = _read_rc(_rc_path())
        values.update({k: v for k, v in os.environ.items() if k.startswith(("CKNFAST_", "NFAST_", "SOFTSHIELD_"))})
        return cls(values)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def flag(self, name: str) -> bool:
        return _flag(self.values.get(name))

    @property
    def kmdata(self) -> str | None:
        return self.values.get("NFAST_KMDATA")

    @property
    def no_accelerator_slots(self) -> bool:
        return self.flag("CKNFAST_NO_ACCELERATOR_SLOTS")

    @property
    def fake_accelerator_login(self) -> bool:
        return self.flag("CKNFAST_FAKE_ACCELERATOR_LOGIN")

    @property
    def assume_single_process(self) -> bool:
        # nShield's default is 1 in some releases; we default to noticing other processes, which is
        # what CI suites sharing one kmdata need (CKNFAST_ASSUME_SINGLE_PROCESS=0 behaviour).
        return self.flag("CKNFAST_ASSUME_SINGLE_PROCESS")
