"""The per-owner key index: what login needs from every key blob of one owner, in one sealed file.

Opening, authenticating and decrypting a blob costs ~300 us (path lookups, JSON header, ACL parse,
ledger check, GCM): 3 s at login for 10,000 token keys, where SoftHSM2 takes 0.2 s. An index row holds what a listing needs without opening the blob: the file's stamp (mtime, size,
inode) and content digest, and the header fields (protection, kind, ACL, appdata, plainname) that
the blob carries in the clear under its tag, and the owning application's summary of the appdata
(see SUMMARY below). `Module.load_keys` takes a row only when the file's
stamp is the indexed one and the version ledger accepts the indexed digest; any other key is read
from its blob and the index rewritten. The material is read from the blob (and checked against the
digest) when the key is first used.

Files: `<kmdata>/cache/index2-<owner>-<protection>`, owner `ua` (the accelerator) or a token hash:
a JSON document, a newline, then the rows' appdata back to back (each row says how long its part
is): a login to 10,000 keys then parses no 700-character base64 string per key, and decrypts a
quarter less. Format 1 (`index-<owner>-<protection>`, the appdata base64 in the JSON, no summary)
is what the previous release writes: it is read when there is no format 2 file, and rewritten as
format 2 (the format 1 file is left to that release).
The `module` index is sealed under a world key and lists the token-protected files too, by stamp
and digest only (so a listing without login skips them without reading them); the `token` index,
with their header fields, is sealed under a key derived from the token's logical key, so nothing
about private objects is readable from it without a login (their headers are not secret, but no
more is given away than is already on disk). An index is a cache: a missing, damaged, foreign or
stale one only costs the full read, and it is rewritten (atomically, without fsync) when a
listing had to read blobs.
"""

from __future__ import annotations

import binascii
import contextlib
import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

import orjson

from .crypto import blobcrypt
from .errors import BlobInvalid
from .fileio import FileStamp, ensure_dir, sweep_dead_temps, write_atomic

INDEX_DIR = "cache"
INDEX_FORMAT = 2
LEGACY_FORMAT = 1  # read, never written

#: A row: [mtime_ns, size, inode, digest, protection, kind, acl, appdata (bytes), plainname, summary].
#: In the module index a token-protected row stops after `protection`. `summary` is there only when
#: the key's application registered a summariser (`register_summariser`) and it could summarise the
#: appdata; rows written without one end at `plainname` and still load (`Module.list_keys` asks the
#: summariser then, and the index gets the field when it is next rewritten).
STAMP, DIGEST, PROTECTION, KIND, ACL, APPDATA, PLAINNAME, SUMMARY = slice(0, 3), 3, 4, 5, 6, 7, 8, 9
Row = list

#: (ident, appdata) -> a JSON value, or None when the appdata cannot be summarised. Opaque to the
#: module: the application (the PKCS#11 layer) puts there what it needs about a key to answer a
#: listing without the key (its find index and visibility rules), so a login to 10,000 keys builds
#: no per-key object until one is used. The module never imports its applications: they register.
Summariser = Callable[[str, bytes], Any]
_SUMMARISERS: dict[str, Summariser] = {}


def register_summariser(app: str, summariser: Summariser) -> None:
    """Index rows of `app`'s keys made from now on carry `summariser(ident, appdata)`."""
    _SUMMARISERS[app] = summariser


def summary_of(app: str, ident: str, appdata: bytes) -> Any:
    summariser = _SUMMARISERS.get(app)
    return None if summariser is None else summariser(ident, appdata)


def make_row(stamp: FileStamp, digest: str, protection: str, kind: str, acl: Any, appdata: bytes,
             plainname: str, summary: Any = None) -> Row:
    row = [stamp.mtime_ns, stamp.size, stamp.inode, digest, protection, kind, acl, appdata, plainname]
    if summary is not None:
        row.append(summary)
    return row


def row_matches(row: Row, stamp: FileStamp) -> bool:
    return row[0] == stamp.mtime_ns and row[1] == stamp.size and row[2] == stamp.inode


