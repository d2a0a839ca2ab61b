"""Object handles over the emulator's keys: token objects (kmdata blobs) and session objects.

Each token's `ObjectStore` maps handles to `P11Object`s. Token objects are the emulator's keys with
their PKCS#11 attributes kept in the blob's authenticated appdata; the store notices other processes'
writes through the module's change counter and reconciles without renumbering handles it already
gave out. Lookups are by index (class, label, id), not by scanning every object.

Handles: a token object's handle is derived from its identity (app, ident), so every process and
every module of the world that loads the same kmdata gives the same key the same handle (a client
load-sharing over several modules may use a handle found through one module on another). Session
objects, which exist in one module only, count up from 1. See `token_handle`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Iterable, Iterator

from emulator import keyindex, paths
from emulator.errors import BlobInvalid, KeyNotFound
from emulator.keys import Key

from .attributes import codecs
from .constants import Attribute, CKR, NCipherAttribute
from .errors import PKCS11Error

_handles = itertools.count(1)

#: Token object handles lie in [2**62, 2**63): above anything the session counter reaches, and below
#: the sign bit of hosts that keep a CK_ULONG in a signed 64-bit integer (Java's long).
TOKEN_HANDLE_BASE = 1 << 62


def token_handle(app: str, ident: str, probe: int = 0) -> int:
    """The handle of the token object key_<app>_<ident>: SHA-256 of its identity, 62 bits of it.
    Collision rule: when another identity already holds the handle in the same store, the object
    takes the next probe (probe 1, 2, ...). Two identities collide with probability ~n^2/2^63 (about
    1e-11 with 10,000 keys); only then can two modules that loaded the colliding keys in different
    orders disagree on which of the two got probe 0."""
    digest = hashlib.sha256(f"{app}\0{ident}\0{probe}".encode()).digest()
    return TOKEN_HANDLE_BASE | (int.from_bytes(digest[:8], "big") >> 2)

#: Attributes indexed for C_FindObjects; a template naming any of them is answered from the index.
INDEXED = (Attribute.CLASS, Attribute.LABEL, Attribute.ID)


#: What a token object loaded from kmdata decodes at once: the find index and the visibility rules.
#: The rest of its appdata (and its CKA_NFKM_* attributes, which need the key's hash) is decoded on
#: first use: login with 10,000 token keys then decodes 5 attributes per key instead of ~30.
EAGER = frozenset(INDEXED + (Attribute.TOKEN, Attribute.PRIVATE))

#: The index summary of a pkcs11 key (keyindex.SUMMARY, registered below): what the find index and
#: the visibility rules need, so a login files 10,000 token keys without making their objects.
#: [SUMMARY_FORMAT, probe-0 handle, CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_ID as hex],
#: None for an absent attribute. Another format number is not read (the key is made at once).
SUMMARY_FORMAT = 1
_SUMMARISED = ((Attribute.CLASS, int), (Attribute.TOKEN, bool), (Attribute.PRIVATE, bool), (Attribute.LABEL, str),
               (Attribute.ID, bytes))
_S_HANDLE, _S_PRIVATE = 1, 4
_SUMMARY_POSITION = {Attribute.CLASS: 2, Attribute.LABEL: 5, Attribute.ID: 6}


def index_summary(ident: str, appdata: bytes) -> list | None:
    """keyindex's summariser for app pkcs11: the EAGER attributes of the appdata, exactly as
    `deserialize_some` decodes them (None when a value is of a type the summary does not carry, or
    the appdata is not ours: that key is then made at listing, as without a summary)."""
    try:
        some = codecs.deserialize_some(appdata, EAGER)
    except (ValueError, KeyError, TypeError, PKCS11Error):
        return None
    summary: list[Any] = [SUMMARY_FORMAT, token_handle("pkcs11", ident)]
    for attr, kind in _SUMMARISED:
        value = some.get(attr)
        if value is not None and type(value) is not kind:
            return None
        summary.append(value.hex() if kind is bytes and value is not None else value)
    return summary


def _summary_attrs(summary: list) -> dict[int, Any]:
    """The EAGER attributes a summary holds, typed as `deserialize_some` returns them."""
    attrs = {attr: value for (attr, _kind), value in zip(_SUMMARISED, summary[2:]) if value is not None}
    if Attribute.ID in attrs:
        attrs[Attribute.ID] = bytes.fromhex(attrs[Attribute.ID])
    return attrs


def _summary_index_keys(summary: list) -> list[tuple[int, Any]]:
    """The find-index keys (INDEXED) of a summarised key, in INDEXED order."""
    _format, _handle, klass, _token, _private, label, ident = summary
    keys = []
    if klass is not None:
        keys.append((Attribute.CLASS, klass))
    if label is not None:
        keys.append((Attribute.LABEL, label))
    if ident is not None:
        keys.append((Attribute.ID, bytes.fromhex(ident)))
    return keys


keyindex.register_summariser("pkcs11", index_summary)

#: Serialises the one-time decode of a lazily loaded object's attributes (threads share objects).
_DECODE_LOCK = threading.Lock()

def _matches(attrs: dict[int, Any], template: dict[int, Any]) -> bool:
    """templates.matches, bound on first use: start-up (before the first session) must not
    import the attribute rules."""
    global _matches
    from .attributes.templates import matches

    _matches = matches
    return matches(attrs, template)


_PAUSE_LOCK = threading.Lock()
_pause_depth = 0
_paused_collector = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """CPython's cyclic collector held off while a token's keys are listed or dropped in bulk: a
    login with 10,000 keys makes ~17 tracked objects per key (key, file stamp, cache entry, index
    row, material loader, P11Object, index entries), none in a cycle, and the collector would
    otherwise walk the whole growing heap several times over (its oldest generation runs each time
    the survivors grow by a quarter): about a tenth of such a login.
    Nested and concurrent pauses count; the collector is switched back on only if this pause
    switched it off (a host that disabled it keeps it disabled)."""
    global _pause_depth, _paused_collector
    with _PAUSE_LOCK:
        if _pause_depth == 0:
            _paused_collector = gc.isenabled()
            if _paused_collector:
                gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pause_depth -= 1
            if _pause_depth == 0 and _paused_collector:
                _paused_collector = False
                _age_survivors()
                gc.enable()


def _age_survivors() -> None:
    """Move what the paused stretch allocated (the token's listing: ~7 containers per key, none in
    a cycle, all kept) to the collector's oldest generation, as two collections would, without the
    two walks over it: `gc.freeze()` moves every tracked object to the permanent generation and
    resets the young count, `gc.unfreeze()` moves them all to the oldest one; both are list splices.
    After a login to 10,000 keys, those walks and the full collection they lead to cost ~20 ms of
    the first find. Not when the host keeps objects frozen itself (a pre-fork server does, so its
    children share those pages): unfreezing would undo that."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


