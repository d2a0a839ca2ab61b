"""The module: the one boundary key material crosses, and the one place ACLs are checked.

A `Module` is one emulated HSM (ESN, module key) enrolled in the Security World of one kmdata
directory. Keys live on disk as blobs (see blobs.py) sealed under a world key or a token's logical
key; `load_keys` opens them, `use` hands out material only when the key's ACL permits the action.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import blobs, paths, recovery
from . import keyindex
from .acl import Acl, Action
from .cards import Reader, reader_dir
from .cardsets import CardSetStore, cardset_file
from .crypto import blobcrypt
from .crypto.material import Material
from .errors import (
    AclDenied,
    AclInvalid,
    AuthenticationFailed,
    BlobInvalid,
    InvalidKeyMaterial,
    KeyNameInvalid,
    KeyNotFound,
    QuorumNotMet,
    TokenNotFound,
    WorldStateError,
)
from .keys import IndexedKey, Key
from .kmdata import (FileStamp, KmStore, VersionLedger, content_digest, ensure_dir, read_with_stamp,
                     remember_this_module, stamp_of, this_module)
from .tokens import TokenAuth, TokenInfo, TokenStore
from .world import (
    ModuleFile,
    World,
    WorldFile,
    create_world,
    new_esn,
    open_world_key,
    utc_now_ordered,
)

if TYPE_CHECKING:
    from .nvram import Nvram, NvramAuthority, NvramRef

__all__ = ["Listed", "Module", "TokenAuth", "TokenInfo"]

#: A key `Module.list_keys` lists without making its Key: (file name, its application's summary
#: from the index row). A plain tuple: a login lists thousands.
Listed = tuple[str, object]


@dataclass(frozen=True)
class _Cached:
    """A parsed blob, valid while its file keeps this stamp (and, if token-protected, this login)."""

    stamp: FileStamp
    key: Key
    login_check: str | None  # check value of the logical key that opened it; None: module-protected


class _ListedFrom(NamedTuple):
    """The listing a `Listed` key came from: its owner, and for a token-protected key the login
    (check value and TokenAuth) that opened the token index; None for a module-protected one."""

    token: str | None
    login_check: str | None
    auth: TokenAuth | None


class Module:
    """One emulated nShield module in the world of one kmdata directory."""

    def __init__(self, kmdata_dir: Path, store: KmStore, module_file: ModuleFile,
                 world_file: WorldFile) -> None:
        self.kmdata = kmdata_dir
        self.local = store.local
        self._local_resolved = store.local.resolve()
        self.esn = module_file.esn
        self.world: World = world_file.world
        # A world made by new-world (with an ACS) is an administered estate: cknfast's security
        # assurances apply there (pkcs11_shim/assurance.py); the first-use default world is a dev token.
        self.administered = world_file.acs is not None
        self._store = store
        world_key = open_world_key(world_file, module_file)
        store.attach_ledger(VersionLedger(store.local, blobcrypt.derive_subkey(world_key, b"softshield version ledger"),
                                          self.world.hknso))
        self._module_blob_key = blobcrypt.derive_subkey(world_key, b"softshield module blob")
        # KRE of an administered world (recovery.py): new keys' recovery blobs are encrypted to it.
        self._kre = recovery.RecoveryPublic.of(store, self.world.hknso, world_key) if self.administered else None
        self._hash_key = blobcrypt.derive_subkey(world_key, b"softshield secret key hash")
        self._tokens = TokenStore(store, world_key, self._destroy_token_objects)
        self.reader = Reader(reader_dir(kmdata_dir), ledger=store.ledger)
        self._preload_key = blobcrypt.derive_subkey(world_key, b"softshield preload")
        self.cardsets = CardSetStore(store, world_key, self.world.hknso, self.reader)
        self._cache: dict[str, _Cached] = {}
        self._cache_lock = threading.Lock()
        # Index rows (keyindex.Row) of the blobs this process wrote or read, by file name.
        self._rows: dict[str, keyindex.Row] = {}
        # Keys `list_keys` gave out as `Listed` (no Key made yet), by file name: their rows, and
        # the listing they came from (one `_ListedFrom` shared by all the keys of one listing).
        self._listed: dict[str, keyindex.Row] = {}
        self._listed_from: dict[str, _ListedFrom] = {}
        self._listed_acls: dict[int, tuple[object, Acl]] = {}
        self._index = keyindex.KeyIndex(kmdata_dir, self.world.hknso,
                                        blobcrypt.derive_subkey(world_key, b"softshield key index"))
        self._module_file = module_file

    def __repr__(self) -> str:
        return f"Module(esn={self.esn!r}, kmdata={str(self.kmdata)!r}, hknso={self.world.hknso!r})"

    @functools.cached_property
    def nvram(self) -> Nvram:
        """generatekey nvram=yes keys (nvram.py): made when a key is first loaded, not at open (a
        process that only lists its slots never needs it, nor the NVRAM code: imported here)."""
        from .nvram import Nvram

        return Nvram(self.kmdata, self._module_file, self.world)

    def allocate_nvram(self, authority: NvramAuthority, app: str, ident: str) -> NvramRef:
        """Move key_<app>_<ident>'s blob into this module's NVRAM (nvram.allocate)."""
        from .nvram import allocate

        return allocate(self._store, self.nvram, authority, app, ident)

    # --- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, kmdata: str | os.PathLike | None = None) -> Module:
        """Open the world in `kmdata` (see paths.resolve_kmdata), creating module and world on first use."""
        root = paths.resolve_kmdata(kmdata)
        ensure_dir(root)
        store = KmStore(paths.local_dir(root))
        ensure_dir(store.local)
        if not store.exists(paths.WORLD_FILE):
            with store.writer_lock():
                # Re-check under the lock: a racing process may have created it meanwhile.
                if not store.exists(paths.WORLD_FILE):
                    cls._create(store)
        world_file = WorldFile.from_bytes(store.read(paths.WORLD_FILE))
        return cls(root, store, cls._enrolled_module(root, store, world_file), world_file)

    @staticmethod
    def _create(store: KmStore) -> None:
        # A module keeps its ESN and key across worlds, as an HSM does across new-world.
        modules = Module._module_files(store)
        module_file = modules[0] if modules else ModuleFile(new_esn(), utc_now_ordered(), blobcrypt.random_key())
        if not modules:
            store.write(paths.module_file(module_file.esn), module_file.to_bytes())
        world_file, _ = create_world(module_file)
        # The world file last: its presence is what says "created".
        store.write(paths.WORLD_FILE, world_file.to_bytes())
        store.bump()

    @staticmethod
    def _module_files(store: KmStore) -> list[ModuleFile]:
        found = []
        for name in store.names(paths.MODULE_PREFIX):
            if paths.ESN_RE.match(name[len(paths.MODULE_PREFIX):]):
                found.append(ModuleFile.from_bytes(store.read(name), name))
        return found

    @staticmethod
    def _enrolled_module(root: Path, store: KmStore, world_file: WorldFile) -> ModuleFile:
        """This host's module: the one `this-module` names, else the first enrolled, which the first
        open then records (local/ may also hold other modules' files an operator copied in)."""
        enrolled = [m for m in Module._module_files(store) if m.esn in world_file.module_shares]
        if not enrolled:
            raise WorldStateError(f"no module in {store.local} is enrolled in its world")
        recorded = this_module(root)
        for module_file in enrolled:
            if module_file.esn == recorded:
                return module_file
        if recorded is None:
            remember_this_module(root, enrolled[0].esn)
        return enrolled[0]

    # --- the ACL check -------------------------------------------------------------------------
    def use(self, key: Key, action: Action, *, wrap_key_hash: str | None = None) -> Material:
        """The key's material for `action`: THE single ACL check of the emulator."""
        self._require(key, action, wrap_key_hash)
        if key.material is None:
            raise InvalidKeyMaterial(f"object {self._name(key)} holds no key material")
        return key.material

    def permits(self, key: Key, action: Action, *, wrap_key_hash: str | None = None) -> bool:
        return key.acl.permits(action, wrap_key_hash=wrap_key_hash)

    def _require(self, key: Key, action: Action, wrap_key_hash: str | None = None) -> None:
        self._bind(key)
        if not key.acl.permits(action, wrap_key_hash=wrap_key_hash):
            under = f" under wrapping key {wrap_key_hash}" if action is Action.EXPORT_AS_BLOB and wrap_key_hash else ""
            raise AclDenied(f"key {self._name(key)} does not permit {action.value}{under}")

    def reduce_acl(self, key: Key, keep: Iterable[Action]) -> None:
        """Reduce the key's ACL to `keep` (nShield ReduceACL); storing it again is the caller's call."""
        self._require(key, Action.REDUCE_ACL)
        key.acl = key.acl.reduce(keep)

    def key_hash(self, key: Key) -> str:
        self._bind(key)
        return key.key_hash

    def _bind(self, key: Key) -> None:
        if key._secret_hasher is None:
            key._secret_hasher = self._secret_hash

    def _secret_hash(self, value: bytes) -> str:
        return blobcrypt.keyed_hash40(self._hash_key, value)

    @staticmethod
    def _name(key: Key) -> str:
        return key.ident or f"(session object {key.key_hash})"

    # --- blobs ---------------------------------------------------------------------------------
    def new_ident(self, token: str | None) -> str:
        """A fresh pkcs11 ident: ua<40hex> on the accelerator, uc<token>-<40hex> on a token."""
        suffix = os.urandom(20).hex()
        if token is None:
            return "ua" + suffix
        if not paths.HASH_RE.match(token):
            raise KeyNameInvalid(f"token hash {token!r} is not 40 lowercase hex digits")
        return f"uc{token}-{suffix}"

    def store_key(self, key: Key, auth: TokenAuth | None = None) -> None:
        """Write the key's blob (atomically) and count the change; token protection needs `auth`."""
        name, data, login_check = self._seal(key, auth, {})
        with self._store.writer_lock():
            self._require_owner(key.token)
            stamp = self._store.write(name, data)
            self._store.bump()
        self._remember([(key, name, data, login_check)], [stamp])

    def _seal(self, key: Key, auth: TokenAuth | None,
              checked: dict[str, TokenAuth]) -> tuple[str, bytes, str | None]:
        """The key's file name, its sealed blob and the login check value its cache entry needs.
        A token's login is checked once per token: `checked` keeps the ones already checked."""
        self._bind(key)
        if not key.ident:
            key.ident = self.new_ident(key.token)
        self._check_name(key)
        login_check = None
        if key.protection == "token":
            if key.token is None:
                raise InvalidKeyMaterial("a token-protected key needs an owning token")
            if key.token not in checked:
                checked[key.token] = self._check_auth(auth, key.token)
            seal_key, login_check = self._tokens.blob_key(checked[key.token]), checked[key.token].check_value
        else:
            seal_key = self._module_blob_key
        name = paths.key_file(key.app, key.ident)
        return name, blobs.encode(key, self.world.hknso, seal_key, self._recovery_blob(key, name)), login_check

    def _recovery_blob(self, key: Key, name: str) -> str | None:
        """The recovery section of the key's blob: kept as the key had it when it was stored before
        (its file says), else as the process's policy says for a new key (recovery.POLICY_ENV)."""
        if self._kre is None or key.material is None:
            return None
        if key.recoverable is None:
            existing = self._store.path(name)
            key.recoverable = recovery.recovery_of(existing) if existing.exists() else recovery.enabled_for_new_keys()
        if not key.recoverable:
            return None
        return recovery.recovery_blob(self._kre, self.world.hknso, key.app, key.kind, blobs.material_bytes(key.material))

    def _require_owner(self, token: str | None) -> None:
        if token is not None and not self._store.exists(paths.softcard_file(token)) \
                and not self._store.exists(cardset_file(token)):
            raise TokenNotFound(f"no token {token} in kmdata")

    def store_keys(self, keys: list[Key], auth: TokenAuth | None = None) -> None:
        """Bulk `store_key` (imports, fixtures): every blob durable on return, one sync and one
        change for the lot instead of two fsyncs and a counter write per key."""
        checked: dict[str, TokenAuth] = {}
        sealed = [(key, *self._seal(key, auth, checked)) for key in keys]
        with self._store.writer_lock():
            for token in {k.token for k in keys}:
                self._require_owner(token)
            stamps = self._store.write_many([(name, data) for _key, name, data, _check in sealed])
            self._store.bump()
        self._remember(sealed, stamps)

    def _remember(self, sealed: list[tuple[Key, str, bytes, str | None]], stamps: list[FileStamp]) -> None:
        """The callers' objects are now what these files hold: later loads return these same objects."""
        with self._cache_lock:
            for (key, name, data, login_check), stamp in zip(sealed, stamps):
                key.file_path = self._store.path(name)
                self._cache[name] = _Cached(stamp, key, login_check)
                self._rows[name] = self._row_of(key, stamp, data)

    @staticmethod
    def _row_of(key: Key, stamp: FileStamp, data: bytes) -> keyindex.Row:
        return keyindex.make_row(stamp, content_digest(data), key.protection, key.kind, key.acl.to_dict(),
                                 bytes(key.appdata), key.plainname,
                                 keyindex.summary_of(key.app, key.ident, key.appdata))

    def _check_name(self, key: Key) -> None:
        if not paths.APP_RE.match(key.app) or not paths.IDENT_RE.match(key.ident):
            raise KeyNameInvalid(f"key_{key.app}_{key.ident} is not a valid key file name")
        if key.app == "pkcs11" and paths.owner_of_pkcs11_ident(key.ident) != key.token:
            raise KeyNameInvalid(f"pkcs11 ident {key.ident} does not name the key's owner")

    def delete_key(self, key: Key) -> None:
        """Remove the key's blob (the ACL must permit Destroy) and count the change."""
        self._require(key, Action.DESTROY)
        if not key.ident:
            raise KeyNotFound("a key without an ident was never stored")
        name = paths.key_file(key.app, key.ident)
        with self._store.writer_lock():
            if not self._store.delete(name):
                raise KeyNotFound(f"no {name} in kmdata")
            self._store.bump()
        with self._cache_lock:
            self._cache.pop(name, None)
            self._rows.pop(name, None)
            self._listed.pop(name, None)
            self._listed_from.pop(name, None)
        key.file_path = None

    def _destroy_token_objects(self, token: str) -> None:
        """Every pkcs11 blob of `token` goes (token re-initialisation and deletion, by the SO)."""
        for name in self._store.names(paths.pkcs11_prefix(token)):
            self._store.delete(name)
            with self._cache_lock:
                self._cache.pop(name, None)
                self._rows.pop(name, None)
                self._listed.pop(name, None)
                self._listed_from.pop(name, None)

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
        by_module = _ListedFrom(token, None, None)
        by_login = _ListedFrom(token, login_check, auth)
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
                    and (listed[keyindex.PROTECTION] == "module" or from_get(name).login_check == login_check):
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
                            self._cache[name] = _Cached(stamp, key, login_check if protection == "token" else None)
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
            self._cache[name] = _Cached(stamp, key, login_check)
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

    def load_key_file(self, path: str | os.PathLike, auth: TokenAuth | None = None) -> Key:
        """One blob by path; raises BlobInvalid with the reason, AuthenticationFailed without login."""
        key = self._load(Path(path), auth, listing=False)
        if key is None:  # _load skips a token key without a login (None) only when listing
            raise AuthenticationFailed(f"{Path(path).name}: protected by a token: log in first")
        return key

    def _load(self, path: Path, auth: TokenAuth | None, *, listing: bool) -> Key | None:
        """Parse one blob (or return the cached Key). `listing`: load_keys already checked `auth`,
        and a token-protected blob without a login is skipped (None) rather than an error."""
        what = path.name
        parsed = paths.parse_key_file(path.name)
        if parsed is None:
            raise BlobInvalid(f"{what}: not a key file name (key_<app>_<ident>)")
        in_store = path.parent == self.local or path.parent.resolve() == self._local_resolved
        stamp = stamp_of(path)
        if stamp is None:
            raise KeyNotFound(f"no {path}")
        with self._cache_lock:
            cached = self._cache.get(path.name) if in_store else None
        if cached is not None and cached.stamp == stamp:
            if cached.login_check is None:
                return cached.key
            if auth is not None and auth.token == cached.key.token and auth.check_value == cached.login_check:
                return cached.key
        if in_store:
            data, stamp, stale = self._store.read_current(path.name)
        else:
            (data, stamp), stale = read_with_stamp(path), None
        raw = blobs.parse(data, what)
        blobs.check_binding(raw, world=self.world.hknso, app=parsed[0], ident=parsed[1], what=what)
        raw = self.nvram.complete(raw, what)  # an NVRAM key's sealed part is in this module
        login_check = None
        if raw.header.protection == "token":
            owner = raw.header.token
            if auth is None:
                if listing:
                    if in_store and not stale:
                        with self._cache_lock:  # indexed by stamp and digest only: skipped unread next time
                            self._rows[path.name] = keyindex.make_row(stamp, content_digest(data), "token", "",
                                                                      None, b"", "")[:keyindex.PROTECTION + 1]
                    return None
                raise AuthenticationFailed(f"{what}: protected by token {owner}: log in first")
            if owner is None or auth.token != owner:
                raise AuthenticationFailed(f"{what}: protected by token {owner}, not the logged-in one")
            if not listing:
                auth = self._check_auth(auth, owner)
            seal_key, login_check = self._tokens.blob_key(auth), auth.check_value
        else:
            seal_key = self._module_blob_key
        key = blobs.decode(raw, seal_key, what)
        if stale:
            raise BlobInvalid(f"{what}: {stale}")
        key.file_path = path
        self._bind(key)
        if not in_store:
            return key
        with self._cache_lock:
            current = self._cache.get(path.name)
            if current is not None and current.stamp == stamp and current.login_check == login_check:
                return current.key  # another thread parsed the same version first: share its object
            self._cache[path.name] = _Cached(stamp, key, login_check)
            self._rows[path.name] = keyindex.make_row(stamp, content_digest(data), raw.header.protection,
                                                      raw.header.kind, raw.header.acl, bytes(key.appdata),
                                                      raw.header.plainname,
                                                      keyindex.summary_of(key.app, key.ident, key.appdata))
        return key

    def change_counter(self) -> int:
        """Changes whenever any process stores or deletes a key or changes a token (one small read)."""
        return self._store.change_counter()

    # --- tokens --------------------------------------------------------------------------------
    def _check_auth(self, auth: TokenAuth | None, token: str) -> TokenAuth:
        """A current login to `token`: a card set (OCS) or a softcard / C_InitToken token."""
        if self.cardsets.exists(token):
            return self.cardsets.check(auth, token)
        return self._tokens.check(auth, token)

    def list_tokens(self) -> list[TokenInfo]:
        """Every logical token PKCS#11 shows as a slot: softcards, then card sets (load-sharing mode)."""
        return self._tokens.list() + [c.info() for c in self.cardsets.list()]

    def token_info(self, token: str) -> TokenInfo:
        if self.cardsets.exists(token):
            return self.cardsets.read(token).info()
        return self._tokens.read(token).info()

    def seal_preload(self, auth: TokenAuth) -> bytes:
        """A loaded token for `preload`'s tokens file: usable only by a module of this world."""
        self._check_auth(auth, auth.token)
        return blobcrypt.seal(self._preload_key, auth.logical_key, f"preload\x00{auth.token}".encode())

    def open_preload(self, token: str, sealed: bytes) -> TokenAuth:
        logical_key = blobcrypt.unseal(self._preload_key, sealed, f"preload\x00{token}".encode(),
                                       what="preloaded tokens file")
        return self._check_auth(TokenAuth(token, "user", logical_key), token)

    def key_exists(self, app: str, ident: str) -> bool:
        return self._store.exists(paths.key_file(app, ident))

    def init_token(self, label: str, so_pin: bytes, token: str | None = None) -> TokenInfo:
        """C_InitToken: a new token, or re-initialise one (correct SO PIN; destroys its objects)."""
        return self._tokens.init_token(label, so_pin, token)

    def login(self, token: str, user: str, pin: bytes) -> TokenAuth:
        if self.cardsets.exists(token):
            cardset = self.cardsets.read(token)
            if user != "user":
                raise AuthenticationFailed(f"card set `{cardset.name}' has no security officer")
            if cardset.k > 1:
                raise QuorumNotMet(f"card set `{cardset.name}' needs {cardset.k} cards: "
                                   "log in with C_LoginBegin/C_LoginNext/C_LoginEnd or preload")
            inserted = self.cardsets.inserted(token)
            return self.cardsets.login(token, [(inserted[0], pin)] if inserted else [])
        return self._tokens.login(token, user, pin)

    def init_user_pin(self, token: str, so_auth: TokenAuth, pin: bytes) -> None:
        self._tokens.init_user_pin(token, so_auth, pin)

    def set_pin(self, token: str, user: str, old: bytes, new: bytes) -> TokenAuth:
        return self._tokens.set_pin(token, user, old, new)

    def delete_token(self, token: str, so_auth: TokenAuth) -> None:
        self._tokens.delete_token(token, so_auth)

