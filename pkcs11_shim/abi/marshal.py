"""Reading C arguments into Python values and writing results back.

Every pointer, length and template is checked here before it is dereferenced; the rest of the shim
only ever sees Python values. The two-call buffer convention (PKCS#11 3.0 §5.2) is `deliver()`.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from emulator.crypto.material import SecretBuffer

from ..attributes import codecs
from ..constants import CKR
from ..errors import PKCS11Error

#: Set by `entry.bind` to the embedded module's ffi and lib.
ffi: Any = None
lib: Any = None

#: Refused before any memory is allocated for them: nothing legitimate is this large.
MAX_DATA_LEN = 1 << 30
MAX_TEMPLATE_COUNT = 1 << 12
MAX_TEMPLATE_DEPTH = 4
ATTRIBUTE_SIZE = 24  # sizeof(CK_ATTRIBUTE) on LP64; checked against ffi in set_ffi


#: CK_UNAVAILABLE_INFORMATION as the int a CK_ULONG field reads back as (set with the ffi).
_ULONG_MAX = (1 << 64) - 1


#: Whether a CK_ATTRIBUTE is (CK_ULONG, pointer, CK_ULONG) in the native `struct` layout "@LPL"
#: (LP64 and ILP32 both are), so that a template's fields can be read and written as one image.
_IMAGE_LAYOUT = False
_IMAGES: dict[int, struct.Struct] = {}


def set_ffi(value: Any) -> None:
    global ffi, ATTRIBUTE_SIZE, _ULONG_MAX, _IMAGE_LAYOUT
    ffi = value
    ATTRIBUTE_SIZE = ffi.sizeof("CK_ATTRIBUTE")
    _ULONG_MAX = int(ffi.cast("CK_ULONG", -1))
    _IMAGE_LAYOUT = (struct.calcsize("@LPL") == ATTRIBUTE_SIZE and ffi.sizeof("CK_ULONG") == struct.calcsize("@L")
                     and ffi.offsetof("CK_ATTRIBUTE", "pValue") == struct.calcsize("@L")
                     and ffi.offsetof("CK_ATTRIBUTE", "ulValueLen") == struct.calcsize("@LP"))


class TemplateFields:
    """The (type, pointer as an int with 0 for NULL, length) fields of a caller's CK_ATTRIBUTE array,
    flat in `fields`, read in one `struct` unpack and written back (`write_lengths`) in one pack.
    C_GetAttributeValue runs twice for every object python-pkcs11 makes, holding the GIL: going
    through cdata costs three Python objects per attribute for the reads and one call per write.
    Where the ABI is not "@LPL" the same is done field by field."""

    __slots__ = ("fields", "_ptr", "_count", "_buffer", "_layout")

    def __init__(self, ptr: Any, count: int) -> None:
        self._ptr, self._count = ptr, count
        if _IMAGE_LAYOUT:
            layout = _IMAGES.get(count)
            if layout is None:
                layout = struct.Struct("@" + "LPL" * count)
                if len(_IMAGES) < 64:
                    _IMAGES[count] = layout
            self._layout, self._buffer = layout, ffi.buffer(ptr, layout.size)
            self.fields = list(layout.unpack_from(self._buffer))
        else:
            self._layout = self._buffer = None
            cast = ffi.cast
            self.fields = [field for attr in ptr[0:count]
                           for field in (attr.type, int(cast("uintptr_t", attr.pValue)), attr.ulValueLen)]

    def write_lengths(self) -> None:
        """Every ulValueLen back into the caller's array (types and pointers are written unchanged)."""
        if self._layout is not None:
            self._layout.pack_into(self._buffer, 0, *self.fields)
            return
        fields = self.fields
        for i, attr in enumerate(self._ptr[0:self._count]):
            attr.ulValueLen = fields[3 * i + 2]


def is_null(ptr: Any) -> bool:
    return ptr == ffi.NULL


def read_bytes(ptr: Any, length: int, *, code: int = CKR.ARGUMENTS_BAD) -> bytes:
    """Bytes at ptr[0:length]; a NULL pointer with a non-zero length is `code`."""
    if length == 0:
        return b""
    if ptr == ffi.NULL:
        raise PKCS11Error(code, "NULL buffer with non-zero length")
    if length > MAX_DATA_LEN:
        raise PKCS11Error(code, f"length {length} refused")
    return ffi.buffer(ptr, length)[:]


