"""The attribute answers C_UnwrapKey, C_GenerateKey and C_GenerateKeyPair leave for C_GetAttributeValue in C
(native/answers.h).

Clients read the attributes of every key they make: python-pkcs11 reads ten of them twice (lengths,
then values) after each C_UnwrapKey, and each of those calls entering Python costs about as much as
the rest of a software unwrap, with two GIL hand-overs. The handlers of C_UnwrapKey and C_GenerateKey
therefore write, for the new session object, the encoded values of the attributes clients read (`ANSWERED`) into the
calling thread's staging area; the C entry point keeps them for that session and handle until any
entry point that could change an attribute or its visibility runs (native/answers.h says which).

The staged values are exactly what `abi/objects.c_get_attribute_value` answers: a stored attribute
that takes no computation is its encoding, an attribute the object does not have is
CK_UNAVAILABLE_INFORMATION (CKR_ATTRIBUTE_TYPE_INVALID), and anything else (secret components,
deferred values, attribute arrays) is left out, so that a request naming it goes to Python.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from .. import debuglog
from ..constants import CK_UNAVAILABLE_INFORMATION, Attribute
from ..management import readable_attributes
from ..objects import P11Object
from . import marshal
from .objects import _encode

#: What clients read after making a key: python-pkcs11's make_object list (class and the usage
#: flags, KEM included), plus the attributes tools show for a new key.
ANSWERED: tuple[int, ...] = tuple(int(a) for a in (
    Attribute.CLASS, Attribute.KEY_TYPE, Attribute.TOKEN, Attribute.PRIVATE, Attribute.LABEL, Attribute.ID,
    Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.VERIFY, Attribute.WRAP, Attribute.UNWRAP,
    Attribute.DERIVE, Attribute.SIGN_RECOVER, Attribute.VERIFY_RECOVER, Attribute.ENCAPSULATE,
    Attribute.DECAPSULATE, Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.MODIFIABLE,
    Attribute.COPYABLE, Attribute.DESTROYABLE, Attribute.LOCAL, Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE,
))
#: native/answers.h: SS_ANSWER_TYPES types, SS_ANSWER_BYTES of values.
MAX_TYPES = 32
MAX_VALUE_BYTES = 1024

_ABSENT = object()
_ABSENTS = (_ABSENT,) * len(ANSWERED)
_ULONG = struct.Struct("@L")
_BLOBS: dict[tuple, bytes] = {}
_BLOBS_MAX = 256
_local = threading.local()


def _render(stored: dict[int, Any], full_path: frozenset[int]) -> bytes | None:
    header, values = [], []
    for atype in ANSWERED:
        if atype in stored and atype not in full_path:
            encoded = _encode(atype, stored[atype])
            if encoded.__class__ is list:  # attribute arrays: Python answers them
                continue
            header += (atype, len(encoded))
            values.append(bytes(encoded))
        elif atype not in full_path:
            header += (atype, CK_UNAVAILABLE_INFORMATION)
    data = b"".join(values)
    if len(header) // 2 > MAX_TYPES or len(data) > MAX_VALUE_BYTES:
        return None
    return struct.pack(f"@{len(header) + 1}L", len(header) // 2, *header) + data


def _blob(stored: dict[int, Any], full_path: frozenset[int]) -> bytes:
    """The staged answer for these attributes (b"": nothing can be staged)."""
    try:
        key = (full_path, *map(stored.get, ANSWERED, _ABSENTS))
        blob = _BLOBS.get(key)
    except TypeError:  # an unhashable value: rendered each time
        key, blob = None, None
    if blob is None:
        blob = _render(stored, full_path) or b""
        if key is not None:
            if len(_BLOBS) >= _BLOBS_MAX:
                _BLOBS.clear()
            _BLOBS[key] = blob
    return blob


def stage(obj: P11Object, half: int = 0, memo: dict[frozenset[int], bytes] | None = None) -> None:
    """Leave the answer for `obj`, just made by C_UnwrapKey or C_GenerateKey in the calling thread, to
    the C entry point; C_GenerateKeyPair stages its public half as `half` 0 and its private half as 1.
    Token objects are left to Python (another process may change their blob), and so is everything
    while calls are traced (the trace shows every C_GetAttributeValue).
    `memo`: the answers of earlier objects whose stored attributes are, by their maker's
    construction, this one's but for CKA_UNIQUE_ID, which is never answered in C (keymgmt.unwrap_object:
    one per unwrap template and public attributes), by the attributes left to Python; without it the
    answer is found by the attribute values."""
    lib = marshal.lib
    if lib is None or debuglog.tracing() or obj.is_token:
        return
    stored, full_path = readable_attributes(obj)
    blob = memo.get(full_path) if memo is not None else None
    if blob is None:
        blob = _blob(stored, full_path)
        if memo is not None:
            memo[full_path] = blob
    size = lib.SOFTSHIELD_ANSWER_AREA_SIZE
    if not blob or len(blob) > size:
        return
    area = getattr(_local, "area", None)
    if area is None:
        area = _local.area = lib.softshield_answer_area()  # this thread's own, for its lifetime
    marshal.ffi.memmove(area + half * size if half else area, blob, len(blob))
