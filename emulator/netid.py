"""Where the network identities live: the module's KNETI and a client's own key pair.

    <kmdata>/network/kneti_<ESN>          the module's KNETI: private key and self-signed certificate (PEM)
    $SOFTSHIELD_CLIENT_DIR, else <kmdata>/config/client/
        key.pem                           the client's private key (one key for every module)
        cert_<ESN>.pem                    its certificate from each module it enrolled with (each
                                          module admits only certificates its own KNETI issued)

The KNETI is made on first need and kept: clients pin its hash, so a new one means enrolling every
client again (as after replacing an nShield Connect). It is the module's, not the world's: it lives
beside `local/`, never in it, so RFS sync never carries it to another module. Files are written as
every kmdata file is (temp file, fsync, rename; 0600 in 0700 folders); a lock makes two processes
that need it at once agree on one key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .crypto import netid
from .fileio import FILE_MODE, ensure_dir, write_atomic

NETWORK_DIR = "network"
CLIENT_DIR_ENV = "SOFTSHIELD_CLIENT_DIR"
CLIENT_KEY = "key.pem"



def client_cert_name(esn: str) -> str:
    return f"cert_{esn}.pem"


@dataclass(frozen=True)
class Identity:
    """A key pair with its certificate; `name` is the module's ESN for a KNETI."""

    name: str
    key_pem: bytes
    cert_pem: bytes

    @property
    def key_hash(self) -> str:
        return netid.key_hash_of_private(self.key_pem)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    ensure_dir(folder)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _split_pem(data: bytes) -> tuple[bytes, bytes]:
    marker = b"-----BEGIN CERTIFICATE-----"
    at = data.find(marker)
    if at < 0:
        raise ValueError("no certificate in the identity file")
    return data[:at], data[at:]


def module_identity(kmdata: Path, esn: str) -> Identity:
    """The module's KNETI, made on first need."""
    folder = Path(kmdata) / NETWORK_DIR
    name = f"kneti_{esn}"
    path = folder / name
    if not path.is_file():
        with _locked(folder):
            if not path.is_file():
                key = netid.new_private_key_pem()
                write_atomic(folder, name, key + netid.module_certificate(key, esn))
    key, cert = _split_pem(path.read_bytes())
    return Identity(esn, key, cert)


def module_esn(kmdata: Path) -> str:
    """The ESN of the module enrolled in the world of `kmdata` (the world is made on first use, as
    the hardserver's own C_Initialize would)."""
    from .module import Module

    return Module.open(kmdata).esn


def client_dir(kmdata: Path | None = None) -> Path:
    env = os.environ.get(CLIENT_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return paths.resolve_kmdata(kmdata) / "config" / "client"


def client_key(folder: Path) -> bytes:
    """The client's private key (PEM), made on first need."""
    path = folder / CLIENT_KEY
    if not path.is_file():
        with _locked(folder):
            if not path.is_file():
                write_atomic(folder, CLIENT_KEY, netid.new_private_key_pem())
    return path.read_bytes()


def store_client_certificate(folder: Path, esn: str, cert_pem: bytes) -> None:
    with _locked(folder):
        write_atomic(folder, client_cert_name(esn), cert_pem)


def client_identity(folder: Path, esn: str) -> Identity | None:
    """The client's key and the certificate module `esn` issued it, None before that enrolment."""
    key, cert = folder / CLIENT_KEY, folder / client_cert_name(esn)
    if not key.is_file() or not cert.is_file():
        return None
    return Identity("client", key.read_bytes(), cert.read_bytes())
