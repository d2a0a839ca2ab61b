"""The per-owner key index: what login needs from every key blob of one owner, in one sealed file.

Opening, authenticating and decrypting a blob costs ~300 us (path lookups, JSON header, ACL parse,
ledger check, GCM): 3 s at login for 10,000 token keys, where SoftHSM2 takes 0.2 s. An index row holds what a listing needs without opening the blob: the file's stamp (mtime, size,
inode) and content digest, and the header fields (protection, kind, ACL, appdata, plainname) that
the blob carries in the clear under its tag, and the owning application's summary of the appdata
(see SUMMARY below). `Module.load_keys` takes a row only when the file's
stamp is the indexed one and the version ledger accepts the indexed digest; any other key is read
from its blob and the index rewritten. The material is read from the blob (and checked against the
digest) when the key is first used.

Files: `<kmdata>/cache/index-<owner>-<protection>`, owner `ua` (the accelerator) or a token hash.
The `module` index is sealed under a world key and lists the token-protected files too, by stamp
and digest only (so a listing without login skips them without reading them); the `token` index,
with their header fields, is sealed under a key derived from the token's logical key, so nothing
about private objects is readable from it without a login (their headers are not secret, but no
more is given away than is already on disk). An index is a cache: a missing, damaged, foreign or
stale one only costs the full read, and it is rewritten (atomically, without fsync) when a
listing had to read blobs.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .crypto import blobcrypt
from .errors import BlobInvalid
from .fileio import FileStamp, ensure_dir, sweep_dead_temps, write_atomic

INDEX_DIR = "cache"
INDEX_FORMAT = 1

#: A row: [mtime_ns, size, inode, digest, protection, kind, acl, appdata (base64), plainname, summary].
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


def make_row(stamp: FileStamp, digest: str, protection: str, kind: str, acl: Any, appdata_b64: str,
             plainname: str, summary: Any = None) -> Row:
    row = [stamp.mtime_ns, stamp.size, stamp.inode, digest, protection, kind, acl, appdata_b64, plainname]
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

    def _aad(self, owner: str, protection: str) -> bytes:
        return f"softshield key index\x00{INDEX_FORMAT}\x00{self._world}\x00{owner}\x00{protection}".encode("ascii")

    @staticmethod
    def _owner(token: str | None) -> str:
        return "ua" if token is None else token

    def read(self, token: str | None, protection: str, seal_key: bytes) -> dict[str, Row]:
        """name -> row; empty when there is no usable index (never an error: it is a cache)."""
        owner = self._owner(token)
        try:
            sealed = (self.folder / f"index-{owner}-{protection}").read_bytes()
            body = blobcrypt.unseal(seal_key, sealed, self._aad(owner, protection), what="key index")
            doc = json.loads(body)
            acls, rows = doc["acls"], doc["rows"]
        except (OSError, BlobInvalid, ValueError, KeyError, TypeError):
            return {}
        if not isinstance(rows, dict) or not isinstance(acls, list):
            return {}
        # ACLs are stored once per distinct value (most keys of a token share one or two).
        for row in rows.values():
            if len(row) > ACL:
                row[ACL] = acls[row[ACL]]
        return rows

    def write(self, token: str | None, protection: str, seal_key: bytes, rows: dict[str, Row]) -> None:
        owner = self._owner(token)
        acls: list[Any] = []
        refs: dict[str, int] = {}
        stored = {}
        for name, row in rows.items():
            if len(row) > ACL:
                text = json.dumps(row[ACL], sort_keys=True, separators=(",", ":"))
                if text not in refs:
                    refs[text] = len(acls)
                    acls.append(row[ACL])
                row = [*row[:ACL], refs[text], *row[ACL + 1:]]
            stored[name] = row
        body = json.dumps({"acls": acls, "rows": stored}, separators=(",", ":")).encode("ascii")
        ensure_dir(self.folder)
        sweep_dead_temps(self.folder)  # a writer killed between its temp file and the rename
        with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
            write_atomic(self.folder, f"index-{owner}-{protection}",
                          blobcrypt.seal(seal_key, body, self._aad(owner, protection)), sync_dir=False, sync=False)
