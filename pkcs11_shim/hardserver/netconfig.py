"""The hardserver's configuration file in nShield's syntax: `<kmdata>/config/config`.

nShield's hardserver config is ASCII: a first line `syntax-version=1`, then `[section]` blocks of
`field=value` lines; a section holds entries separated by a line of dashes. The sections here are the
ones nShield uses for network-attached modules:

    [hs_clients]       on the module: one entry per permitted client
                       addr=IP (0.0.0.0: any)  clientperm=priv|unpriv  keyhash=HASH
                       validity=YYYY-MM-DDTHH:MM:SSZ (ours: no connection after it; empty: no limit)
    [revoked_clients]  on the module (ours): keyhash=HASH  revoked=TIME, so a refusal can say why
    [nethsm_imports]   on a client: one entry per module it is enrolled with
                       local_module=N remote_esn=ESN remote_ip=IP remote_port=PORT keyhash=HASH privileged=yes|no
    [rfs_sync_client]  on a client or another module: remote_ip=IP remote_port=PORT remote_esn=ESN use_kneti=yes

Sections we do not know are kept as they are. The file is rewritten whole (temp file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from emulator import paths
from emulator.errors import EmulatorError
from emulator.fileio import FILE_MODE, ensure_dir, write_atomic

SYNTAX_VERSION = "syntax-version=1"
SEPARATOR = "-----"
DEFAULT_PORT = 9004

Entry = dict[str, str]


class ConfigError(EmulatorError):
    """A config file we cannot read: the message names the file and the line (the CLI prints it as
    its one line; the server refuses the connection with it)."""


@dataclass
class Config:
    sections: dict[str, list[Entry]] = field(default_factory=dict)

    def entries(self, section: str) -> list[Entry]:
        return self.sections.setdefault(section, [])

    def render(self) -> str:
        out = [SYNTAX_VERSION, ""]
        for name, entries in self.sections.items():
            if not entries:
                continue
            out.append(f"[{name}]")
            for i, entry in enumerate(entries):
                if i:
                    out.append(SEPARATOR)
                out += [f"{k}={v}" for k, v in entry.items()]
            out.append("")
        return "\n".join(out)


def config_path(kmdata: Path | None = None) -> Path:
    return paths.resolve_kmdata(kmdata) / "config" / "config"


def parse(text: str) -> Config:
    config = Config()
    current: list[Entry] | None = None
    entry: Entry | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("syntax-version"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current, entry = config.entries(line[1:-1].strip()), None
            continue
        if set(line) == {"-"}:
            entry = None
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None:
            raise ValueError(f"line {number}: {raw!r} is not a field=value line of a [section]")
        if entry is None or key.strip() in entry:
            entry = {}
            current.append(entry)
        entry[key.strip()] = value.strip()
    return config


def read(path: Path) -> Config:
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return Config()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


@contextlib.contextmanager
def editing(path: Path) -> Iterator[Config]:
    """Read, let the caller change, write back atomically; one editor at a time (a lock file)."""
    ensure_dir(path.parent)
    fd = os.open(path.parent / ".config-lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        config = read(path)
        yield config
        write_atomic(path.parent, path.name, config.render().encode("ascii"))
    finally:
        os.close(fd)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def format_time(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    """YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)."""
    for form in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(text, form).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a UTC time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)")


def split_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """HOST[:PORT] (an IPv6 address in brackets) -> (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed [")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r} is not HOST[:PORT]")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    if not host:
        raise ValueError(f"{text!r} has no host")
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)