def read_secret(ptr: Any, length: int) -> SecretBuffer:
    """`read_bytes` for a PIN: the one copy of the caller's buffer is a SecretBuffer, zeroed when
    the last holder (the handler, a pending C_LoginNext quorum) drops it. One allocation, as
    `read_bytes`; the emulator takes any bytes-like PIN without copying it."""
    if length == 0:
        return SecretBuffer()
    if ptr == ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "NULL buffer with non-zero length")
    if length > MAX_DATA_LEN:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, f"length {length} refused")
    return SecretBuffer(ffi.buffer(ptr, length))


def read_optional_bytes(ptr: Any, length: int) -> SecretBuffer | None:
    """For PIN-style arguments where NULL means 'not given' (protected authentication path)."""
    if ptr == ffi.NULL:
        return None
    return read_secret(ptr, length)


def read_string(ptr: Any, length: int) -> str:
    return read_bytes(ptr, length).decode("utf-8", errors="replace")


def require(ptr: Any) -> None:
    """Output pointers the spec requires: NULL is CKR_ARGUMENTS_BAD."""
    if ptr == ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "NULL output pointer")


def read_template(ptr: Any, count: int, depth: int = 0) -> list[tuple[int, Any]]:
    """A CK_ATTRIBUTE array as [(type, raw bytes | nested list)]."""
    if count == 0:
        return []
    if ptr == ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "NULL template with non-zero count")
    if count > MAX_TEMPLATE_COUNT or depth > MAX_TEMPLATE_DEPTH:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, f"template of {count} attributes refused")
    # Every key-making call reads one of these (C_UnwrapKey: ~10 attributes): the checks of
    # `read_bytes` are inlined, and no cdata is made per attribute (the old per-attribute
    # ffi.cast for CK_UNAVAILABLE_INFORMATION cost more than reading the value).
    out = []
    kinds, template_kind, null, buffer = codecs.KINDS, codecs.Kind.TEMPLATE, ffi.NULL, ffi.buffer
    for attr in ptr[0:count]:
        atype = attr.type  # CK_ULONG fields read back as Python ints
        length = attr.ulValueLen
        if kinds.get(atype) is template_kind:  # by kind: 3.2's KEM templates lack the bit
            if length % ATTRIBUTE_SIZE:
                raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, "array attribute of odd length")
            nested = ffi.cast("CK_ATTRIBUTE *", attr.pValue)
            out.append((atype, read_template(nested, length // ATTRIBUTE_SIZE, depth + 1)))
        elif length == 0:
            out.append((atype, b""))
        elif length == _ULONG_MAX:
            raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, "unavailable length in a template")
        elif length > MAX_DATA_LEN:
            raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, f"length {length} refused")
        else:
            value = attr.pValue
            if value == null:
                raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, "NULL buffer with non-zero length")
            out.append((atype, buffer(value, length)[:]))
    return out


#: Templates read before, by the image the C entry point took of them (native/template_image.h): equal
#: images are equal types, lengths and values, so `read_template` would read the same. Only templates
#: without attribute arrays are kept (an array's image is its entries' pointers, not what they point at).
_IMAGED: dict[bytes, tuple[tuple[int, bytes], ...]] = {}
_IMAGED_MAX = 256
_ULONG_SIZE = struct.calcsize("@L")
_image_local = threading.local()


def _image_views() -> tuple[memoryview, memoryview]:
    """(this thread's image area, its length field), made once per thread."""
    area = memoryview(ffi.buffer(lib.softshield_image_area(), lib.SOFTSHIELD_IMAGE_AREA_SIZE))
    views = _image_local.views = (area, area[:_ULONG_SIZE].cast("L"))
    return views


