"""Object management (PKCS#11 3.0 §5.7)."""

from __future__ import annotations

from typing import Any

from .. import library, management
from ..attributes import codecs, templates
from ..constants import CK_UNAVAILABLE_INFORMATION, CKR
from ..errors import PKCS11Error
from . import marshal
from .handlers import handler

#: §5.7.5: when several attributes fail, the most telling code wins.
_PRECEDENCE = (CKR.ATTRIBUTE_SENSITIVE, CKR.ATTRIBUTE_TYPE_INVALID, CKR.BUFFER_TOO_SMALL)


@handler("C_CreateObject")
def c_create_object(h_session: int, p_template: Any, ul_count: int, ph_object: Any) -> None:
    session = library.state().sessions.get(h_session)
    raw = marshal.read_template(p_template, ul_count)
    marshal.require(ph_object)
    ph_object[0] = management.create_object(session, raw)


@handler("C_CopyObject")
def c_copy_object(h_session: int, h_object: int, p_template: Any, ul_count: int, ph_new: Any) -> None:
    session = library.state().sessions.get(h_session)
    raw = marshal.read_template(p_template, ul_count)
    marshal.require(ph_new)
    ph_new[0] = management.copy_object(session, h_object, raw)


@handler("C_DestroyObject")
def c_destroy_object(h_session: int, h_object: int) -> None:
    management.destroy_object(library.state().sessions.get(h_session), h_object)


@handler("C_GetObjectSize")
def c_get_object_size(h_session: int, h_object: int, pul_size: Any) -> None:
    session = library.state().sessions.get(h_session)
    obj = session.object(h_object)
    marshal.require(pul_size)
    pul_size[0] = templates.object_size(obj.attrs)


def _write_value(attr: Any, encoded: bytes) -> int:
    if attr.pValue == marshal.ffi.NULL:
        attr.ulValueLen = len(encoded)
        return CKR.OK
    if int(attr.ulValueLen) < len(encoded):
        attr.ulValueLen = CK_UNAVAILABLE_INFORMATION
        return CKR.BUFFER_TOO_SMALL
    marshal.ffi.memmove(attr.pValue, encoded, len(encoded))
    attr.ulValueLen = len(encoded)
    return CKR.OK


def _write_array(attr: Any, encoded: list[tuple[int, bytes]]) -> int:
    """Array attributes (CKA_WRAP_TEMPLATE ...): the caller's CK_ATTRIBUTE array, two-call per entry."""
    needed = len(encoded) * marshal.ATTRIBUTE_SIZE
    if attr.pValue == marshal.ffi.NULL:
        attr.ulValueLen = needed
        return CKR.OK
    if int(attr.ulValueLen) < needed:
        attr.ulValueLen = CK_UNAVAILABLE_INFORMATION
        return CKR.BUFFER_TOO_SMALL
    nested = marshal.ffi.cast("CK_ATTRIBUTE *", attr.pValue)
    rv = CKR.OK
    for i, (atype, value) in enumerate(encoded):
        nested[i].type = atype
        rv = _write_value(nested[i], value) or rv
    attr.ulValueLen = needed
    return rv


#: Encoded forms of the values clients read most (CKA_CLASS, CKA_KEY_TYPE, booleans, labels):
#: python-pkcs11 reads several attributes after every object it makes.
_ENCODED: dict[tuple[int, type, Any], Any] = {}


def _encode(atype: int, value: Any) -> Any:
    if isinstance(value, (bytes, str)) and len(value) > 256:
        return codecs.encode(atype, value)
    try:
        key = (atype, type(value), value)
        cached = _ENCODED.get(key)
    except TypeError:  # unhashable (attribute arrays): encode every time
        return codecs.encode(atype, value)
    if cached is None:
        cached = codecs.encode(atype, value)
        if len(_ENCODED) >= 4096:
            _ENCODED.clear()
        _ENCODED[key] = cached
    return cached


@handler("C_GetAttributeValue")
def c_get_attribute_value(h_session: int, h_object: int, p_template: Any, ul_count: int) -> int:
    session = library.state().sessions.get(h_session)
    obj = session.object(h_object)
    if ul_count and p_template == marshal.ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD)
    if ul_count > marshal.MAX_TEMPLATE_COUNT:
        raise PKCS11Error(CKR.ARGUMENTS_BAD)
    if ul_count == 0:
        return CKR.OK
    # One loop with the common case inline (a stored attribute with a cached encoding, written
    # into the caller's buffer): this runs twice for every object python-pkcs11 makes.
    stored, full_path = management.readable_attributes(obj)
    template = marshal.TemplateFields(p_template, ul_count)
    fields = template.fields
    memmove, cast, encoded_cache = marshal.ffi.memmove, marshal.ffi.cast, _ENCODED
    failures = set()
    for at in range(0, 3 * ul_count, 3):
        atype = fields[at]
        if atype in stored and atype not in full_path:
            value = stored[atype]
        elif atype not in full_path:
            fields[at + 2] = CK_UNAVAILABLE_INFORMATION
            failures.add(CKR.ATTRIBUTE_TYPE_INVALID)
            continue
        else:
            try:
                value = management.attribute_value(session, obj, atype)
            except PKCS11Error as exc:
                fields[at + 2] = CK_UNAVAILABLE_INFORMATION
                failures.add(exc.rv)
                continue
        try:
            encoded = encoded_cache.get((atype, value.__class__, value))
        except TypeError:  # unhashable (attribute arrays)
            encoded = None
        if encoded is None:
            encoded = _encode(atype, value)
        if encoded.__class__ is list:
            attr = p_template[at // 3]
            rv = _write_array(attr, encoded)
            fields[at + 2] = int(attr.ulValueLen)
            if rv != CKR.OK:
                failures.add(rv)
        elif not fields[at + 1]:  # NULL pValue: the length only
            fields[at + 2] = len(encoded)
        elif fields[at + 2] < len(encoded):
            fields[at + 2] = CK_UNAVAILABLE_INFORMATION
            failures.add(CKR.BUFFER_TOO_SMALL)
        else:
            memmove(cast("char *", fields[at + 1]), encoded, len(encoded))
            fields[at + 2] = len(encoded)
    template.write_lengths()
    if failures:
        for rv in _PRECEDENCE:
            if rv in failures:
                return rv
    return CKR.OK


@handler("C_SetAttributeValue")
def c_set_attribute_value(h_session: int, h_object: int, p_template: Any, ul_count: int) -> None:
    session = library.state().sessions.get(h_session)
    raw = marshal.read_template(p_template, ul_count)
    management.set_attributes(session, h_object, raw)


@handler("C_FindObjectsInit")
def c_find_objects_init(h_session: int, p_template: Any, ul_count: int) -> None:
    session = library.state().sessions.get(h_session)
    management.find_init(session, marshal.read_template(p_template, ul_count))


@handler("C_FindObjects")
def c_find_objects(h_session: int, ph_object: Any, ul_max: int, pul_count: Any) -> None:
    session = library.state().sessions.get(h_session)
    marshal.require(pul_count)
    if ul_max and ph_object == marshal.ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD)
    handles = management.find_next(session, ul_max)
    for i, handle in enumerate(handles):
        ph_object[i] = handle
    pul_count[0] = len(handles)


@handler("C_FindObjectsFinal")
def c_find_objects_final(h_session: int) -> None:
    management.find_final(library.state().sessions.get(h_session))
