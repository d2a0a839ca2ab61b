"""Listing one owner's keys (`KeyListing`, a base of `Module`): from the cache, the index, the blobs.

A listing answers from the Keys already cached, then from the owner's sealed index (keyindex.py: no
blob opened until its key is used), and reads only the blobs neither knows; `list_keys` gives a key
whose index row carries its application's summary as a `Listed` entry, made into a Key on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import NamedTuple

from . import blobs, keyindex, paths
from .acl import Acl
from .errors import AclInvalid, AuthenticationFailed, BlobInvalid, KeyNameInvalid, KeyNotFound, TokenNotFound
from .keys import IndexedKey, Key
from .kmdata import FileStamp, content_digest, stamp_of
from .keystore import Cached, KeyStore
from .tokens import TokenAuth

#: A key `Module.list_keys` lists without making its Key: (file name, its application's summary
#: from the index row). A plain tuple: a login lists thousands.
Listed = tuple[str, object]


class ListedFrom(NamedTuple):
    """The listing a `Listed` key came from: its owner, and for a token-protected key the login
    (check value and TokenAuth) that opened the token index; None for a module-protected one."""

    token: str | None
    login_check: str | None
    auth: TokenAuth | None


class KeyListing(KeyStore):
    """Listing the keys of one owner; `Module.__init__` (module.py) makes the state annotated here
    and in `KeyStore`, and `_secret_hash` and `nvram` are Module's."""

    _index: keyindex.KeyIndex
    _listed_acls: dict[int, tuple[object, Acl]]

    def load_keys(self, token: str | None, auth: TokenAuth | None = None) -> tuple[list[Key], list[str]]:
        """Every pkcs11 key of one owner (accelerator when `token` is None), token-protected ones
        only with a current `auth`. A blob that fails to load is a one-line problem, never an abort.
        Unchanged files come from the cache (the same Key objects) or from the owner's sealed index
        (keyindex.py: no blob opened until its key is used); the rest are read, and then indexed."""
        entries, problems = self._list(token, auth, lazy=False)
        return entries, problems  # type: ignore[return-value]

    def list_keys(self, token: str | None, auth: TokenAuth | None = None) -> tuple[list[Key | Listed], list[str]]:
        """`load_keys`, except that a key known from an index row that carries its application's
        summary (keyindex.SUMMARY) comes as a `Listed` (file name, summary) instead of a Key: the
        application files it by the summary and asks `listed_key(name)` for the Key only when the key
        is used. In the listing's order, as `load_keys`. A row without a summary gets one here from
        the application's summariser (rows written by a release without it), and the index is
        rewritten with it."""
        return self._list(token, auth, lazy=True)

    def _list(self, token: str | None, auth: TokenAuth | None, *, lazy: bool) -> tuple[list[Key | Listed], list[str]]:
        problems: list[str] = []
        if token is not None and auth is not None:
            try:
                auth = self._check_auth(auth, token)
            except (AuthenticationFailed, TokenNotFound, BlobInvalid) as exc:
                problems.append(f"token-protected keys skipped: {exc}")
                auth = None
        elif token is None:
            auth = None  # the accelerator has no login
        prefix = paths.pkcs11_prefix(token)
        # The other apps' blobs (`_named_keys`) come from the same directory read.
        listing, named = self._store.scan_and_names(prefix, paths.KEY_PREFIX, paths.pkcs11_prefix(None)[:-2])
        token_blob_key = self._tokens.blob_key(auth) if auth is not None else None
        seal_keys = {"module": self._module_blob_key}
        if token_blob_key is not None:
            seal_keys["token"] = token_blob_key
        indexed: dict[str, keyindex.Row] | None = None  # read only if some file is not in the cache
        module_unread = False  # the module index, read only when the token index lacks a name
        indexed_get: Callable[[str], keyindex.Row | None] | None = None
        accepts: Callable[[str, str], bool] | None = None
        recorded: Mapping[str, object] = {}  # the names the version ledger holds versions of
        login_check = auth.check_value if auth is not None else None
        acls: dict[int, tuple[object, Acl]] = {}
        keys: list[Key | Listed] = []
        listed_of, listed_from = self._listed, self._listed_from
        # Single dict lookups need no lock (they are atomic); what this loop adds to the tables
        # goes in under the lock at the end. A login lists 10,000 keys through here: the first
        # login of a process has an empty cache and no listed keys, and skips both lookups.
        cache_get = self._cache.get if self._cache else None
        listed_get = listed_of.get if lazy and listed_of else None
        from_get = listed_from.get
        keys_append = keys.append
        by_module = ListedFrom(token, None, None)
        by_login = ListedFrom(token, login_check, auth)
        listed_module: dict[str, keyindex.Row] = {}  # new Listed entries, by the seal of their rows
        listed_token: dict[str, keyindex.Row] = {}
        read = 0  # blobs opened because neither the cache nor the index knew their version
        upgraded = 0  # index rows that got their summary here
        for name, stamp in listing:
            if cache_get is not None and (cached := cache_get(name)) is not None and cached.stamp == stamp:
                if cached.login_check is None or (auth is not None and auth.token == cached.key.token
                                                  and cached.login_check == login_check):
                    keys_append(cached.key)
                    continue
            if listed_get is not None and (listed := listed_get(name)) is not None \
                    and keyindex.row_matches(listed, stamp) \
                    and (listed[keyindex.PROTECTION] == "module"
                         or ((source := from_get(name)) is not None and source.login_check == login_check)):
                keys_append((name, listed[keyindex.SUMMARY]))  # listed before, unchanged since
                continue
            if indexed_get is None:
                # Logged in, the token index has every token-protected row with its header fields;
                # the module index adds only the module-protected keys, which most tokens lack.
                if token_blob_key is not None:
                    indexed = self._index.read(token, "token", self._index.seal_key("token", token_blob_key))
                    module_unread = True
                else:
                    indexed = self._index.read(token, "module", self._index.seal_key("module", None))
                self._listed_acls = {}  # the documents of the previous index read go with it
                indexed_get = indexed.get
                ledger = self._store.ledger
                if ledger is not None:
                    recorded = ledger.recorded()
                    accepts = ledger.digest_check(recorded)
            row = indexed_get(name)
            if row is None and module_unread:
                module_unread = False
                rows = self._index.read(token, "module", self._index.seal_key("module", None))
                rows.update(indexed)  # a token row has the header fields its module row lacks
                indexed = rows
                indexed_get = indexed.get
                row = indexed_get(name)
            # keyindex.row_matches, inlined; the ledger asked only about names it holds versions of
            if row is not None and row[0] == stamp[0] and row[1] == stamp[1] and row[2] == stamp[2] \
                    and (name not in recorded or accepts(name, row[keyindex.DIGEST])):
                protection = row[keyindex.PROTECTION]
                if protection == "token" and auth is None:
                    with self._cache_lock:
                        self._rows.setdefault(name, row)
                    continue  # listed without login: skipped, as the blob itself would be
                if lazy and protection in seal_keys:
                    if len(row) == keyindex.SUMMARY and self._summarise(name, row):
                        upgraded += 1
                    if len(row) > keyindex.SUMMARY:
                        # The row, summary included, is authenticated by the index's seal (the
                        # module key, or the token's logical key) and tied to this file version by
                        # its stamp and the ledger's digest check: only this module wrote it, from
                        # the blob's own appdata. The Key is made from the same row (`listed_key`).
                        (listed_token if protection == "token" else listed_module)[name] = row
                        keys_append((name, row[keyindex.SUMMARY]))
                        continue
                if len(row) > keyindex.ACL and protection in seal_keys:
                    key = self._indexed_key(name, row, stamp, seal_keys[protection], token, acls)
                    if key is not None:
                        with self._cache_lock:
                            self._cache[name] = Cached(stamp, key, login_check if protection == "token" else None)
                            self._rows[name] = row
                        keys_append(key)
                        continue
            read += 1
            try:
                key = self._load(self._store.path(name), auth, listing=True)
            except (KeyNotFound, FileNotFoundError):
                continue  # deleted by another process between the listing and the read
            except (BlobInvalid, KeyNameInvalid) as exc:
                problems.append(str(exc))
                continue
            if key is not None:
                keys.append(key)
        for name in self._named_keys(token, named):
            try:
                key = self._load(self._store.path(name), auth, listing=True)
            except (KeyNotFound, FileNotFoundError):
                continue
            except (BlobInvalid, KeyNameInvalid) as exc:
                problems.append(str(exc))
                continue
            if key is not None:
                keys.append(key)
        present = dict(listing).keys()
        with self._cache_lock:
            for new, source in ((listed_module, by_module), (listed_token, by_login)):
                listed_of.update(new)
                self._rows.update(new)
                listed_from.update(dict.fromkeys(new, source))
            for table in (self._cache, self._rows, listed_of, listed_from):
                if not table.keys() <= present:  # set operations in C: a login lists 10,000 names
                    for name in [n for n in table.keys() - present if n.startswith(prefix)]:
                        del table[name]
        gone = 0 if indexed is None or indexed.keys() <= present else len(indexed.keys() - present)
        # Rewriting the index is O(keys): not for every blob another process adds between two of
        # our listings (each is read once, then cached here), only when a fresh process would
        # otherwise re-read (or re-summarise) more than 1/256 of them at every login.
        if read + upgraded > len(present) // 256 or gone > len(present) // 8 or (
                indexed is not None and not self._index.is_current(token, "token" if token_blob_key else "module")):
            self._write_index(token, listing, token_blob_key)
        return keys, problems

    @staticmethod
    def _summarise(name: str, row: keyindex.Row) -> bool:
        """Give an index row written without a summary its application's summary (in place)."""
        app, ident = name[len(paths.KEY_PREFIX):].split("_", 1)
        try:
            summary = keyindex.summary_of(app, ident, row[keyindex.APPDATA])
        except (ValueError, TypeError):
            return False
        if summary is None:
            return False
        row.append(summary)
        return True

    def listed_key(self, name: str) -> Key:
        """The Key of a `Listed` entry of the last `list_keys`, made from its index row now (then
        cached like any loaded key). Raises KeyNotFound when the file left the listing since, and
        BlobInvalid when the row is unusable and its blob does not verify."""
        with self._cache_lock:
            row, source = self._listed.get(name), self._listed_from.get(name)
        if row is None or source is None:
            raise KeyNotFound(f"{name} is not listed (deleted or changed since): list the keys again")
        token, login_check, auth = source
        stamp = FileStamp(row[0], row[1], row[2])
        with self._cache_lock:
            cached = self._cache.get(name)
        if cached is not None and cached.stamp == stamp and cached.login_check == login_check:
            return cached.key
        seal_key = self._tokens.blob_key(auth) if auth is not None else self._module_blob_key
        key = self._indexed_key(name, row, stamp, seal_key, token, self._listed_acls)
        if key is None:  # an unusable row (it was authenticated, so a bug or version skew): the blob
            key = self._load(self._store.path(name), auth, listing=True)
            if key is None:
                raise KeyNotFound(f"{name}: protected by a token that is no longer logged in")
            return key
        with self._cache_lock:
            current = self._cache.get(name)
            if current is not None and current.stamp == stamp and current.login_check == login_check:
                return current.key  # another thread made it first: share its object
            self._cache[name] = Cached(stamp, key, login_check)
        return key

    def _indexed_key(self, name: str, row: keyindex.Row, stamp: FileStamp, seal_key: bytes, token: str | None,
                     acls: dict[int, tuple[object, Acl]]) -> Key | None:
        """A key from its index row; None when the row is unusable (then the blob is read)."""
        acl_doc = row[keyindex.ACL]
        # Rows share their ACL documents (keyindex.read): one parse per document, kept beside it so
        # that its id cannot be reused by another document while the entry lives.
        seen = acls.get(id(acl_doc))
        try:
            if seen is not None and seen[0] is acl_doc:
                acl = seen[1]
            else:
                acl = Acl.from_dict(acl_doc)
                acls[id(acl_doc)] = (acl_doc, acl)
            appdata = row[keyindex.APPDATA]
            if type(appdata) is not bytes:
                raise TypeError("index row appdata is not bytes")
        except (AclInvalid, ValueError, TypeError):
            return None  # an index is only a cache: read the blob instead
        app, ident = name[len(paths.KEY_PREFIX):].split("_", 1)
        read_material, secret_hash = self._listing_callables
        loader = functools.partial(read_material, name, row[keyindex.DIGEST], seal_key)
        return IndexedKey.listed(row[keyindex.KIND], loader, acl,
                                 app=app, ident=ident, protection=row[keyindex.PROTECTION], token=token,
                                 appdata=appdata, plainname=row[keyindex.PLAINNAME],
                                 folder=self.local, file_name=name, secret_hasher=secret_hash)

    @functools.cached_property
    def _listing_callables(self) -> tuple[Callable[..., object], Callable[[bytes], str]]:
        """One bound method of each shared by every indexed key (each key's loader is a partial of
        it): a login to 10,000 keys keeps all their loaders and hashers, and a closure (function
        and cells) or bound method per key would be ~6 more objects per key allocated and then
        walked by the cyclic collector."""
        return self._read_blob_material, self._secret_hash

    def _read_blob_material(self, name: str, digest: str, seal_key: bytes) -> object:
        """An indexed key's material, read when first used: the file must still hold the indexed
        bytes (a replacement since the listing is refused) and the ledger must still accept them."""
        try:
            data, _stamp, stale = self._store.read_current(name)
        except FileNotFoundError:
            raise KeyNotFound(f"{name}: deleted since it was listed") from None
        if content_digest(data) != digest:
            raise BlobInvalid(f"{name}: replaced on disk since it was listed: list the keys again")
        raw = blobs.parse(data, name)
        app, ident = name[len(paths.KEY_PREFIX):].split("_", 1)
        blobs.check_binding(raw, world=self.world.hknso, app=app, ident=ident, what=name)
        raw = self.nvram.complete(raw, name)  # an NVRAM key's sealed part is in this module
        material = blobs.decode(raw, seal_key, name).material
        if stale:
            raise BlobInvalid(f"{name}: {stale}")
        return material

    def _write_index(self, token: str | None, listing: list[tuple[str, FileStamp]],
                     token_blob_key: bytes | None) -> None:
        """Rewrite the owner's index from the rows of the files listed (current stamps only)."""
        module_rows: dict[str, keyindex.Row] = {}
        token_rows: dict[str, keyindex.Row] = {}
        with self._cache_lock:
            for name, stamp in listing:
                row = self._rows.get(name)
                if row is None or not keyindex.row_matches(row, stamp):
                    continue
                if row[keyindex.PROTECTION] == "module":
                    module_rows[name] = row
                else:
                    module_rows[name] = row[:keyindex.PROTECTION + 1]
                    if len(row) > keyindex.ACL:
                        token_rows[name] = row
        self._index.write(token, "module", self._index.seal_key("module", None), module_rows)
        if token_blob_key is not None:
            self._index.write(token, "token", self._index.seal_key("token", token_blob_key), token_rows)

    def _named_keys(self, token: str | None, names: list[str]) -> list[str]:
        """Of `names`, the blobs of other apps (`simple`, ...; the pkcs11 blobs, thousands on a big
        token, are left out by the listing) owned by `token`: their idents do not name the owner,
        their headers do (read without decrypting; unchanged files answer from the cache)."""
        found = []
        for name in names:
            path = self._store.path(name)
            with self._cache_lock:
                cached = self._cache.get(name)
            if cached is not None and cached.stamp == stamp_of(path):
                owner = cached.key.token
            else:
                try:
                    owner = blobs.parse(path.read_bytes(), name).header.token
                except (BlobInvalid, OSError):
                    found.append(name)  # _load reports why it is unusable
                    continue
            if owner == token:
                found.append(name)
        return found

