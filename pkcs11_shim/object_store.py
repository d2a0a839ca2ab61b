"""The objects of one token: `ObjectStore` maps handles to `P11Object`s over the emulator's keys.

Token objects (kmdata blobs) and session objects share one store per token. The store notices other
processes' writes through the module's change counter and reconciles without renumbering handles it
already gave out. Lookups are by index (class, label, id), not by scanning every object
(find_index.py); keys listed by their index summary (key_summary.py) stay placeholders until used.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Iterable

from emulator import paths
from emulator.errors import BlobInvalid, KeyNotFound
from emulator.keys import Key

# `template_matches` is read through its module: it rebinds itself to templates.matches on first use.
from . import objects as p11objects
from .attributes import codecs
from .collector_pause import collector_paused
from .constants import Attribute, CKR
from .errors import PKCS11Error
from .find_index import INDEXED, FindIndex, index_key
from .handles import session_handles, token_handle
from .key_summary import EAGER, S_HANDLE, S_PRIVATE, SUMMARY_FORMAT, SUMMARY_POSITION, summary_attrs, summary_index_keys
from .objects import VENDOR, P11Object, vendor_attributes


class ObjectStore(FindIndex):
    """The objects of one token as this process sees them.

    A token key listed from the sealed key index with its summary (`index_summary`) is held as a
    placeholder, `(file name, summary)`, in the handle's slot of `_objects`: it is filed in the find
    index and answers the visibility rules from its summary, and its Key and P11Object are made
    when a handle is used (`get`) or a find needs more than the summary (`_materialise`). The
    placeholder's slot keeps its place, so the find order and the handle do not change then.

    New objects (C_CreateObject, C_UnwrapKey, ...) are filed in the find index when a find next
    runs (`_pending`, in creation order), not at once: most session keys are used and destroyed
    without any find in between. Token loads file the pending ones first, so the find order stays
    the order objects were loaded or made."""

    def __init__(self, module: Any, token_hash: str | None) -> None:
        self.module = module
        self.token_hash = token_hash
        #: handle -> P11Object, or a placeholder (file name, summary) of a listed token key.
        self._objects: dict[int, P11Object | tuple[str, list]] = {}
        # (app, ident): key_simple_X and its transfer copy key_xferacld_X share the ident X.
        self._by_ident: dict[tuple[str, str], int] = {}
        # Buckets are insertion-ordered (dicts used as ordered sets): C_FindObjects answers in the order
        # objects were loaded or made, which hosts that take "the first private key" rely on
        # (pkcs11-tool --sign ignores --label); handle order says nothing once handles are hashes.
        self._index: dict[tuple[int, Any], dict[int, None]] = {}
        #: Objects added and not yet filed in `_index`, in creation order (see the class docstring).
        self._pending: dict[int, P11Object] = {}
        #: INDEXED attributes under which keys listed by their summaries are not filed yet: a
        #: login files none, the first find naming one files every key under it (`_file_attribute`).
        self._unfiled: set[int] = set()
        self._seen_counter: int | None = None
        self._loaded_private = False
        self._lock = threading.RLock()

    # --- membership --------------------------------------------------------------------------
    def add(self, attrs: dict[int, Any] | None, key: Key, owner_session: int | None,
            deferred: tuple[frozenset[int], Callable[[], dict[int, Any]]] | None = None) -> P11Object:
        """A new handle; `attrs` None: a token object whose attributes are decoded from the key's
        appdata when first used; `deferred` (names, compute): see `P11Object.defer`, set before
        the handle is visible to any other thread. Filed in the find index when a find next runs."""
        with self._lock:
            handle = self._identity_handle(key) if owner_session is None and key.ident else next(session_handles)
            obj = P11Object(handle, attrs, key, owner_session, appdata=key.appdata if attrs is None else None)
            if deferred is not None:
                obj.defer(*deferred)
            self._objects[handle] = obj
            if obj.is_token and key.ident:
                self._by_ident[(key.app, key.ident)] = handle
            self._pending[handle] = obj
            return obj

    def _identity_handle(self, key: Key) -> int:
        """`token_handle` of the key, after the probes other identities in this store hold."""
        probe = 0
        handle = token_handle(key.app, key.ident, probe)
        while (holder := self._objects.get(handle)) is not None and not _holds(holder, key):
            probe += 1
            handle = token_handle(key.app, key.ident, probe)
        return handle

    def _add_loaded(self, key: Key) -> P11Object:
        """`add(None, key, None)` for a token object just listed from kmdata, filed at once (the
        pending objects were filed before the load; the caller holds the lock)."""
        handle = self._identity_handle(key) if key.ident else next(session_handles)
        holder = self._objects.get(handle)
        if type(holder) is tuple:
            # The same key, listed before without its object: this is a newer version of its file.
            obj = self._promote(handle, holder, key)
            self.reindex(obj, summary_attrs(holder[1]))
            return obj
        obj = P11Object(handle, None, key, None, appdata=key.appdata)
        summary = obj._summary
        self._objects[handle] = obj
        if summary.get(Attribute.TOKEN) and key.ident:
            self._by_ident[(key.app, key.ident)] = handle
        obj.index_keys = keys = [index_key(attr, value) for attr in INDEXED
                                 if (value := summary.get(attr)) is not None]
        self._file(handle, keys)
        return obj

    def _add_listed(self, name: str, summary: list) -> None:
        """File a key `Module.list_keys` listed by its index summary, without making it (the caller
        holds the lock). Its handle is the summary's probe-0 `token_handle`, computed from the same
        name when the sealed row was made; any other holder of that handle (a rare collision, or
        this key made earlier from an older version) makes the key now instead."""
        handle = summary[S_HANDLE]
        objects = self._objects
        holder = objects.get(handle)
        if holder is None:
            objects[handle] = (name, summary)
            self._file(handle, summary_index_keys(summary))
            return
        if type(holder) is tuple and holder[0] == name:
            if holder[1] is summary:
                return  # listed again, unchanged
            if holder[1] != summary:  # a newer version with other indexed values: refile in place
                self._unfile(handle, summary_index_keys(holder[1]))
                self._file(handle, summary_index_keys(summary))
            objects[handle] = (name, summary)
            return
        key = self._listed_key(name)
        if key is None:
            return
        existing = objects.get(self._identity_handle(key))
        if isinstance(existing, P11Object) and existing.owner_session is None \
                and (existing.key.app, existing.key.ident) == (key.app, key.ident):
            if existing.key is not key:
                old = existing.index_values()
                existing.reload(key)
                self.reindex(existing, old)
            return
        self._add_loaded(key)

    def _listed_key(self, name: str) -> Key | None:
        try:
            return self.module.listed_key(name)
        except (KeyNotFound, BlobInvalid) as exc:
            _report(str(exc))
            return None

    def _promote(self, handle: int, placeholder: tuple[str, list], key: Key) -> P11Object:
        """The object of a placeholder, in its slot: same handle, same place in the find order."""
        obj = P11Object(handle, None, key, None, appdata=key.appdata)
        obj.index_keys = summary_index_keys(placeholder[1])
        self._objects[handle] = obj
        if key.ident and obj.is_token:
            self._by_ident[(key.app, key.ident)] = handle
        return obj

    def _materialise(self, handle: int, placeholder: tuple[str, list]) -> P11Object | None:
        """Make a listed key's object now (the lock is taken here); None when its file went or no
        longer verifies since the listing (the handle is then invalid)."""
        with self._lock:
            current = self._objects.get(handle)
            if current is not placeholder:  # another thread made it (or it went) meanwhile
                return current if type(current) is not tuple else self._materialise(handle, current)
            key = self._listed_key(placeholder[0])
            if key is None:
                del self._objects[handle]
                self._unfile(handle, summary_index_keys(placeholder[1]))
                return None
            return self._promote(handle, placeholder, key)

    def remove(self, obj: P11Object) -> None:
        with self._lock:
            if self._objects.get(obj.handle) is obj:
                del self._objects[obj.handle]
            if obj.is_token:
                self._by_ident.pop((obj.key.app, obj.key.ident), None)
            self._index_remove(obj)

    def get(self, handle: int) -> P11Object | None:
        obj = self._objects.get(handle)
        if type(obj) is tuple:
            return self._materialise(handle, obj)
        return obj

    def all(self) -> Iterable[P11Object]:
        with self._lock:
            handles = list(self._objects)
        return [obj for handle in handles if (obj := self.get(handle)) is not None]

    def _candidate_handles(self, template: dict[int, Any]) -> Iterable[int]:
        """Handles that may match: the smallest index bucket named by the template, else all (the
        caller holds the lock)."""
        self._flush_pending()
        for attr in INDEXED:
            if attr in self._unfiled and attr in template:
                with collector_paused():  # a bucket per key, as at a login
                    self._file_attribute(attr)
        buckets = [
            self._index.get(index_key(attr, template[attr]), {})
            for attr in INDEXED
            if attr in template
        ]
        return list(min(buckets, key=len) if buckets else self._objects)

    def _file_attribute(self, attr: int) -> None:
        """File every object under `attr` anew, in `_objects` order (the order they were loaded or
        made): the listed keys from their summaries, the others under the keys they were filed
        under (the caller holds the lock and has filed the pending objects)."""
        index = self._index
        for key in [key for key in index if key[0] == attr]:
            del index[key]
        position = SUMMARY_POSITION[attr]
        for handle, obj in self._objects.items():
            if type(obj) is tuple:
                value = obj[1][position]
                if value is None:
                    continue
                key = (attr, bytes.fromhex(value) if attr == Attribute.ID else value)
            else:
                key = next((key for key in obj.index_keys if key[0] == attr), None)
                if key is None:
                    continue
            bucket = index.get(key)
            if bucket is None:
                index[key] = {handle: None}
            else:
                bucket[handle] = None
        self._unfiled.discard(attr)

    def find(self, template: dict[int, Any], see_private: bool) -> list[int]:
        """C_FindObjectsInit: the handles of the objects matching `template`, private ones only when
        `see_private`, in the order they were loaded or made. A listed key whose object is not made
        yet answers from its index summary when the template names only summarised attributes
        (a find by label among 10,000 listed keys makes one object, a find by class none)."""
        with self._lock:
            handles = self._candidate_handles(template)
            objects = self._objects
            by_summary = EAGER.issuperset(template)
        found = []
        for handle in handles:
            obj = objects.get(handle)
            if type(obj) is tuple:
                summary = obj[1]
                if summary[S_PRIVATE] and not see_private:
                    continue
                if by_summary:
                    if p11objects.template_matches(summary_attrs(summary), template):
                        found.append(handle)
                    continue
                obj = self._materialise(handle, obj)
            if obj is not None and (see_private or not obj.is_private) and obj.matches(template):
                found.append(handle)
        return found

    def forget_all(self) -> None:
        with self._lock:
            self._objects.clear()
            self._by_ident.clear()
            self._index.clear()
            self._pending.clear()
            self._unfiled.clear()
            self._seen_counter = None
            self._loaded_private = False

    def drop_private(self) -> None:
        """C_Logout: private objects' handles become invalid (§5.6.10)."""
        with self._lock, collector_paused():
            self._flush_pending()
            objects = self._objects
            dropped = [handle for handle, obj in objects.items()
                       if (obj[1][S_PRIVATE] if type(obj) is tuple else obj.is_private)]
            if len(dropped) * 2 > len(objects):
                # Most of the token goes (a logout from 10,000 private keys): rebuilding the index
                # from what stays, in its order, is cheaper than unindexing each object.
                for handle in dropped:
                    obj = objects.pop(handle)
                    if type(obj) is not tuple and obj.is_token:
                        self._by_ident.pop((obj.key.app, obj.key.ident), None)
                self._index.clear()
                for handle, obj in objects.items():
                    if type(obj) is tuple:
                        self._file(handle, summary_index_keys(obj[1]))
                    else:
                        self._index_add(obj)
                self._unfiled.clear()
            else:
                for handle in dropped:
                    obj = objects[handle]
                    if type(obj) is tuple:
                        del objects[handle]
                        self._unfile(handle, summary_index_keys(obj[1]))
                    else:
                        self.remove(obj)
            self._loaded_private = False
            self._seen_counter = None

    def drop_session_objects(self, session_handle: int) -> None:
        with self._lock:
            for obj in [o for o in self._objects.values()
                        if type(o) is not tuple and o.owner_session == session_handle]:
                self.remove(obj)

    # --- persistence ---------------------------------------------------------------------------
    def sync(self, auth: Any = None, *, force: bool = False) -> None:
        """Load token objects written by this or another process since the last look."""
        if self.token_hash == "":
            return  # the spare, uninitialised token holds nothing
        counter = self.module.change_counter()
        want_private = auth is not None
        with self._lock:
            if not force and counter == self._seen_counter and want_private == self._loaded_private:
                return
            with collector_paused():
                self._sync(counter, auth, want_private)

    def _sync(self, counter: int, auth: Any, want_private: bool) -> None:
        """`sync`'s work, under the store lock with the collector paused."""
        entries, problems = self.module.list_keys(self.token_hash, auth)
        for problem in problems:
            _report(problem)  # a blob that fails to verify is left out, never fatal
        self._flush_pending()  # objects made before this load come first in the find order
        had_objects = bool(self._objects)
        objects, by_ident, unfiled = self._objects, self._by_ident, self._unfiled
        listed = 0
        for entry in entries:
            if type(entry) is tuple:
                name, summary = entry
                if type(summary) is list and len(summary) == 7 and summary[0] == SUMMARY_FORMAT \
                        and type(handle := summary[1]) is int:
                    if handle in objects:
                        self._add_listed(name, summary)
                        continue
                    # `_add_listed`'s common case: a login to a token lists 10,000 of these. At the
                    # first listing it is filed in the find index when a find first names each
                    # attribute; later, a key another process made is filed alone, under the
                    # attributes the index already holds.
                    objects[handle] = entry
                    if had_objects:
                        self._file(handle, [key for key in summary_index_keys(summary) if key[0] not in unfiled])
                    else:
                        listed += 1
                    continue
                key = self._listed_key(name)  # a summary of another format: the key now
                if key is None:
                    continue
            else:
                key = entry
            handle = by_ident.get((key.app, key.ident))
            existing = objects.get(handle) if handle is not None else None
            if existing is not None and existing.key is key:
                continue
            if existing is not None:
                old = existing.index_values()
                existing.reload(key)
                self.reindex(existing, old)
            else:
                self._add_loaded(key)
        if listed:
            self._unfiled.update(INDEXED)
        if had_objects:
            self._drop_gone(entries)
        self._seen_counter = counter
        self._loaded_private = want_private

    def _drop_gone(self, entries: list[Any]) -> None:
        """Token objects the listing no longer has: gone only if their file is gone (a key this
        process is writing right now may be missing from a listing taken a moment before its
        rename)."""
        present_keys = {(e.app, e.ident) for e in entries if type(e) is not tuple}
        present_names = {e[0] for e in entries if type(e) is tuple}
        for name, handle in list(self._by_ident.items()):
            obj = self._objects.get(handle)
            if name in present_keys or obj is None or type(obj) is tuple:
                continue
            if paths.key_file(*name) in present_names:
                continue  # listed by its summary
            path = obj.key.file_path
            if path is not None and not os.path.exists(path):
                self.remove(obj)
        folder = getattr(self.module, "local", None)
        for handle, obj in list(self._objects.items()):
            if type(obj) is tuple and obj[0] not in present_names and \
                    (folder is None or not os.path.exists(os.path.join(folder, obj[0]))):
                del self._objects[handle]
                self._unfile(handle, summary_index_keys(obj[1]))

    def persist(self, obj: P11Object, auth: Any) -> None:
        """Write a token object's blob (attributes into appdata) and note our own change."""
        stored = {k: v for k, v in obj.attrs.items() if k not in VENDOR}
        obj.key.appdata = codecs.serialize(stored)
        obj.key.plainname = str(obj.attrs.get(Attribute.LABEL) or "")  # nShield: the label is the plainname
        self.module.store_key(obj.key, auth if obj.key.protection == "token" else None)
        with self._lock:
            self._by_ident[(obj.key.app, obj.key.ident)] = obj.handle
            obj.attrs.update(vendor_attributes(obj.key))
            self._seen_counter = None  # our own write: re-check on the next sync

    def delete(self, obj: P11Object) -> None:
        if obj.is_token:
            self.module.delete_key(obj.key)
        self.remove(obj)



def _holds(holder: P11Object | tuple[str, list], key: Key) -> bool:
    """Whether the object (or placeholder) in a handle's slot is the key `key` (same identity)."""
    if type(holder) is tuple:
        return holder[0] == paths.key_file(key.app, key.ident)
    return (holder.key.app, holder.key.ident) == (key.app, key.ident)


def _report(problem: str) -> None:
    """Say why a key was not loaded, once per process."""
    if problem not in _REPORTED:
        _REPORTED.add(problem)
        logging.getLogger("softshield").warning("key not loaded: %s", problem)



_REPORTED: set[str] = set()


def require_object(store: ObjectStore, handle: int, *, code: int = CKR.OBJECT_HANDLE_INVALID) -> P11Object:
    obj = store.get(handle)
    if obj is None:
        raise PKCS11Error(code)
    return obj