def read_template_imaged(ptr: Any, count: int) -> tuple[tuple | list, bytes | None]:
    """(`read_template(ptr, count)`, the image the C entry point took of it, or None without one or
    when the template holds an attribute array: the image is then a key for the template's values).
    A template whose image was read before is not read again: the same (read-only) tuple is
    returned. Without an image (no C entry point, or a template C leaves to Python: a NULL pointer,
    an unavailable length, a large value) this is `read_template`, with every check it makes."""
    if lib is None:
        return read_template(ptr, count), None
    views = getattr(_image_local, "views", None)
    area, length = views if views is not None else _image_views()
    size = length[0]
    if not size:
        return read_template(ptr, count), None
    image = area[_ULONG_SIZE:_ULONG_SIZE + size].tobytes()
    raw = _IMAGED.get(image)
    if raw is None:
        read = read_template(ptr, count)
        if not all(value.__class__ is bytes for _attr, value in read):
            return read, None  # the image does not say what its arrays hold: no key for anything
        if len(_IMAGED) >= _IMAGED_MAX:
            _IMAGED.clear()
        _IMAGED[image] = raw = tuple(read)
    return raw, image


def output_capacity(buf: Any, length_ptr: Any) -> int | None:
    """How much room the caller gave: None for a length query (NULL buffer)."""
    require(length_ptr)
    if buf == ffi.NULL:
        return None
    return int(length_ptr[0])


def _answered_without_copy(buf: Any, length_ptr: Any, needed: int) -> int | None:
    """The two-call convention (§5.2) up to the copy: *length_ptr becomes `needed`; CKR_OK for a
    length query (NULL buffer), CKR_BUFFER_TOO_SMALL for a short buffer, None when the copy is due."""
    require(length_ptr)
    short = buf != ffi.NULL and int(length_ptr[0]) < needed
    length_ptr[0] = needed
    if buf == ffi.NULL:
        return CKR.OK
    return CKR.BUFFER_TOO_SMALL if short else None


def deliver(buf: Any, length_ptr: Any, data: bytes) -> int:
    """The two-call convention: NULL -> length, too small -> CKR_BUFFER_TOO_SMALL, else copy."""
    return deliver_read(buf, length_ptr, output_capacity(buf, length_ptr), data)


def deliver_read(buf: Any, length_ptr: Any, capacity: int | None, data: bytes) -> int:
    """`deliver` when `output_capacity` already checked `length_ptr` and read the caller's room."""
    needed = len(data)
    length_ptr[0] = needed
    if capacity is None:
        return CKR.OK
    if capacity < needed:
        return CKR.BUFFER_TOO_SMALL
    ffi.memmove(buf, data, needed)
    return CKR.OK


def deliver_length(length_ptr: Any, length: int) -> int:
    """The answer to a length query (NULL buffer) when only the length was computed."""
    require(length_ptr)
    length_ptr[0] = length
    return CKR.OK


def deliver_ulongs(buf: Any, count_ptr: Any, values: list[int]) -> int:
    """The same convention for CK_ULONG arrays (slot lists, mechanism lists)."""
    answer = _answered_without_copy(buf, count_ptr, len(values))
    if answer is not None:
        return answer
    for i, value in enumerate(values):
        buf[i] = value
    return CKR.OK


def fill_text(field: Any, text: str) -> None:
    """Blank-padded, not NUL-terminated UTF-8 fields of CK_INFO / CK_TOKEN_INFO (§3.1)."""
    size = len(field)
    raw = text.encode("utf-8")[:size].ljust(size, b" ")
    ffi.memmove(field, raw, size)


#: (mechanism number -> its row's param_kind), filled on first use of each number. The registry
#: module imports the mechanism families, which import this package: it is bound at first call, not
#: at import, and kept, because a function-level import costs ~1 us per C call on the hot path.
_PARAM_KINDS: dict[int, str] = {}
_read_param: Any = None


def read_mechanism(ptr: Any) -> tuple[int, Any]:
    """A CK_MECHANISM as (mechanism, decoded parameter), the parameter read per the registry row."""
    global _read_param
    if ptr == ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "NULL mechanism")
    mechanism = int(ptr.mechanism)
    kind = _PARAM_KINDS.get(mechanism)
    if kind is None:
        from ..mechanisms.registry import REGISTRY
        from .mechanism_params import read_param

        _read_param = read_param
        kind = _PARAM_KINDS[mechanism] = REGISTRY.get(mechanism).param_kind
    return mechanism, _read_param(ffi, kind, ptr.pParameter, int(ptr.ulParameterLen))