#: Deferred on a token object loaded from kmdata (see `P11Object._decode`).
_KEY_HASH = frozenset({NCipherAttribute.NFKM_HASH})


class P11Object:
    """One object handle. `attrs` is the full attribute dict; for a token object loaded from kmdata
    it is decoded from the key's (authenticated) appdata when first asked for, and `peek` answers
    the EAGER attributes without decoding the rest."""

    __slots__ = ("handle", "_attrs", "key", "owner_session", "_appdata", "_summary", "_deferred", "index_keys")

    def __init__(self, handle: int, attrs: dict[int, Any] | None, key: Key, owner_session: int | None = None,
                 *, appdata: bytes | None = None) -> None:
        self.handle, self.key, self.owner_session = handle, key, owner_session
        self._attrs = attrs
        self._appdata = appdata
        self._summary = None if appdata is None else codecs.deserialize_some(appdata, EAGER)
        self._deferred: tuple[frozenset[int], Callable[[], dict[int, Any]]] | None = None
        #: The find-index keys the store filed this object under (`ObjectStore._index_add`).
        self.index_keys: list[tuple[int, Any]] = []

    def defer(self, names: frozenset[int], compute: Callable[[], dict[int, Any]]) -> None:
        """Attributes `names` are computed by `compute()` when first needed, not now: a new
        session object's CKA_CHECK_VALUE (an AES cipher per key, ~10-30 us of each C_UnwrapKey)
        is rarely read. `attrs` (what matching, copying, persisting and sizing use) merges them
        into the same dict first; `peek` and `value` answer every other attribute without."""
        self._deferred = (names, compute)

    def _resolve(self) -> None:
        deferred = self._deferred
        if deferred is None:
            return
        computed = deferred[1]()
        with _DECODE_LOCK:
            if self._deferred is deferred:  # once, even when two threads get here together
                for attr, value in computed.items():
                    self._attrs.setdefault(attr, value)
                self._deferred = None

    def _decode(self) -> dict[int, Any]:
        """The attribute dict of a token object loaded from kmdata, decoded from its appdata once.
        CKA_NFKM_HASH is deferred: it is a keyed hash of the key material, and computing it reads
        and decrypts the blob, which a find or an attribute read that does not ask for it must
        not cost (a find by class among 10,000 keys would decrypt them all)."""
        attrs = self._attrs
        if attrs is None:
            decoded = codecs.deserialize(self._appdata)
            key = self.key
            decoded[NCipherAttribute.NFKM_APPNAME] = key.app
            decoded[NCipherAttribute.NFKM_ID] = key.ident.encode()
            with _DECODE_LOCK:
                if self._attrs is None:  # another thread may have decoded it meanwhile: keep one dict
                    self._attrs, self._appdata, self._summary = decoded, None, None
                    if self._deferred is None:
                        self._deferred = (_KEY_HASH, lambda: {NCipherAttribute.NFKM_HASH: bytes.fromhex(key.key_hash)})
                attrs = self._attrs
        return attrs

    @property
    def attrs(self) -> dict[int, Any]:
        attrs = self._attrs if self._attrs is not None else self._decode()
        if self._deferred is not None:
            self._resolve()  # in place: the dict's identity is what the session check cache holds
        return attrs

    @attrs.setter
    def attrs(self, value: dict[int, Any]) -> None:
        # The new dict was made from the old `attrs`, which had the deferred values merged.
        self._attrs, self._appdata, self._summary, self._deferred = value, None, None, None

    def value(self, attr: int) -> tuple[bool, Any]:
        """(present, value) of one attribute, computing only a deferred one that is asked for."""
        attrs = self._attrs if self._attrs is not None else self._decode()
        deferred = self._deferred
        if deferred is not None and attr in deferred[0]:
            self._resolve()
        if attr in attrs:
            return True, attrs[attr]
        return False, None

    def stored_view(self) -> tuple[dict[int, Any], frozenset[int]]:
        """(the attribute dict, the deferred names it may still lack), without computing them."""
        attrs = self._attrs if self._attrs is not None else self._decode()
        deferred = self._deferred
        return attrs, (deferred[0] if deferred is not None else frozenset())

    def matches(self, template: dict[int, Any]) -> bool:
        """`templates.matches(self.attrs, template)`, computing only the deferred attributes the
        template names (C_FindObjects: no blob is decrypted for a CKA_NFKM_HASH nobody asked for).
        A template of EAGER attributes alone is matched against the summary, without decoding."""
        summary = self._summary
        if summary is not None and EAGER.issuperset(template):
            return _matches(summary, template)
        attrs = self._attrs if self._attrs is not None else self._decode()
        deferred = self._deferred
        if deferred is not None and not deferred[0].isdisjoint(template):
            self._resolve()
        return _matches(attrs, template)

    def reload(self, key: Key) -> None:
        """A newer version of the object from kmdata: its attributes are decoded when next used."""
        with _DECODE_LOCK:
            self.key, self._attrs, self._appdata, self._deferred = key, None, key.appdata, None
            self._summary = codecs.deserialize_some(key.appdata, EAGER)

    def peek(self, attr: int, default: Any = None) -> Any:
        """attrs.get(attr, default), without decoding a lazily loaded object for an EAGER attribute
        and without computing a deferred attribute it is not asked for."""
        summary = self._summary
        if summary is not None and attr in EAGER:
            return summary.get(attr, default)
        # `value`, inlined: every handle check (is_private, is_token, CKA_DESTROYABLE) comes here.
        attrs = self._attrs if self._attrs is not None else self._decode()
        deferred = self._deferred
        if deferred is not None and attr in deferred[0]:
            self._resolve()
        return attrs.get(attr, default)

    def index_values(self) -> dict[int, Any]:
        # One lookup per attribute (this runs for every new object, e.g. each C_UnwrapKey).
        summary = self._summary
        # Deferred attributes are never indexed ones: the dict is read as it is.
        source = summary if summary is not None else (self._attrs if self._deferred is not None else self.attrs)
        return {attr: value for attr in INDEXED if (value := source.get(attr)) is not None}

    @property
    def is_token(self) -> bool:
        # Only session objects have an owner session (`ObjectStore.add`), and CKA_TOKEN never changes
        # after creation (§4.1.3, copy-modifiable only): a session object answers without a lookup
        # (each C_UnwrapKey + C_DestroyObject asks five times).
        return self.owner_session is None and bool(self.peek(Attribute.TOKEN, False))

    @property
    def is_private(self) -> bool:
        return bool(self.peek(Attribute.PRIVATE, False))

    @property
    def material(self) -> Any:
        return self.key.material


