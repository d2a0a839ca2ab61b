"""Configuration read once at C_Initialize: environment, then a cknfastrc-style file.

nShield's library reads `NAME=value` lines from `cknfastrc` in $NFAST_HOME (environment wins);
we read the same format from SOFTSHIELD_CKNFASTRC, else $NFAST_HOME/cknfastrc, else
~/.config/softshield/cknfastrc.

Beside it, one TOML file (SOFTSHIELD_CONFIG, default ~/.config/softshield/config.toml) holds what
has no cknfast variable, and may set what has one (the environment and cknfastrc still win):

    kmdata = "/var/lib/softshield/kmdata"     # NFAST_KMDATA
    [log]
    level = "debug"                            # SOFTSHIELD_LOG_LEVEL
    file = "/tmp/softshield.log"               # SOFTSHIELD_LOG_FILE
    [slots]
    no_accelerator_slots = false               # CKNFAST_NO_ACCELERATOR_SLOTS
    mechanisms = ["-CKM_RSA_X_509"]            # every slot: deny raw RSA
    [slots.1]
    mechanisms = ["CKM_AES_KEY_GEN", "CKM_AES_CBC_PAD"]   # slot 1 offers only these

A mechanism list is a profile: `-CKM_X` denies, `CKM_X` (or `+CKM_X`) allows; when a list allows
any, only the allowed ones remain. The slot's own list applies after the one for every slot.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path


def _is_file(path: Path) -> bool:
    """Whether `path` is a file; a folder this process may not search (a service or another user
    run with HOME still naming the caller's home) holds no configuration of ours."""
    try:
        return path.is_file()
    except OSError as exc:
        logging.getLogger("softshield").info("no configuration read from %s: %s", path, exc.strerror)
        return False


def _rc_path() -> Path | None:
    explicit = os.environ.get("SOFTSHIELD_CKNFASTRC")
    if explicit:
        return Path(explicit)
    home = os.environ.get("NFAST_HOME")
    if home and _is_file(Path(home) / "cknfastrc"):
        return Path(home) / "cknfastrc"
    user = Path.home() / ".config" / "softshield" / "cknfastrc"
    return user if _is_file(user) else None


def _read_rc(path: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if path is None or not _is_file(path):
        return values
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        logging.getLogger("softshield").error("ignoring %s: %s", path, exc.strerror)
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def rc_value(name: str) -> str | None:
    """One variable of the cknfastrc file in use (the environment is the caller's to check first)."""
    return _read_rc(_rc_path()).get(name)


def toml_path() -> Path:
    explicit = os.environ.get("SOFTSHIELD_CONFIG")
    return Path(explicit) if explicit else Path.home() / ".config" / "softshield" / "config.toml"


def read_toml(path: Path | None = None) -> dict:
    """The TOML config as a dict ({} when there is none); a broken file raises ValueError naming it."""
    path = path or toml_path()
    if not _is_file(path):
        return {}
    import tomllib  # only when there is a file to parse: most processes have none

    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _toml_values(doc: dict) -> dict[str, str]:
    """The TOML settings that have a cknfast/softshield variable, as NAME -> value."""
    values: dict[str, str] = {}
    if doc.get("kmdata"):
        values["NFAST_KMDATA"] = str(Path(str(doc["kmdata"])).expanduser())
    log = doc.get("log", {})
    if log.get("level"):
        values["SOFTSHIELD_LOG_LEVEL"] = str(log["level"])
    if log.get("file"):
        values["SOFTSHIELD_LOG_FILE"] = str(Path(str(log["file"])).expanduser())
    slots = doc.get("slots", {})
    for key, name in (("no_accelerator_slots", "CKNFAST_NO_ACCELERATOR_SLOTS"),
                      ("fake_accelerator_login", "CKNFAST_FAKE_ACCELERATOR_LOGIN")):
        if key in slots:
            values[name] = "1" if slots[key] else "0"
    return values


def _mechanism_rules(doc: dict) -> dict[int | None, tuple[str, ...]]:
    """slot id (None: every slot) -> its allow/deny entries, as written."""
    slots = doc.get("slots", {})
    rules: dict[int | None, tuple[str, ...]] = {}
    if "mechanisms" in slots:
        rules[None] = tuple(str(m) for m in slots["mechanisms"])
    for key, table in slots.items():
        if isinstance(table, dict) and str(key).isdigit() and "mechanisms" in table:
            rules[int(key)] = tuple(str(m) for m in table["mechanisms"])
    return rules


def _apply_log_settings(values: dict[str, str]) -> None:
    """The log level/file from the TOML file, when the environment did not set them at load."""
    if os.environ.get("SOFTSHIELD_LOG_LEVEL") or os.environ.get("CKNFAST_DEBUG"):
        return
    level_text = values.get("SOFTSHIELD_LOG_LEVEL")
    path = values.get("SOFTSHIELD_LOG_FILE")
    log = logging.getLogger("softshield")
    if path and not os.environ.get("SOFTSHIELD_LOG_FILE") and not os.environ.get("CKNFAST_DEBUGFILE"):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d]: pkcs11: %(levelname)s %(message)s"))
        for old in list(log.handlers):
            log.removeHandler(old)
        log.addHandler(handler)
    if level_text:
        log.setLevel(getattr(logging, level_text.upper(), logging.WARNING))


def _flag(value: str | None) -> bool:
    return bool(value) and value.strip() not in ("0", "", "no", "false")


@dataclass(frozen=True)
class Config:
    values: dict[str, str] = field(default_factory=dict)
    #: slot id (None: every slot) -> mechanism allow/deny entries (see the module docstring)
    mechanism_rules: dict[int | None, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> "Config":
        try:
            doc = read_toml()
        except ValueError as exc:
            # A broken file must not take the library down silently: say so, run without it.
            logging.getLogger("softshield").error("ignoring the config file: %s", exc)
            doc = {}
        values = _toml_values(doc)
        values.update(_read_rc(_rc_path()))
        values.update({k: v for k, v in os.environ.items() if k.startswith(("CKNFAST_", "NFAST_", "SOFTSHIELD_"))})
        _apply_log_settings(values)
        return cls(values, _mechanism_rules(doc))

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
