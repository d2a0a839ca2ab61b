"""Where kmdata lives and what its files are called (the layout nShield's Security World files documentation gives).

    <kmdata>/local/world                 the Security World
    <kmdata>/local/module_<ESN>          one module's key and its share of the world
    <kmdata>/local/softcard_<hash>       a logical token (what C_InitToken makes)
    <kmdata>/local/key_<app>_<ident>     one key blob
plus two files of our own that nShield does not have: the writers' lock and the change counter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

WORLD_FILE = "world"
LOCK_FILE = ".softshield-lock"
CHANGES_FILE = ".softshield-changes"
MODULE_PREFIX = "module_"
#: Beside local/, never synced: the ESN of the module this kmdata's host is. local/ may hold other
#: module files of the world (copied in by an operator; rfs-sync never carries them); this says
#: which one is ours, as a real module knows its ESN from its hardware.
THIS_MODULE = "this-module"
SOFTCARD_PREFIX = "softcard_"
KEY_PREFIX = "key_"

ESN_RE = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$")
HASH_RE = re.compile(r"^[0-9a-f]{40}$")
# App names never hold "_", so "key_<app>_<ident>" splits at the first "_" after "key_".
APP_RE = re.compile(r"^[a-z0-9]+$")
# nShield idents: digits, dashes and lowercase letters (as `generatekey` accepts them).
IDENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
#: ident of a pkcs11 key on the accelerator slot, and of one on a token.
ACCELERATOR_IDENT_RE = re.compile(r"^ua[0-9a-f]{40}$")
TOKEN_IDENT_RE = re.compile(r"^uc([0-9a-f]{40})-[0-9a-f]{40}$")


def resolve_kmdata(kmdata: str | os.PathLike | None = None) -> Path:
    """The argument, else NFAST_KMDATA, else the folder above NFAST_KMLOCAL, else
    $XDG_DATA_HOME/softshield/kmdata, else ~/.local/share/..."""
    if kmdata is not None and str(kmdata) != "":
        return Path(kmdata).expanduser()
    env = os.environ.get("NFAST_KMDATA")
    if env:
        return Path(env).expanduser()
    kmlocal = os.environ.get("NFAST_KMLOCAL")
    if kmlocal:
        return Path(kmlocal).expanduser().parent
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "softshield" / "kmdata"


def local_dir(kmdata: Path) -> Path:
    """`<kmdata>/local`; NFAST_KMLOCAL names it directly, as nShield's tools read it (Security World files:
    NFAST_KMLOCAL, else $NFAST_KMDATA/local), for the kmdata the environment names."""
    kmlocal = os.environ.get("NFAST_KMLOCAL")
    if kmlocal and Path(kmdata) == resolve_kmdata():
        return Path(kmlocal).expanduser()
    return Path(kmdata) / "local"


def world_exists(kmdata: Path) -> bool:
    """Whether `kmdata` holds a Security World (its world file), without creating anything."""
    return (local_dir(kmdata) / WORLD_FILE).is_file()


def module_file(esn: str) -> str:
    return MODULE_PREFIX + esn


def softcard_file(token_hash: str) -> str:
    return SOFTCARD_PREFIX + token_hash


def key_file(app: str, ident: str) -> str:
    return f"{KEY_PREFIX}{app}_{ident}"


def parse_key_file(name: str) -> tuple[str, str] | None:
    """(app, ident) of a key file name, None when the name is not one."""
    if not name.startswith(KEY_PREFIX):
        return None
    app, sep, ident = name[len(KEY_PREFIX):].partition("_")
    if not sep or not APP_RE.match(app) or not IDENT_RE.match(ident):
        return None
    return app, ident


def pkcs11_prefix(token: str | None) -> str:
    """File-name prefix of every pkcs11 key of one owner: listing needs no decryption."""
    return key_file("pkcs11", "ua" if token is None else f"uc{token}-")


def owner_of_pkcs11_ident(ident: str) -> str | None | bool:
    """Owner token hash of a pkcs11 ident, None for the accelerator, False when malformed."""
    if ACCELERATOR_IDENT_RE.match(ident):
        return None
    match = TOKEN_IDENT_RE.match(ident)
    return match.group(1) if match else False
