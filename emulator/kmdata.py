"""One kmdata `local` directory: the store every emulator file goes through.

Writes are crash-safe (fileio.write_atomic: temp file, fsync, rename, fsync of the directory).
Writers from every process serialise on an exclusive flock; readers take no lock. Writes of the
files the version ledger tracks (ledger.py) are recorded in it, and `read_current` refuses an older
copy of one of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import operator
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from . import paths
from .fileio import (
    DIR_MODE,
    FILE_MODE,
    TEMP_PREFIX,
    FileStamp,
    ensure_dir,
    fsync_dir,
    read_with_stamp,
    stamp_of,
    sweep_dead_temps,
    temp_prefix,
    write_atomic,
)
from .ledger import LEDGER_FILE, LEDGER_LOCK, TRACKED_PREFIXES, VersionLedger, content_digest

# The store's module is where callers meet the file primitives and the ledger's names.
__all__ = [
    "DIR_MODE", "FILE_MODE", "LEDGER_FILE", "LEDGER_LOCK", "TEMP_PREFIX", "FileStamp", "KmStore",
    "VersionLedger", "content_digest", "ensure_dir", "read_with_stamp", "stamp_of", "sweep_dead_temps",
]


class KmStore:
    """One `local` directory: atomic writes, the writers' lock, the change counter."""

    def __init__(self, local: Path) -> None:
        self.local = local
        # flock locks belong to an open file description, so a second open in the same thread
        # would deadlock against the first: nest through a thread lock and a depth count instead.
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None
        self.ledger: VersionLedger | None = None
        # Opening a store is the recovery point after a crash: no torn file exists (writes are
        # renames), only temp files of killed writers.
        sweep_dead_temps(local)

    def attach_ledger(self, ledger: VersionLedger) -> None:
        """From now on, writes of tracked files are recorded and `read_current` checks them."""
        self.ledger = ledger

    def _ledger_of(self, name: str) -> VersionLedger | None:
        """The ledger that records `name`, if any: only the TRACKED_PREFIXES files, once attached."""
        return self.ledger if self.ledger is not None and name.startswith(TRACKED_PREFIXES) else None

    def _ledger_step(self, names: list[tuple[str, bytes | None]]) -> contextlib.AbstractContextManager:
        changes = [(n, d, self.path(n)) for n, d in names if self._ledger_of(n) is not None]
        if self.ledger is None or not changes:
            return contextlib.nullcontext()
        return self.ledger.replacing(changes)

    def read_current(self, name: str) -> tuple[bytes, FileStamp, str | None]:
        """Content and stamp of `name`, and why it is not the version the ledger recorded (None when
        it is). The reason is returned, not raised, so the caller can first report the more specific
        failures (tampered, renamed, foreign) that older copies share with forgeries."""
        data, stamp = self.read_with_stamp(name)
        ledger = self._ledger_of(name)
        if ledger is None:
            return data, stamp, None
        return ledger.verdict(name, data, lambda: self.read_with_stamp(name), stamp)

    def path(self, name: str) -> Path:
        return self.local / name

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive across processes and threads; re-entrant within one thread."""
        with self._thread_lock:
            if self._depth == 0:
                ensure_dir(self.local)
                # Opened per acquisition so a forked child never inherits a held lock.
                fd = os.open(self.path(paths.LOCK_FILE), os.O_RDWR | os.O_CREAT, FILE_MODE)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def write(self, name: str, data: bytes) -> FileStamp:
        """Replace `name` atomically with `data`; returns the new file's stamp."""
        with self._ledger_step([(name, data)]):
            return self._write(name, data)

    def _write(self, name: str, data: bytes) -> FileStamp:
        return write_atomic(self.local, name, data)

    def write_many(self, items: list[tuple[str, bytes]]) -> list[FileStamp]:
        """`write` for many files: each replaced atomically, all durable on return through one
        sync of the file system instead of an fsync per file and per rename."""
        with self._ledger_step(list(items)):
            return self._write_many(items)

    def _write_many(self, items: list[tuple[str, bytes]]) -> list[FileStamp]:
        import tempfile  # see fileio.write_atomic

        stamps = []
        for name, data in items:
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=self.local)
            try:
                os.fchmod(fd, FILE_MODE)
                os.write(fd, data)
                stamps.append(FileStamp.of(os.fstat(fd)))
            finally:
                os.close(fd)
            os.replace(tmp, self.path(name))
        os.sync()
        fsync_dir(self.local)
        return stamps

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def read_with_stamp(self, name: str) -> tuple[bytes, FileStamp]:
        return read_with_stamp(self.path(name))

    def stamp(self, name: str) -> FileStamp | None:
        return stamp_of(self.path(name))

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def delete(self, name: str) -> bool:
        """Remove `name`; False when it was already gone."""
        with self._ledger_step([(name, None)]):
            return self._delete(name)

    def _delete(self, name: str) -> bool:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            return False
        fsync_dir(self.local)
        return True

    def scan(self, prefix: str) -> list[tuple[str, FileStamp]]:
        """(name, stamp) of the files starting with `prefix`, sorted: one directory read and one
        stat per file, no path objects (the freshness check of a listing of thousands of keys)."""
        found = []
        try:
            with os.scandir(self.local) as entries:
                for entry in entries:
                    if entry.name.startswith(prefix):
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            continue  # deleted since the directory was read
                        if stat.S_ISREG(st.st_mode):
                            found.append((entry.name, FileStamp.of(st)))
        except FileNotFoundError:
            return []
        found.sort(key=_NAME)  # names are unique; a str key sorts without tuple compares
        return found

    def scan_and_names(self, prefix: str, other: str, exclude: str) -> tuple[list[tuple[str, FileStamp]], list[str]]:
        """`scan(prefix)` and `names(other, exclude)` from one directory read: a login lists a
        token's pkcs11 blobs and the other apps' blobs of the same directory, and with 10,000 key
        files each read of it is ~10 ms. `prefix` must start with `exclude` (a file is one or the
        other)."""
        found: list[tuple[str, FileStamp]] = []
        names: list[str] = []
        # Bound once, and FileStamp.of inlined: a login runs this body for 10,000 key files.
        add, is_regular, new_tuple = found.append, stat.S_ISREG, tuple.__new__
        try:
            with os.scandir(self.local) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(prefix):
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            continue  # deleted since the directory was read
                        if is_regular(st.st_mode):
                            add((name, new_tuple(FileStamp, (st.st_mtime_ns, st.st_size, st.st_ino))))
                    elif name.startswith(other) and not name.startswith(exclude) and entry.is_file():
                        names.append(name)
        except FileNotFoundError:
            return [], []
        found.sort(key=_NAME)  # names are unique; a str key sorts without tuple compares
        names.sort()
        return found, names

    def names(self, prefix: str, exclude: str | None = None) -> list[str]:
        """Sorted file names starting with `prefix` and not with `exclude` (temp files never match:
        they start with '.')."""
        try:
            with os.scandir(self.local) as entries:
                if exclude is not None:
                    return sorted(e.name for e in entries
                                  if e.name.startswith(prefix) and not e.name.startswith(exclude) and e.is_file())
                return sorted(e.name for e in entries if e.name.startswith(prefix) and e.is_file())
        except FileNotFoundError:
            return []

    # --- the change counter --------------------------------------------------------------------
    def change_counter(self) -> int:
        """One small read; 0 before the first change."""
        try:
            text = self.read(paths.CHANGES_FILE)
        except FileNotFoundError:
            return 0
        try:
            return int(text.decode("ascii").strip())
        except ValueError:
            return -1  # damaged: still a value no earlier reader saw, so everyone re-reads

    def bump(self) -> int:
        """Count one change; callers hold the writer lock, so no increment is lost."""
        with self.writer_lock():
            value = max(self.change_counter(), 0) + 1
            self.write(paths.CHANGES_FILE, f"{value}\n".encode("ascii"))
            return value


_NAME = operator.itemgetter(0)


def this_module(root: Path) -> str | None:
    """The ESN recorded as this host's module (paths.THIS_MODULE), or None before one is."""
    try:
        esn = (Path(root) / paths.THIS_MODULE).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return esn if paths.ESN_RE.match(esn) else None


def remember_this_module(root: Path, esn: str) -> None:
    write_atomic(Path(root), paths.THIS_MODULE, esn.encode("ascii") + b"\n")