def vendor_attributes(key: Key) -> dict[int, Any]:
    """nShield's CKA_NFKM_* attributes, computed from the key rather than stored (cklist shows them)."""
    return {
        NCipherAttribute.NFKM_APPNAME: key.app,
        NCipherAttribute.NFKM_ID: key.ident.encode(),
        NCipherAttribute.NFKM_HASH: bytes.fromhex(key.key_hash),
    }


def _index_key(attr: int, value: Any) -> tuple[int, Any]:
    return (attr, value if not isinstance(value, (bytearray, memoryview)) else bytes(value))


class ObjectStore:
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

    # --- index -------------------------------------------------------------------------------
    def _index_add(self, obj: P11Object) -> None:
        index, handle = self._index, obj.handle
        # Kept on the object, so removing it (each C_DestroyObject) reads no attribute; every
        # change of an indexed attribute (reindex, reload) ends here and files it again.
        obj.index_keys = keys = []
        for attr, value in obj.index_values().items():  # `_index_key`, inlined
            key = (attr, bytes(value) if isinstance(value, (bytearray, memoryview)) else value)
            keys.append(key)
            bucket = index.get(key)
            if bucket is None:
                index[key] = {handle: None}
            else:
                bucket[handle] = None

    def _file(self, handle: int, keys: list[tuple[int, Any]]) -> None:
        index = self._index
        for key in keys:
            bucket = index.get(key)
            if bucket is None:
                index[key] = {handle: None}
            else:
                bucket[handle] = None

    def _unfile(self, handle: int, keys: list[tuple[int, Any]]) -> None:
        for key in keys:
            bucket = self._index.get(key)
            if bucket is not None:
                bucket.pop(handle, None)

    def _index_remove(self, obj: P11Object) -> None:
        if self._pending.pop(obj.handle, None) is None:
            self._unfile(obj.handle, obj.index_keys)
        obj.index_keys = []

    def _flush_pending(self) -> None:
        """File the objects added since the last find (the caller holds the lock)."""
        pending = self._pending
        if pending:
            for obj in pending.values():
                self._index_add(obj)
            pending.clear()

    def reindex(self, obj: P11Object, old_attrs: dict[int, Any]) -> None:
        """File the object under its indexed values after a change; a value that did not change keeps
        its place in its bucket (the find order)."""
        with self._lock:
            self._flush_pending()
            handle, filed = obj.handle, set(obj.index_keys)
            new = [_index_key(attr, value) for attr, value in obj.index_values().items()]
            stale = filed | {_index_key(attr, old_attrs[attr]) for attr in INDEXED if attr in old_attrs}
            for key in stale.difference(new):
                bucket = self._index.get(key)
                if bucket is not None:
                    bucket.pop(handle, None)
            for key in new:
                if key not in filed:
                    self._index.setdefault(key, {})[handle] = None
            obj.index_keys = new

    # --- membership --------------------------------------------------------------------------
    def add(self, attrs: dict[int, Any] | None, key: Key, owner_session: int | None,
            deferred: tuple[frozenset[int], Callable[[], dict[int, Any]]] | None = None) -> P11Object:
        """A new handle; `attrs` None: a token object whose attributes are decoded from the key's
        appdata when first used; `deferred` (names, compute): see `P11Object.defer`, set before
        the handle is visible to any other thread. Filed in the find index when a find next runs."""
        with self._lock:
            handle = self._identity_handle(key) if owner_session is None and key.ident else next(_handles)
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
        handle = self._identity_handle(key) if key.ident else next(_handles)
        holder = self._objects.get(handle)
        if type(holder) is tuple:
            # The same key, listed before without its object: this is a newer version of its file.
            obj = self._promote(handle, holder, key)
            self.reindex(obj, _summary_attrs(holder[1]))
            return obj
        obj = P11Object(handle, None, key, None, appdata=key.appdata)
        summary = obj._summary
        self._objects[handle] = obj
        if summary.get(Attribute.TOKEN) and key.ident:
            self._by_ident[(key.app, key.ident)] = handle
        obj.index_keys = keys = [_index_key(attr, value) for attr in INDEXED
                                 if (value := summary.get(attr)) is not None]
        self._file(handle, keys)
        return obj

    def _add_listed(self, name: str, summary: list) -> None:
        """File a key `Module.list_keys` listed by its index summary, without making it (the caller
        holds the lock). Its handle is the summary's probe-0 `token_handle`, computed from the same
        name when the sealed row was made; any other holder of that handle (a rare collision, or
        this key made earlier from an older version) makes the key now instead."""
        handle = summary[_S_HANDLE]
        objects = self._objects
        holder = objects.get(handle)
        if holder is None:
            objects[handle] = (name, summary)
            self._file(handle, _summary_index_keys(summary))
            return
        if type(holder) is tuple and holder[0] == name:
            if holder[1] is summary:
                return  # listed again, unchanged
            if holder[1] != summary:  # a newer version with other indexed values: refile in place
                self._unfile(handle, _summary_index_keys(holder[1]))
                self._file(handle, _summary_index_keys(summary))
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
        obj.index_keys = _summary_index_keys(placeholder[1])
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
                self._unfile(handle, _summary_index_keys(placeholder[1]))
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
            self._index.get(_index_key(attr, template[attr]), {})
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
        position = _SUMMARY_POSITION[attr]
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

    def candidates(self, template: dict[int, Any]) -> Iterable[P11Object]:
        """Objects that may match (`_candidate_handles`), each made if it is still a placeholder."""
        with self._lock:
            handles = self._candidate_handles(template)
        return [obj for handle in handles if (obj := self.get(handle)) is not None]

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
                if summary[_S_PRIVATE] and not see_private:
                    continue
                if by_summary:
                    if _matches(_summary_attrs(summary), template):
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
                       if (obj[1][_S_PRIVATE] if type(obj) is tuple else obj.is_private)]
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
                        self._file(handle, _summary_index_keys(obj[1]))
                    else:
                        self._index_add(obj)
                self._unfiled.clear()
            else:
                for handle in dropped:
                    obj = objects[handle]
                    if type(obj) is tuple:
                        del objects[handle]
                        self._unfile(handle, _summary_index_keys(obj[1]))
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
        objects, by_ident = self._objects, self._by_ident
        listed = 0
        for entry in entries:
            if type(entry) is tuple:
                name, summary = entry
                if type(summary) is list and len(summary) == 7 and summary[0] == SUMMARY_FORMAT \
                        and type(handle := summary[1]) is int:
                    if handle in objects:
                        self._add_listed(name, summary)
                        continue
                    # `_add_listed`'s common case: a login to a token lists 10,000 of these. It is
                    # filed in the find index when a find first names each attribute.
                    objects[handle] = entry
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
                self._unfile(handle, _summary_index_keys(obj[1]))

    def persist(self, obj: P11Object, auth: Any) -> None:
        """Write a token object's blob (attributes into appdata) and note our own change."""
        stored = {k: v for k, v in obj.attrs.items() if k not in _VENDOR}
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


_VENDOR = frozenset(NCipherAttribute)
_REPORTED: set[str] = set()


def require_object(store: ObjectStore, handle: int, *, code: int = CKR.OBJECT_HANDLE_INVALID) -> P11Object:
    obj = store.get(handle)
    if obj is None:
        raise PKCS11Error(code)
    return obj
