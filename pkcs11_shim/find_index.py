"""The find index of an object store: C_FindObjects answers from buckets keyed by (attribute, value).

`FindIndex` is the part of `ObjectStore` (object_store.py) that files objects in those buckets; the
store's `__init__` makes the tables it works on, and the store's find decides which bucket to read.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .constants import Attribute

if TYPE_CHECKING:
    from .objects import P11Object

#: Attributes indexed for C_FindObjects; a template naming any of them is answered from the index.
INDEXED = (Attribute.CLASS, Attribute.LABEL, Attribute.ID)


def index_key(attr: int, value: Any) -> tuple[int, Any]:
    return (attr, value if not isinstance(value, (bytearray, memoryview)) else bytes(value))


class FindIndex:
    """Filing objects in the find index; a base of `ObjectStore`, whose `__init__` makes these tables
    (the comments there say what each holds)."""

    _index: dict[tuple[int, Any], dict[int, None]]
    _pending: dict[int, P11Object]
    _lock: threading.RLock

    # --- index -------------------------------------------------------------------------------
    def _index_add(self, obj: P11Object) -> None:
        # Kept on the object, so removing it (each C_DestroyObject) reads no attribute; every
        # change of an indexed attribute (reindex, reload) ends here and files it again.
        obj.index_keys = keys = [(attr, bytes(value) if isinstance(value, (bytearray, memoryview)) else value)
                                 for attr, value in obj.index_values().items()]  # `index_key`, inlined
        self._file(obj.handle, keys)

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
            new = [index_key(attr, value) for attr, value in obj.index_values().items()]
            stale = filed | {index_key(attr, old_attrs[attr]) for attr in INDEXED if attr in old_attrs}
            for key in stale.difference(new):
                bucket = self._index.get(key)
                if bucket is not None:
                    bucket.pop(handle, None)
            for key in new:
                if key not in filed:
                    self._index.setdefault(key, {})[handle] = None
            obj.index_keys = new
