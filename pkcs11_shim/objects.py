"""One object handle (`P11Object`) over an emulator key, and nShield's vendor attributes of it.

Token objects are the emulator's keys with their PKCS#11 attributes kept in the blob's authenticated
appdata; a token object loaded from kmdata decodes its attributes on first use. The handles of one
token live in its `ObjectStore` (object_store.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from emulator.keys import Key

from .attributes import codecs
from .constants import Attribute, NCipherAttribute
from .find_index import INDEXED
from .key_summary import EAGER

#: Serialises the one-time decode of a lazily loaded object's attributes (threads share objects).
_DECODE_LOCK = threading.Lock()

def template_matches(attrs: dict[int, Any], template: dict[int, Any]) -> bool:
    """templates.matches, bound on first use: start-up (before the first session) must not
    import the attribute rules."""
    global template_matches
    from .attributes.templates import matches

    template_matches = matches
    return matches(attrs, template)

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
            return template_matches(summary, template)
        attrs = self._attrs if self._attrs is not None else self._decode()
        deferred = self._deferred
        if deferred is not None and not deferred[0].isdisjoint(template):
            self._resolve()
        return template_matches(attrs, template)

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


VENDOR = frozenset(NCipherAttribute)
