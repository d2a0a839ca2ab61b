"""The module: the one boundary key material crosses, and the one place ACLs are checked.

A `Module` is one emulated HSM (ESN, module key) enrolled in the Security World of one kmdata
directory. Keys live on disk as blobs (see blobs.py) sealed under a world key or a token's logical
key; `load_keys` opens them, `use` hands out material only when the key's ACL permits the action.
Storing and loading blobs is `KeyStore`'s (keystore.py), listing an owner's keys `KeyListing`'s
(keylisting.py): bases of `Module` that work on the state its `__init__` makes.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import keyindex, paths, recovery
from .acl import Acl, Action
from .cards import Reader, reader_dir
from .cardsets import CardSetStore
from .crypto import blobcrypt
from .crypto.material import Material
from .errors import AclDenied, AuthenticationFailed, InvalidKeyMaterial, QuorumNotMet, WorldStateError
from .keylisting import KeyListing, ListedFrom
from .keys import Key
from .keystore import Cached
from .kmdata import KmStore, VersionLedger, ensure_dir, remember_this_module, this_module
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

__all__ = ["Module"]


class Module(KeyListing):
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
        self._cache: dict[str, Cached] = {}
        self._cache_lock = threading.Lock()
        # Index rows (keyindex.Row) of the blobs this process wrote or read, by file name.
        self._rows: dict[str, keyindex.Row] = {}
        # Keys `list_keys` gave out as `Listed` (no Key made yet), by file name: their rows, and
        # the listing they came from (one `ListedFrom` shared by all the keys of one listing).
        self._listed: dict[str, keyindex.Row] = {}
        self._listed_from: dict[str, ListedFrom] = {}
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

