"""The only disk I/O of the emulator: one kmdata `local` directory.

Writes are crash-safe: a new temp file in the same directory, fsync, os.replace, fsync of the
directory, so a reader sees the old file or the new one and never a torn one (files are never
truncated in place). Writers from every process serialise on an exclusive flock; readers take no
lock. Files are 0600 and directories 0700, because they hold ciphertext and the module key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import paths

FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file without reading it (the load cache key)."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


def ensure_dir(path: Path) -> None:
    """Create `path` (and parents) as 0700; an existing directory keeps its mode."""
    if path.is_dir():
        return
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask


def read_with_stamp(path: Path) -> tuple[bytes, FileStamp]:
    """Content and stamp of the same version: fstat of the open file, not a second lookup."""
    with open(path, "rb") as handle:
        stamp = FileStamp.of(os.fstat(handle.fileno()))
        return handle.read(), stamp


def stamp_of(path: Path) -> FileStamp | None:
    try:
        return FileStamp.of(os.stat(path))
    except FileNotFoundError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KmStore:
    """One `local` directory: atomic writes, the writers' lock, the change counter."""

    def __init__(self, local: Path) -> None:
        self.local = local
        # flock locks belong to an open file description, so a second open in the same thread
        # would deadlock against the first: nest through a thread lock and a depth count instead.
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None

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
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.local)
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                stamp = FileStamp.of(os.fstat(handle.fileno()))
            os.replace(tmp, self.path(name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.local)
        return stamp

    def write_many(self, items: list[tuple[str, bytes]]) -> list[FileStamp]:
        """`write` for many files: each replaced atomically, all durable on return through one
        sync of the file system instead of an fsync per file and per rename."""
        stamps = []
        for name, data in items:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.local)
            try:
                os.fchmod(fd, FILE_MODE)
                os.write(fd, data)
                stamps.append(FileStamp.of(os.fstat(fd)))
            finally:
                os.close(fd)
            os.replace(tmp, self.path(name))
        os.sync()
        _fsync_dir(self.local)
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
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            return False
        _fsync_dir(self.local)
        return True

    def names(self, prefix: str) -> list[str]:
        """Sorted file names starting with `prefix` (temp files never match: they start with '.')."""
        try:
            with os.scandir(self.local) as entries:
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
