"""The module's key blobs on disk: seal and store, load one, delete (`KeyStore`, a base of `Module`).

Keys live on disk as blobs (see blobs.py) sealed under the module key or a token's logical key. Every
write goes through `store_key`/`store_keys` and every read of one blob through `_load`; the parsed
keys are cached by file stamp, so a later load of an unchanged file returns the same Key object.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import blobs, keyindex, paths, recovery
from .acl import Action
from .cardsets import cardset_file
from .errors import AuthenticationFailed, BlobInvalid, InvalidKeyMaterial, KeyNameInvalid, KeyNotFound, TokenNotFound
from .keys import Key
from .kmdata import FileStamp, KmStore, content_digest, read_with_stamp, stamp_of
from .tokens import TokenAuth, TokenStore
from .world import World

if TYPE_CHECKING:
    from .keylisting import ListedFrom


@dataclass(frozen=True)
class Cached:
    """A parsed blob, valid while its file keeps this stamp (and, if token-protected, this login)."""

    stamp: FileStamp
    key: Key
    login_check: str | None  # check value of the logical key that opened it; None: module-protected


class KeyStore:
    """The key blobs of one module. `Module.__init__` (module.py) makes the state annotated below;
    the ACL check (`_require`, `_bind`), the token logins (`_check_auth`) and `nvram` are Module's."""

    world: World
    local: Path
    _local_resolved: Path
    _store: KmStore
    _tokens: TokenStore
    _module_blob_key: bytes
    _kre: recovery.RecoveryPublic | None
    _cache: dict[str, Cached]
    _cache_lock: threading.Lock
    _rows: dict[str, keyindex.Row]
    _listed: dict[str, keyindex.Row]
    _listed_from: dict[str, ListedFrom]

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
                self._cache[name] = Cached(stamp, key, login_check)
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
            self._cache[path.name] = Cached(stamp, key, login_check)
            self._rows[path.name] = keyindex.make_row(stamp, content_digest(data), raw.header.protection,
                                                      raw.header.kind, raw.header.acl, bytes(key.appdata),
                                                      raw.header.plainname,
                                                      keyindex.summary_of(key.app, key.ident, key.appdata))
        return key

    def change_counter(self) -> int:
        """Changes whenever any process stores or deletes a key or changes a token (one small read)."""
        return self._store.change_counter()
