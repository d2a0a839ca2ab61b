"""The version ledger: anti-rollback for the files of one kmdata `local` directory.

A `VersionLedger` (attached to the store by the Module, MACed under a world key) records a
monotonic version and the digest of the current content of every key blob and token file (and,
through cards.Reader, every card), so restoring an older copy of one file (a blob before its ACL was
reduced, a token file before its PIN counter rose, a deleted key) is refused. A real HSM keeps this
in NVRAM; here the ledger itself is a file, so it detects single-file rollback, not a restore of the
whole directory (see docs/THREAT_MODEL.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .crypto import blobcrypt
from .errors import BlobInvalid
from .fileio import FILE_MODE, FileStamp, ensure_dir, stamp_of, write_atomic

LEDGER_FILE = ".softshield-versions"
LEDGER_LOCK = ".softshield-versions-lock"
LEDGER_FORMAT = 1
#: The kmdata files whose every version the ledger records (world and module files are written
#: once per world; card set files hold no counter and no ACL).
TRACKED_PREFIXES = (paths.KEY_PREFIX, paths.SOFTCARD_PREFIX)

#: One change for the ledger: (entry name, new content or None for a deletion, file path).
Change = tuple[str, "bytes | None", Path]



def content_digest(data: bytes) -> str:
    return hashlib.sha256(b"softshield version\x00" + data).hexdigest()[:32]



#: Compaction: the journal lines after the snapshot are folded into a new snapshot once they
#: number more than this plus a quarter of the entries, so a write costs O(1) amortized (one
#: appended line, one fdatasync) and a reader applies at most that many lines on top of the snapshot.
COMPACT_MIN_RECORDS = 256
COMPACT_ENTRIES_RATIO = 4


@dataclass
class _LedgerView:
    """The ledger as of one file version: the snapshot line plus the journal lines applied."""

    stamp: FileStamp | None  # None: no file yet
    seq: int
    entries: dict[str, dict]
    end: int  # offset just past the last complete, verified line
    tag: bytes  # MAC of that line: the next line's MAC covers it (the chain)
    records: int  # journal lines after the snapshot
    rewrite: bool  # the next write replaces the file (none yet, another world's, old format)


class VersionLedger:
    """The per-file version index of one world, in `<local>/.softshield-versions`.

    Entry: name -> {"v": version, "cur": digest of the current content (None: deleted),
    "alt": digest of the content being written}. A write is two ledger steps around the file's
    own atomic replace: `alt` = new (before), then `cur` = new (after); a reader accepts `cur` or
    `alt`, so a crash at any point leaves a file the ledger accepts, and a reader that raced a writer
    re-checks under the ledger lock before refusing. Files the ledger never saw are accepted (key
    files copied in from another host of the same world, kmdata older than the ledger).

    File: a snapshot (`<MAC hex>\n<JSON>\n`, written by atomic replace) followed by an append-only
    journal, one line per step (`<MAC hex> {"seq":n,"set":{name: entry}}\n`) whose MAC covers the
    previous line's MAC: a line cannot be edited, dropped from the middle or moved without breaking
    the chain, and every line carries the sequence number a rollback check compares. A step is one
    appended line and one fdatasync, the snapshot rewritten only when the journal has grown by a
    fraction of the entries: rewriting the whole ledger on every key write would make a write
    O(number of keys ever held) (10 ms at 3,000 keys). A writer killed mid-append leaves a torn last line
    (no newline): readers ignore it, the next writer cuts it off before appending."""

    def __init__(self, local: Path, mac_key: bytes, world: str) -> None:
        self.local = local
        self._mac_key = mac_key
        self._world = world
        self.path = local / LEDGER_FILE
        self._lock = threading.Lock()
        self._cached: _LedgerView | None = None
        # Highest sequence number this process has seen: the ledger may only move forward.
        self._highest = 0


    # --- the file ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Innermost lock of the emulator (nothing is acquired while it is held), so it can be
        # taken under the kmdata writer lock or a card reader's lock without an ordering problem.
        # flock is per open file description, so threads of one process exclude each other too.
        ensure_dir(self.local)
        fd = os.open(self.local / LEDGER_LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _empty(self, stamp: FileStamp | None = None, end: int = 0) -> _LedgerView:
        return _LedgerView(stamp, 0, {}, end, b"", 0, rewrite=True)

    def _parse(self, data: bytes, stamp: FileStamp) -> _LedgerView:
        """The whole file: the snapshot, then every complete journal line (all must verify)."""
        what = f"version ledger {self.path}"
        try:
            tag_hex, _, rest = data.partition(b"\n")
            body, newline, journal = rest.partition(b"\n")
            tag = bytes.fromhex(tag_hex.decode("ascii"))
            doc = json.loads(body)
            world, entries = doc["world"], doc["entries"]
            seq = int(doc["seq"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BlobInvalid(f"{what}: unreadable (edited or truncated)") from None
        if world != self._world:
            return self._empty(stamp, len(data))  # left by a world this kmdata held before new-world --force
        if not blobcrypt.mac_matches(self._mac_key, body, tag) or not isinstance(entries, dict):
            raise BlobInvalid(f"{what}: authentication failed (edited)")
        # A snapshot without its newline is the format before the journal: rewritten at the next write.
        view = _LedgerView(stamp, seq, entries, len(tag_hex) + 1 + len(body) + len(newline), tag, 0,
                           rewrite=not newline)
        records = self._records(view, journal) if newline else []
        if records is None:
            raise BlobInvalid(f"{what}: authentication failed (a journal line was edited, moved or removed)")
        return self._applied(view, records, stamp)

    def _records(self, view: _LedgerView, chunk: bytes) -> list[tuple[int, bytes, dict, int]] | None:
        """The complete lines of `chunk` (read from `view.end`) as (seq, tag, changes, length),
        each verified against the chain; None when one does not verify."""
        found: list[tuple[int, bytes, dict, int]] = []
        prev_tag, seq, pos = view.tag, view.seq, 0
        while (newline := chunk.find(b"\n", pos)) >= 0:
            tag_hex, _, body = chunk[pos:newline].partition(b" ")
            try:
                tag = bytes.fromhex(tag_hex.decode("ascii"))
            except ValueError:
                return None
            if not blobcrypt.mac_matches(self._mac_key, prev_tag + body, tag):
                return None
            try:
                record = json.loads(body)
                line_seq, changes = int(record["seq"]), record["set"]
            except (ValueError, KeyError, TypeError):
                return None
            if line_seq != seq + 1 or not isinstance(changes, dict):
                return None
            found.append((line_seq, tag, changes, newline + 1 - pos))
            prev_tag, seq, pos = tag, line_seq, newline + 1
        return found

    @staticmethod
    def _applied(view: _LedgerView, records: list[tuple[int, bytes, dict, int]], stamp: FileStamp) -> _LedgerView:
        # Entries only move forward, so a journal read on top of the cached view updates its dict
        # in place (readers only look names up) instead of copying every entry.
        entries = view.entries
        seq, tag, end = view.seq, view.tag, view.end
        for line_seq, line_tag, changes, length in records:
            entries.update(changes)
            seq, tag, end = line_seq, line_tag, end + length
        return _LedgerView(stamp, seq, entries, end, tag, view.records + len(records), view.rewrite)

    def _read(self, cached: _LedgerView | None) -> _LedgerView:
        """The file as on disk now: only the journal lines after `cached` when it is the same
        file grown by appends, else the whole file."""
        with open(self.path, "rb") as handle:
            stamp = FileStamp.of(os.fstat(handle.fileno()))
            if cached is not None and cached.stamp is not None and not cached.rewrite \
                    and cached.stamp.inode == stamp.inode and stamp.size >= cached.end:
                handle.seek(cached.end)
                records = self._records(cached, handle.read())
                if records is not None:
                    with self._lock:
                        return self._applied(cached, records, stamp)
                # Not a continuation of what we saw (rewritten in place): judge the whole file.
                handle.seek(0)
            return self._parse(handle.read(), stamp)

    def _current(self) -> _LedgerView:
        """The ledger as on disk (parsed once per file version, journal lines read once)."""
        stamp = stamp_of(self.path)
        with self._lock:
            cached = self._cached
            if stamp is None:
                if self._highest:
                    raise BlobInvalid(f"version ledger {self.path}: deleted after version "
                                      f"{self._highest}: rollback refused")
                return self._empty()
            if cached is not None and cached.stamp == stamp:
                return cached
        for _attempt in range(10):
            try:
                view = self._read(cached)
            except FileNotFoundError:
                return self._current()
            with self._lock:
                if view.seq >= self._highest:
                    self._highest = view.seq
                    self._cached = view
                    return view
            # Lower than a version this process saw: another thread may just have read a newer
            # file than ours. Only the same file still being there makes it a rollback.
            if stamp_of(self.path) == view.stamp:
                raise BlobInvalid(f"version ledger {self.path}: went back from version "
                                  f"{self._highest} to {view.seq} (an older copy was restored): rollback refused")
            cached = None
        raise BlobInvalid(f"version ledger {self.path}: keeps changing under the reader")

    def _commit(self, view: _LedgerView, changes: dict[str, dict]) -> None:
        """One durable step on top of `view` (the current ledger, read under `_locked`): an
        appended journal line, or a new snapshot when the journal is due for compaction."""
        seq = view.seq + 1
        if view.stamp is None or view.rewrite \
                or view.records >= COMPACT_MIN_RECORDS + len(view.entries) // COMPACT_ENTRIES_RATIO:
            self._rewrite(view, changes, seq)
            return
        body = json.dumps({"seq": seq, "set": changes}, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        tag = blobcrypt.mac(self._mac_key, view.tag + body)
        line = tag.hex().encode("ascii") + b" " + body + b"\n"
        fd = os.open(self.path, os.O_WRONLY)
        try:
            if os.fstat(fd).st_size != view.end:
                os.ftruncate(fd, view.end)  # the torn line of a writer killed mid-append
            os.pwrite(fd, line, view.end)
            # The step must be on disk before the file it describes is renamed (a crash must not
            # leave a blob the ledger refuses); fdatasync, as the file's inode already exists.
            os.fdatasync(fd)
            stamp = FileStamp.of(os.fstat(fd))
        finally:
            os.close(fd)
        with self._lock:
            new = self._applied(view, [(seq, tag, changes, len(line))], stamp)
            self._highest = max(self._highest, seq)
            self._cached = new

    def _rewrite(self, view: _LedgerView, changes: dict[str, dict], seq: int) -> None:
        entries = {**view.entries, **changes}
        doc = {"format": LEDGER_FORMAT, "world": self._world, "seq": seq, "entries": entries}
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        tag = blobcrypt.mac(self._mac_key, body)
        data = tag.hex().encode("ascii") + b"\n" + body + b"\n"
        stamp = write_atomic(self.local, LEDGER_FILE, data)
        with self._lock:
            self._highest = max(self._highest, seq)
            self._cached = _LedgerView(stamp, seq, entries, len(data), tag, 0, rewrite=False)

    # --- reading -------------------------------------------------------------------------------
    @staticmethod
    def _accepts(view: _LedgerView, name: str, data: bytes) -> bool:
        entry = view.entries.get(name)
        if entry is None:
            return True
        digest = content_digest(data)
        return digest == entry.get("cur") or digest == entry.get("alt")

    def recorded(self) -> Mapping[str, Any]:
        """The names the ledger holds versions of, as of now (a snapshot for `digest_check`): a
        name it does not hold is accepted whatever its content, so a listing of 10,000 files asks
        `digest_check` only about these."""
        return self._current().entries

    def digest_check(self, recorded: Mapping[str, Any] | None = None) -> Callable[[str, str], bool]:
        """A test `(name, digest) -> bool`: is content with that digest (content_digest) a version
        of `name` the ledger accepts, as of now (or as of the `recorded()` snapshot given)? For
        files known from an index without reading them: one ledger read for a whole listing."""
        entries = self._current().entries if recorded is None else recorded

        def accepts(name: str, digest: str) -> bool:
            entry = entries.get(name)
            return entry is None or digest == entry.get("cur") or digest == entry.get("alt")
        return accepts

    def verdict(self, name: str, data: bytes, reread: Callable[[], tuple[bytes, FileStamp]],
                stamp: FileStamp) -> tuple[bytes, FileStamp, str | None]:
        """(content, stamp, None) when `data` is the current version of `name`; else the reason.
        A mismatch is re-checked under the ledger lock with a fresh read: the file may have been
        replaced between our read of it and our read of the ledger."""
        if self._accepts(self._current(), name, data):
            return data, stamp, None
        with self._locked():
            data, stamp = reread()
            view = self._current()
            if self._accepts(view, name, data):
                return data, stamp, None
        entry = view.entries[name]
        if entry.get("cur") is None:
            return data, stamp, (f"was deleted (ledger version {entry['v']}); this is a restored copy: "
                                 "rollback refused")
        return data, stamp, (f"is not the current version (ledger version {entry['v']}): an older copy "
                             "was restored or the file was replaced: rollback refused")

    # --- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def replacing(self, changes: list[Change]) -> Iterator[None]:
        """Wrap the atomic replace (or deletion) of the files in `changes`."""
        writes = [(name, content_digest(data), path) for name, data, path in changes if data is not None]
        # A name the ledger has no entry for is accepted whatever its content, so a new file (key
        # generation: the common write) needs no first step; only rewrites and re-creations do.
        known = self._current().entries
        writes = [w for w in writes if w[0] in known]
        if writes:
            with self._locked():
                view = self._current()
                self._commit(view, {name: self._settled(view.entries.get(name), path) | {"alt": digest}
                                    for name, digest, path in writes})
        yield
        with self._locked():
            view = self._current()
            version = view.seq + 1
            self._commit(view, {name: {"v": version, "cur": None if data is None else content_digest(data)}
                                for name, data, _path in changes})

    @staticmethod
    def _settled(entry: dict | None, path: Path) -> dict:
        """An entry left mid-write by a crash: `cur` becomes whichever version is on disk."""
        if entry is None:
            return {"v": 0, "cur": None}
        if entry.get("alt") is None:
            return dict(entry)
        try:
            on_disk = content_digest(path.read_bytes())
        except FileNotFoundError:
            on_disk = None
        cur = on_disk if on_disk in (entry.get("cur"), entry.get("alt")) else entry.get("cur")
        return {"v": entry["v"], "cur": cur}
