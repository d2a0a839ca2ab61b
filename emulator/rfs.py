"""Remote file system sync: the master copy of a world's kmdata, pulled and committed by its clients.

nShield keeps a world's master kmdata on one host, the RFS; clients and other modules run
`rfs-sync --update` to pull it and `rfs-sync --commit` to push what they changed. Here the RFS side
is `Rfs` over a kmdata store (the version ledger attached, as the module attaches it) and the client
side is `Mirror` over another kmdata folder of the same world. What travels: every regular file of
`local/` whose name does not start with "." except module files (world, card sets, softcards, key
blobs: ciphertext bound to the world, or sealed under PINs). What stays: each module file
`module_<ESN>`, the ledger, the key index, locks, the change counter (each host's own), the KNETI and
the config (beside `local/`). A module file holds the module's key, which here stands for the key a
real module keeps inside its hardware: with it and the world file anyone opens every module-protected
blob, so it never leaves its host. The world file names every enrolled module (its share of the
world key, sealed to that module's key), which is all another host needs to know of it.

A commit names, for every file it changes, the digest of the RFS version it started from (its
"base": what the client last pulled). Under the RFS's writer lock, a commit whose base is not the
RFS's current version of any one of its files is refused whole (stale: someone committed that file
since), and nothing of it is written; commits of different files both succeed, whatever their order.
Each file is written as every kmdata file is (temp file, fsync, rename), through the ledger, which
records the new version, and the change counter is bumped so running modules see the new files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .cardsets import CARDSET_PREFIX
from .errors import EmulatorError
from .fileio import ensure_dir, write_atomic
from .kmdata import KmStore
from .ledger import content_digest

#: Where a mirror keeps the RFS digests it last pulled (its bases): beside `local/`, never synced.
BASE_FILE = "rfs-sync-bases"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
#: Files whose change is world administration (a new world, enrolled modules, card sets): a commit
#: that changes one needs a privileged client.
WORLD_ADMIN_PREFIXES = (paths.WORLD_FILE, paths.MODULE_PREFIX, CARDSET_PREFIX)


class SyncError(EmulatorError):
    """A sync the RFS or the mirror refuses; the message says why."""


class StaleCommit(SyncError):
    pass


def synced(name: str) -> bool:
    return bool(NAME_RE.match(name)) and not name.startswith(paths.MODULE_PREFIX)


def needs_privilege(name: str) -> bool:
    return name.startswith(WORLD_ADMIN_PREFIXES)


def _current(store: KmStore, name: str) -> bytes | None:
    """The current content of `name`, None when absent; a copy the ledger refuses is an error."""
    try:
        data, _stamp, reason = store.read_current(name)
    except FileNotFoundError:
        return None
    if reason is not None:
        raise SyncError(f"{name} {reason}")
    return data


def _listing(store: KmStore) -> list[str]:
    return [n for n in store.names("") if synced(n)]


@dataclass(frozen=True)
class Change:
    name: str
    base: str | None  # digest of the RFS version the change started from; None: the file was new
    data: bytes | None  # new content; None: delete


class Rfs:
    """The master copy (the store of the RFS host's module, its ledger attached)."""

    def __init__(self, store: KmStore) -> None:
        self.store = store

    def manifest(self) -> dict[str, str]:
        out = {}
        for name in _listing(self.store):
            data = _current(self.store, name)
            if data is not None:
                out[name] = content_digest(data)
        return out

    def fetch(self, names: list[str]) -> dict[str, bytes]:
        out = {}
        for name in names:
            if not synced(name):
                raise SyncError(f"{name!r} is not a kmdata file name")
            data = _current(self.store, name)
            if data is not None:
                out[name] = data
        return out

    def commit(self, changes: list[Change]) -> dict[str, str | None]:
        """Apply all of `changes` or none; returns the new digests (None: deleted)."""
        for change in changes:
            if not synced(change.name):
                raise SyncError(f"{change.name!r} is not a kmdata file name")
        with self.store.writer_lock():
            pending = []
            for change in changes:
                current = _current(self.store, change.name)
                digest = None if current is None else content_digest(current)
                wanted = None if change.data is None else content_digest(change.data)
                if digest == wanted:
                    continue  # already so: a commit retried after a crash or a lost answer
                if digest != change.base:
                    raise StaleCommit(f"stale commit: {change.name} changed on the RFS since your last update "
                                      "(run rfs-sync --update, then commit again); nothing was written")
                pending.append(change)
            result: dict[str, str | None] = {c.name: None if c.data is None else content_digest(c.data)
                                             for c in changes}
            for change in pending:
                if change.data is None:
                    self.store.delete(change.name)
                else:
                    self.store.write(change.name, change.data)
            if pending:
                self.store.bump()
        return result


class Mirror:
    """A client's or another module's copy: its store (ledger attached when its world is open) and the
    bases it last pulled, in `<kmdata>/config/rfs-sync-bases`."""

    def __init__(self, store: KmStore, kmdata: Path) -> None:
        self.store = store
        self.config_dir = Path(kmdata) / "config"

    # ---- bases --------------------------------------------------------------------------------
    def bases(self) -> dict[str, str]:
        try:
            doc = json.loads((self.config_dir / BASE_FILE).read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise SyncError(f"{self.config_dir / BASE_FILE} is unreadable: run rfs-sync --update") from None
        return {str(k): str(v) for k, v in doc.items()}

    def _save_bases(self, bases: dict[str, str]) -> None:
        ensure_dir(self.config_dir)
        write_atomic(self.config_dir, BASE_FILE, json.dumps(bases, sort_keys=True, indent=0).encode("ascii"))

    def local(self) -> dict[str, bytes]:
        out = {}
        for name in _listing(self.store):
            data = _current(self.store, name)
            if data is not None:
                out[name] = data
        return out

    # ---- update -------------------------------------------------------------------------------
    def plan_update(self, remote: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
        """(names to fetch, names to delete here, names kept because they changed here and not there)."""
        bases, here = self.bases(), self.local()
        fetch, delete, kept = [], [], []
        for name, digest in remote.items():
            mine = here.get(name)
            mine_digest = None if mine is None else content_digest(mine)
            if mine_digest == digest:
                continue
            if mine is not None and mine_digest != bases.get(name) and bases.get(name) == digest:
                kept.append(name)  # changed here since the last update, not on the RFS: commit it
                continue
            fetch.append(name)
        for name in here:
            if name not in remote:
                if name in bases and content_digest(here[name]) == bases[name]:
                    delete.append(name)  # deleted on the RFS, unchanged here
                elif name not in bases:
                    kept.append(name)  # new here: commit it
        return fetch, delete, kept

    def apply_update(self, remote: dict[str, str], files: dict[str, bytes], delete: list[str]) -> list[Path]:
        """Write what was fetched and delete what the RFS deleted; a file changed both here and on the
        RFS takes the RFS's version, and the copy from here is kept in `<kmdata>/config/rfs-conflicts/`
        (returned) so nothing is lost. The world file goes first: every other file is bound to it."""
        bases = self.bases()
        saved: list[Path] = []
        with self.store.writer_lock():
            for name, data in sorted(files.items(), key=lambda item: item[0] != paths.WORLD_FILE):
                if content_digest(data) != remote.get(name):
                    raise SyncError(f"{name} changed on the RFS during the update: run it again")
                mine = _current(self.store, name)
                if mine is not None and content_digest(mine) not in (bases.get(name), remote.get(name)):
                    folder = self.config_dir / "rfs-conflicts"
                    ensure_dir(folder)
                    saved_name = f"{name}.{content_digest(mine)[:12]}"
                    write_atomic(folder, saved_name, mine)
                    saved.append(folder / saved_name)
                self.store.write(name, data)
            for name in delete:
                self.store.delete(name)
            if files or delete:
                self.store.bump()
        self._save_bases(dict(remote))
        return saved

    # ---- commit -------------------------------------------------------------------------------
    def changes(self) -> list[Change]:
        """What changed here since the last update, each with its base."""
        bases, here = self.bases(), self.local()
        out = []
        for name, data in sorted(here.items()):
            digest = content_digest(data)
            if bases.get(name) != digest:
                out.append(Change(name, bases.get(name), data))
        for name in sorted(bases):
            if name not in here:
                out.append(Change(name, bases[name], None))
        return out

    def committed(self, result: dict[str, str | None]) -> None:
        bases = self.bases()
        for name, digest in result.items():
            if digest is None:
                bases.pop(name, None)
            else:
                bases[name] = digest
        self._save_bases(bases)
