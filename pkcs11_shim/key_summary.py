"""The index summary of a pkcs11 key: what a token object listed from the sealed key index carries.

The module's key index (emulator/keyindex.py) keeps, per key, the summary the application registers a
summariser for; a login lists token keys by it, and `ObjectStore` holds each as a placeholder
(file name, summary) until its handle is used.
"""

from __future__ import annotations

from typing import Any

from emulator import keyindex

from .attributes import codecs
from .constants import Attribute
from .errors import PKCS11Error
from .find_index import INDEXED
from .handles import token_handle

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
S_HANDLE, S_PRIVATE = 1, 4
SUMMARY_POSITION = {Attribute.CLASS: 2, Attribute.LABEL: 5, Attribute.ID: 6}


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


def summary_attrs(summary: list) -> dict[int, Any]:
    """The EAGER attributes a summary holds, typed as `deserialize_some` returns them."""
    attrs = {attr: value for (attr, _kind), value in zip(_SUMMARISED, summary[2:]) if value is not None}
    if Attribute.ID in attrs:
        attrs[Attribute.ID] = bytes.fromhex(attrs[Attribute.ID])
    return attrs


def summary_index_keys(summary: list) -> list[tuple[int, Any]]:
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
