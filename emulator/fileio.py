"""Crash-safe file primitives under every kmdata writer (kmdata.KmStore, the version ledger, the
key index).

A write is a new temp file in the same directory, fsync, os.replace, fsync of the directory, so a
reader sees the old file or the new one and never a torn one (files are never truncated in place).
Files are 0600 and directories 0700, because they hold ciphertext and the module key.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import NamedTuple

FILE_MODE = 0o600
DIR_MODE = 0o700


class FileStamp(NamedTuple):
    """What identifies one version of a file without reading it (the load cache key). A tuple rather
    than a frozen dataclass: a login lists 10,000 key files, one stamp each, and a frozen dataclass's
    constructor (three object.__setattr__ calls) would be a fifth of that directory scan."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return tuple.__new__(cls, (st.st_mtime_ns, st.st_size, st.st_ino))


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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



TEMP_PREFIX = ".tmp-"


def temp_prefix() -> str:
    # The writer's pid in the name: a temp file whose writer died (SIGKILL between mkstemp and
    # rename) can be told from one a live writer is about to rename.
    return f"{TEMP_PREFIX}{os.getpid()}-"


def sweep_dead_temps(folder: Path) -> list[str]:
    """Remove temp files left by writers that no longer run; returns their names."""
    removed = []
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIX)]
    except FileNotFoundError:
        return removed
    for name in entries:
        pid_text = name[len(TEMP_PREFIX):].partition("-")[0]
        if pid_text.isdigit():
            try:
                os.kill(int(pid_text), 0)
                continue  # alive (or not ours to signal): its writer may still rename it
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)
            removed.append(name)
    return removed



def write_atomic(folder: Path, name: str, data: bytes, *, sync_dir: bool = True, sync: bool = True) -> FileStamp:
    """`sync` False: replaced atomically but not made durable (caches: a crash may leave the old
    file, or an empty or torn one that its reader refuses and rebuilds)."""
    import tempfile  # with shutil and the compression modules: a process that only reads never needs it

    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=folder)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
            stamp = FileStamp.of(os.fstat(handle.fileno()))
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(folder)
    return stamp