class KeyIndex:
    """The index files of one world's kmdata."""

    def __init__(self, kmdata: Path, world: str, module_key: bytes) -> None:
        self.folder = kmdata / INDEX_DIR
        self._world = world
        self._module_key = module_key

    def seal_key(self, protection: str, token_blob_key: bytes | None) -> bytes:
        if protection == "module":
            return self._module_key
        if token_blob_key is None:
            raise ValueError(f"a {protection} index is sealed under its token's blob key, and none was given")
        return blobcrypt.derive_subkey(token_blob_key, b"softshield token index")

    def _aad(self, owner: str, protection: str, version: int = INDEX_FORMAT) -> bytes:
        return f"softshield key index\x00{version}\x00{self._world}\x00{owner}\x00{protection}".encode("ascii")

    def _path(self, owner: str, protection: str, version: int = INDEX_FORMAT) -> Path:
        return self.folder / (f"index-{owner}-{protection}" if version == LEGACY_FORMAT
                              else f"index{version}-{owner}-{protection}")

    @staticmethod
    def _owner(token: str | None) -> str:
        return "ua" if token is None else token

    def read(self, token: str | None, protection: str, seal_key: bytes) -> dict[str, Row]:
        """name -> row; empty when there is no usable index (never an error: it is a cache)."""
        owner = self._owner(token)
        rows = self._read(owner, protection, seal_key, INDEX_FORMAT)
        if rows is None:
            rows = self._read(owner, protection, seal_key, LEGACY_FORMAT)
        return rows if rows is not None else {}

    def is_current(self, token: str | None, protection: str) -> bool:
        """Whether the owner's index is there in this release's format (else it is rewritten)."""
        return self._path(self._owner(token), protection).exists()

    def _read(self, owner: str, protection: str, seal_key: bytes, version: int) -> dict[str, Row] | None:
        try:
            sealed = self._path(owner, protection, version).read_bytes()
            body = blobcrypt.unseal(seal_key, sealed, self._aad(owner, protection, version), what="key index")
            head, _newline, tail = body.partition(b"\n") if version != LEGACY_FORMAT else (body, b"", b"")
            try:
                doc = orjson.loads(head)  # the JSON json.dumps wrote, in half json.loads's time
            except orjson.JSONDecodeError:
                doc = json.loads(head)  # json writes a lone surrogate in a name as \udcXX; orjson refuses it
            acls, rows = doc["acls"], doc["rows"]
            if not isinstance(rows, dict) or not isinstance(acls, list):
                return None
            # ACLs are stored once per distinct value (most keys of a token share one or two); the
            # appdata after the document, in row order, each row holding its length.
            start = 0
            for row in rows.values():
                if len(row) > ACL:
                    row[ACL] = acls[row[ACL]]
                    if version == LEGACY_FORMAT:
                        row[APPDATA] = binascii.a2b_base64(row[APPDATA])
                    else:
                        end = start + row[APPDATA]
                        row[APPDATA] = tail[start:end]
                        start = end
        except (OSError, BlobInvalid, ValueError, KeyError, TypeError, IndexError):
            return None
        return rows if start == len(tail) else None

    def write(self, token: str | None, protection: str, seal_key: bytes, rows: dict[str, Row]) -> None:
        owner = self._owner(token)
        acls: list[Any] = []
        refs: dict[str, int] = {}
        stored = {}
        appdata: list[bytes] = []
        for name, row in rows.items():
            if len(row) > ACL:
                text = json.dumps(row[ACL], sort_keys=True, separators=(",", ":"))
                if text not in refs:
                    refs[text] = len(acls)
                    acls.append(row[ACL])
                appdata.append(row[APPDATA])
                row = [*row[:ACL], refs[text], len(row[APPDATA]), *row[APPDATA + 1:]]
            stored[name] = row
        # ensure_ascii (the default) escapes every newline inside the document: the first one ends it.
        body = b"\n".join((json.dumps({"acls": acls, "rows": stored}, separators=(",", ":")).encode("ascii"),
                           b"".join(appdata)))
        ensure_dir(self.folder)
        sweep_dead_temps(self.folder)  # a writer killed between its temp file and the rename
        with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
            write_atomic(self.folder, self._path(owner, protection).name,
                          blobcrypt.seal(seal_key, body, self._aad(owner, protection)), sync_dir=False, sync=False)
