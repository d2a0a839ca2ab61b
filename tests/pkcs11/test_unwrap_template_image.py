"""C_UnwrapKey's template recognised from the image the C entry point takes of it
(native/template_image.h, abi/marshal.read_template_imaged): a repeated template is not read again,
and the image never stands for anything it does not hold (values changed in place behind the same
pointers, attribute arrays, templates C leaves to Python's checks).

The calls go through the real .so with ctypes, on the session python-pkcs11 opened; the new
objects are then looked at in the shim, which runs in this process."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

from cryptography.hazmat.primitives import keywrap
from p11env import KEK
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from p11ctypes import CK_ATTRIBUTE, CK_ULONG, Template, mechanism  # noqa: E402
from pkcs11_shim import library  # noqa: E402
from pkcs11_shim.abi import marshal  # noqa: E402
from pkcs11_shim.constants import CKR  # noqa: E402

WRAPPED = keywrap.aes_key_wrap(KEK, bytes(range(100, 132)))


def _unwrap(raw, session, kek, array, count: int) -> tuple[int, dict | None]:
    """(rv, the new object's attributes in the shim); the object is destroyed again."""
    mech, _keep = mechanism(Mechanism.AES_KEY_WRAP)
    wrapped = ctypes.create_string_buffer(WRAPPED, len(WRAPPED))
    handle = CK_ULONG(0)
    rv = raw.C_UnwrapKey(CK_ULONG(session.handle), ctypes.byref(mech), CK_ULONG(kek.handle), wrapped,
                         CK_ULONG(len(WRAPPED)), array, CK_ULONG(count), ctypes.byref(handle))
    if rv != CKR.OK:
        return rv, None
    attrs = dict(library.state().sessions.get(session.handle).token.objects.get(handle.value).attrs)
    assert raw.C_DestroyObject(CK_ULONG(session.handle), handle) == CKR.OK
    return rv, attrs


def _template(label: bytes, *extra) -> Template:
    return Template([(Attribute.CLASS, ObjectClass.SECRET_KEY), (Attribute.KEY_TYPE, KeyType.AES),
                     (Attribute.TOKEN, False), (Attribute.ENCRYPT, True), (Attribute.LABEL, label), *extra])


def test_a_repeated_template_is_read_once(raw, session, kek, monkeypatch) -> None:
    reads = []
    real = marshal.read_template
    monkeypatch.setattr(marshal, "read_template", lambda *args: reads.append(args) or real(*args))
    label = b"read once %d" % id(reads)  # a template no earlier test used
    first = _unwrap(raw, session, kek, _template(label).array, 5)
    second = _unwrap(raw, session, kek, _template(label).array, 5)  # new buffers, the same values
    assert len(reads) == 1
    assert first[0] == second[0] == CKR.OK
    assert first[1][Attribute.LABEL] == second[1][Attribute.LABEL] == label.decode()
    assert first[1][Attribute.UNIQUE_ID] != second[1][Attribute.UNIQUE_ID]  # each object its own


def test_values_changed_behind_the_same_pointers_are_read(raw, session, kek) -> None:
    template = _template(b"aaaa")
    rv, attrs = _unwrap(raw, session, kek, template.array, 5)
    assert rv == CKR.OK and attrs[Attribute.LABEL] == "aaaa"
    ctypes.memmove(template._keep[4], b"bbbb", 4)  # the label's buffer, in place
    ctypes.memmove(template._keep[3], b"\x00", 1)  # CKA_ENCRYPT false
    rv, attrs = _unwrap(raw, session, kek, template.array, 5)
    assert rv == CKR.OK and attrs[Attribute.LABEL] == "bbbb" and attrs[Attribute.ENCRYPT] is False


def test_an_attribute_array_is_read_each_time(raw, session, kek) -> None:
    """The image of CKA_WRAP_TEMPLATE holds its entries' pointers: what they point at may change."""
    nested = Template([(Attribute.KEY_TYPE, KeyType.AES)])
    template = _template(b"arrays", (Attribute.WRAP, True))
    outer = (CK_ATTRIBUTE * 7)()
    for i in range(6):
        outer[i] = template.array[i]
    outer[6].type = Attribute.WRAP_TEMPLATE
    outer[6].pValue = ctypes.cast(nested.array, ctypes.c_void_p)
    outer[6].ulValueLen = ctypes.sizeof(CK_ATTRIBUTE)
    rv, attrs = _unwrap(raw, session, kek, outer, 7)
    assert rv == CKR.OK and attrs[Attribute.WRAP_TEMPLATE] == {Attribute.KEY_TYPE: KeyType.AES}
    ctypes.memmove(nested._keep[0], int(KeyType.GENERIC_SECRET).to_bytes(ctypes.sizeof(CK_ULONG), "little"),
                   ctypes.sizeof(CK_ULONG))
    rv, attrs = _unwrap(raw, session, kek, outer, 7)
    assert rv == CKR.OK and attrs[Attribute.WRAP_TEMPLATE] == {Attribute.KEY_TYPE: KeyType.GENERIC_SECRET}


def test_templates_c_does_not_image_keep_their_codes(raw, session, kek) -> None:
    template = _template(b"null value")
    template.array[4].pValue = None  # CKA_LABEL: a NULL buffer with a length
    assert _unwrap(raw, session, kek, template.array, 5) == (CKR.ATTRIBUTE_VALUE_INVALID, None)
    assert _unwrap(raw, session, kek, None, 5) == (CKR.ARGUMENTS_BAD, None)
    template = _template(b"unavailable")
    template.array[4].ulValueLen = (1 << (8 * ctypes.sizeof(CK_ULONG))) - 1  # CK_UNAVAILABLE_INFORMATION
    assert _unwrap(raw, session, kek, template.array, 5) == (CKR.ATTRIBUTE_VALUE_INVALID, None)


def test_no_image_is_left_once_the_call_returned(raw, session, kek) -> None:
    assert _unwrap(raw, session, kek, _template(b"left").array, 5)[0] == CKR.OK
    assert marshal.read_template_imaged(marshal.ffi.NULL, 0) == ([], None)  # a handler called another way


def test_each_template_answers_its_own_attributes(raw, session, kek) -> None:
    """The staged answer is remembered per template (keymgmt._UnwrapRow.memo): alternating templates
    each read back their own label from the answer C gives right after the unwrap."""
    raw.C_GetAttributeValue.restype = ctypes.c_ulong
    mech, _keep = mechanism(Mechanism.AES_KEY_WRAP)
    wrapped = ctypes.create_string_buffer(WRAPPED, len(WRAPPED))
    for label in [b"left", b"right", b"left", b"right"]:
        template = _template(label)
        handle = CK_ULONG(0)
        assert raw.C_UnwrapKey(CK_ULONG(session.handle), ctypes.byref(mech), CK_ULONG(kek.handle), wrapped,
                               CK_ULONG(len(WRAPPED)), template.array, CK_ULONG(5), ctypes.byref(handle)) == CKR.OK
        out = ctypes.create_string_buffer(16)
        attr = CK_ATTRIBUTE(Attribute.LABEL, ctypes.cast(out, ctypes.c_void_p), 16)
        assert raw.C_GetAttributeValue(CK_ULONG(session.handle), handle, ctypes.byref(attr), CK_ULONG(1)) == CKR.OK
        assert out.raw[:attr.ulValueLen] == label
        assert raw.C_DestroyObject(CK_ULONG(session.handle), handle) == CKR.OK
