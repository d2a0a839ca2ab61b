"""Attribute values between their C form and Python values.

One table, `KINDS`, says what each known attribute's value is; one pair of functions per kind packs and
unpacks it (python-pkcs11's `attributes.py` idea, with our own choices of Python values):

| kind          | C form                                   | Python value                         |
|---------------|------------------------------------------|--------------------------------------|
| BOOL          | CK_BBOOL, 1 byte                         | bool                                 |
| ULONG         | CK_ULONG, native (8 bytes, LE on LP64)   | int                                  |
| BYTES, BIGINT | byte array (big integers most-significant byte first) | bytes                   |
| STRING        | RFC 2279 (UTF-8) string, not terminated  | str                                  |
| DATE          | CK_DATE "YYYYMMDD", or empty             | "YYYYMMDD" str, or b"" when empty    |
| ULONG_ARRAY   | array of CK_ULONG (CKA_ALLOWED_MECHANISMS) | tuple[int, ...]                    |
| TEMPLATE      | array of CK_ATTRIBUTE (CKA_WRAP_TEMPLATE) | dict[int, Any]                      |

Raw templates arrive from `abi.marshal.read_template` as `[(type, bytes | nested list)]`. Checks come
first: an unknown type is CKR_ATTRIBUTE_TYPE_INVALID, a value of the wrong length or shape is
CKR_ATTRIBUTE_VALUE_INVALID (PKCS#11 3.0 §4.1.1 rules 1 and 2).
"""

from __future__ import annotations

import datetime
import enum
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..constants import CKR, Attribute, NCipherAttribute
from ..errors import PKCS11Error

from ..constants import CKA_NAME_HASH_ALGORITHM, CKA_PUBLIC_KEY_INFO  # noqa: E402,F401  (re-exported)

#: sizeof(CK_ATTRIBUTE) on LP64 (type, pointer, length): used for size estimates of arrays only.
_ATTRIBUTE_SIZE = 24


class Kind(enum.Enum):
    BOOL = "bool"
    ULONG = "ulong"
    BYTES = "bytes"
    BIGINT = "big integer"
    STRING = "string"
    DATE = "date"
    ULONG_ARRAY = "ulong array"
    TEMPLATE = "attribute array"


def _group(kind: Kind, *attrs: int) -> dict[int, Kind]:
    return {int(attr): kind for attr in attrs}


A = Attribute
#: The value kind of every attribute this token knows (PKCS#11 3.0 §4 and the mechanism chapters).
KINDS: dict[int, Kind] = {
    **_group(Kind.BOOL,
             A.TOKEN, A.PRIVATE, A.TRUSTED, A.SENSITIVE, A.ENCRYPT, A.DECRYPT, A.WRAP, A.UNWRAP,
             A.SIGN, A.SIGN_RECOVER, A.VERIFY, A.VERIFY_RECOVER, A.DERIVE, A.EXTRACTABLE, A.LOCAL,
             A.NEVER_EXTRACTABLE, A.ALWAYS_SENSITIVE, A.MODIFIABLE, A.COPYABLE, A.DESTROYABLE,
             A.ALWAYS_AUTHENTICATE, A.WRAP_WITH_TRUSTED, A.SECONDARY_AUTH, A.RESET_ON_INIT,
             A.HAS_RESET, A.OTP_USER_FRIENDLY_MODE, A.COLOR, A.ENCAPSULATE, A.DECAPSULATE),
    **_group(Kind.ULONG,
             A.CLASS, A.CERTIFICATE_TYPE, A.CERTIFICATE_CATEGORY, A.JAVA_MIDP_SECURITY_DOMAIN,
             A.KEY_TYPE, A.MODULUS_BITS, A.PRIME_BITS, A.SUBPRIME_BITS, A.VALUE_BITS, A.VALUE_LEN,
             A.KEY_GEN_MECHANISM, A.AUTH_PIN_FLAGS, A.PARAMETER_SET, A.HW_FEATURE_TYPE,
             A.MECHANISM_TYPE, CKA_NAME_HASH_ALGORITHM, A.OTP_FORMAT, A.OTP_LENGTH,
             A.OTP_TIME_INTERVAL, A.OTP_CHALLENGE_REQUIREMENT, A.OTP_TIME_REQUIREMENT,
             A.OTP_COUNTER_REQUIREMENT, A.OTP_PIN_REQUIREMENT, A.PIXEL_X, A.PIXEL_Y, A.RESOLUTION,
             A.CHAR_ROWS, A.CHAR_COLUMNS, A.BITS_PER_PIXEL),
    **_group(Kind.STRING,
             A.LABEL, A.APPLICATION, A.URL, A.UNIQUE_ID, A.OTP_TIME, A.OTP_USER_IDENTIFIER,
             A.OTP_SERVICE_IDENTIFIER, A.OTP_SERVICE_LOGO_TYPE, A.CHAR_SETS, A.ENCODING_METHODS,
             A.MIME_TYPES, NCipherAttribute.NFKM_APPNAME),
    **_group(Kind.DATE, A.START_DATE, A.END_DATE),
    **_group(Kind.BYTES,
             A.VALUE, A.OBJECT_ID, A.ISSUER, A.SERIAL_NUMBER, A.AC_ISSUER, A.OWNER,
             A.HASH_OF_SUBJECT_PUBLIC_KEY, A.HASH_OF_ISSUER_PUBLIC_KEY, A.CHECK_VALUE, A.SUBJECT,
             A.ID, A.EC_PARAMS, A.EC_POINT, A.GOSTR3410_PARAMS, A.GOSTR3411_PARAMS,
             A.GOST28147_PARAMS, A.OTP_COUNTER, A.OTP_SERVICE_LOGO, A.SEED, A.REQUIRED_CMS_ATTRIBUTES,
             A.DEFAULT_CMS_ATTRIBUTES, A.SUPPORTED_CMS_ATTRIBUTES, CKA_PUBLIC_KEY_INFO,
             NCipherAttribute.NFKM_ID, NCipherAttribute.NFKM_HASH),
    **_group(Kind.BIGINT,
             A.MODULUS, A.PUBLIC_EXPONENT, A.PRIVATE_EXPONENT, A.PRIME_1, A.PRIME_2, A.EXPONENT_1,
             A.EXPONENT_2, A.COEFFICIENT, A.PRIME, A.SUBPRIME, A.BASE),
    # CKA_ALLOWED_MECHANISMS carries CKF_ARRAY_ATTRIBUTE but is an array of CK_MECHANISM_TYPE, not of
    # CK_ATTRIBUTE; CKA_ATTR_TYPES is an array of CK_ATTRIBUTE_TYPE.
    **_group(Kind.ULONG_ARRAY, A.ALLOWED_MECHANISMS, A.ATTR_TYPES),
    # The 3.2 header numbers CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE without
    # CKF_ARRAY_ATTRIBUTE (0x62A, 0x62B; python-pkcs11 has the same); their values are still arrays.
    **_group(Kind.TEMPLATE, A.WRAP_TEMPLATE, A.UNWRAP_TEMPLATE, A.DERIVE_TEMPLATE, A.ENCAPSULATE_TEMPLATE,
             A.DECAPSULATE_TEMPLATE),
}
del A

_BOOL = struct.Struct("?")
_ULONG = struct.Struct("@L")
ULONG_SIZE = _ULONG.size
ULONG_MAX = (1 << (8 * ULONG_SIZE)) - 1


def _invalid(attr: int, why: str) -> PKCS11Error:
    return PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, f"attribute 0x{attr:x}: {why}")


def _as_bytes(attr: int, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _invalid(attr, f"expected bytes, got {type(value).__name__}")


# --- one (encode, decode) pair per kind ----------------------------------------------------------

def _enc_bool(attr: int, value: Any) -> bytes:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return _BOOL.pack(bool(value))
    raise _invalid(attr, "expected a boolean")


def _dec_bool(attr: int, raw: bytes) -> bool:
    if len(raw) != _BOOL.size:
        raise _invalid(attr, f"CK_BBOOL of {len(raw)} bytes")
    # Any non-zero byte is true, as in C; CK_TRUE is 1.
    return raw != b"\x00"


def _enc_ulong(attr: int, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ULONG_MAX:
        raise _invalid(attr, "expected a CK_ULONG")
    return _ULONG.pack(int(value))


def _dec_ulong(attr: int, raw: bytes) -> int:
    if len(raw) != ULONG_SIZE:
        raise _invalid(attr, f"CK_ULONG of {len(raw)} bytes")
    return _ULONG.unpack(raw)[0]


def _enc_bytes(attr: int, value: Any) -> bytes:
    return _as_bytes(attr, value)


def _dec_bytes(attr: int, raw: bytes) -> bytes:
    return bytes(raw)


def _enc_bigint(attr: int, value: Any) -> bytes:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _invalid(attr, "big integers are unsigned")
        return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return _as_bytes(attr, value)


def _enc_string(attr: int, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    raw = _as_bytes(attr, value)
    _dec_string(attr, raw)
    return raw


def _dec_string(attr: int, raw: bytes) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(attr, "not a UTF-8 string") from None


def _enc_date(attr: int, value: Any) -> bytes:
    if isinstance(value, datetime.date):
        return value.strftime("%Y%m%d").encode("ascii")
    raw = value.encode("ascii", errors="replace") if isinstance(value, str) else _as_bytes(attr, value)
    _dec_date(attr, raw)
    return raw


def _dec_date(attr: int, raw: bytes) -> str | bytes:
    # CK_DATE is 8 ASCII digits; an empty value is the spec's "empty date" (the default).
    if len(raw) == 0:
        return b""
    if len(raw) != 8 or not bytes(raw).isdigit():
        raise _invalid(attr, "CK_DATE must be 8 digits YYYYMMDD or empty")
    return bytes(raw).decode("ascii")


def _enc_ulong_array(attr: int, value: Any) -> bytes:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _invalid(attr, "expected a sequence of CK_ULONG")
    return b"".join(_enc_ulong(attr, v) for v in value)


def _dec_ulong_array(attr: int, raw: bytes) -> tuple[int, ...]:
    if len(raw) % ULONG_SIZE:
        raise _invalid(attr, f"array of CK_ULONG of {len(raw)} bytes")
    return tuple(v for (v,) in _ULONG.iter_unpack(bytes(raw)))




# --- normalising without a C round trip ---------------------------------------------------------
# `normalize` is `decode(encode(value))`; these give the same result (and the same errors) for the
# kinds every template is full of, without building the C bytes. A value outside a fast path takes
# the round trip.

def _norm_bool(attr: int, value: Any) -> bool:
    if value is True or value is False:
        return value
    return _dec_bool(attr, _enc_bool(attr, value))


def _norm_ulong(attr: int, value: Any) -> int:
    if type(value) is int and 0 <= value <= ULONG_MAX:
        return value
    return _dec_ulong(attr, _enc_ulong(attr, value))


def _norm_bytes(attr: int, value: Any) -> bytes:
    if type(value) is bytes:
        return value
    return _dec_bytes(attr, _enc_bytes(attr, value))


def _norm_bigint(attr: int, value: Any) -> bytes:
    if type(value) is bytes:
        return value
    return _dec_bytes(attr, _enc_bigint(attr, value))


def _norm_string(attr: int, value: Any) -> str:
    if type(value) is str:
        value.encode("utf-8")  # a lone surrogate fails here as it does in `encode`
        return value
    return _dec_string(attr, _enc_string(attr, value))


# One row per kind: (encode, decode, normalize).
_Codec = tuple[Callable[[int, Any], Any], Callable[[int, Any], Any], Callable[[int, Any], Any]]


def _round_trip(enc: Callable[[int, Any], Any], dec: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    return lambda attr, value: dec(attr, enc(attr, value))


_CODECS: dict[Kind, _Codec] = {
    Kind.BOOL: (_enc_bool, _dec_bool, _norm_bool),
    Kind.ULONG: (_enc_ulong, _dec_ulong, _norm_ulong),
    Kind.BYTES: (_enc_bytes, _dec_bytes, _norm_bytes),
    Kind.BIGINT: (_enc_bigint, _dec_bytes, _norm_bigint),
    Kind.STRING: (_enc_string, _dec_string, _norm_string),
    Kind.DATE: (_enc_date, _dec_date, _round_trip(_enc_date, _dec_date)),
    Kind.ULONG_ARRAY: (_enc_ulong_array, _dec_ulong_array, _round_trip(_enc_ulong_array, _dec_ulong_array)),
}

#: The codec row of every attribute whose value is not an attribute array, keyed by the plain int:
#: looking a row up by `Kind` would hash an Enum member in Python code for every attribute.
_BY_ATTR: dict[int, _Codec] = {attr: _CODECS[kind] for attr, kind in KINDS.items() if kind is not Kind.TEMPLATE}


# --- public API ----------------------------------------------------------------------------------

def is_known(attr: int) -> bool:
    return int(attr) in KINDS


def kind_of(attr: int) -> Kind:
    try:
        return KINDS[int(attr)]
    except KeyError:
        raise PKCS11Error(CKR.ATTRIBUTE_TYPE_INVALID, f"attribute 0x{int(attr):x} is not known") from None


def decode(attr: int, raw: bytes | list) -> Any:
    """The Python value of one attribute as read from C; arrays arrive as `[(type, raw)]`."""
    attr = int(attr)
    codec = _BY_ATTR.get(attr)
    if codec is not None:
        if isinstance(raw, list):
            raise _invalid(attr, "not an attribute array")
        return codec[1](attr, raw)
    kind_of(attr)  # unknown: CKR_ATTRIBUTE_TYPE_INVALID; known and not above: an attribute array
    if isinstance(raw, list):
        return decode_template(raw)
    if isinstance(raw, (bytes, bytearray, memoryview)) and len(raw) == 0:
        return {}
    raise _invalid(attr, "an attribute array was expected")


def encode(attr: int, value: Any) -> bytes | list:
    """The C form of one attribute's value; array attributes become `[(type, bytes | list)]`."""
    attr = int(attr)
    codec = _BY_ATTR.get(attr)
    if codec is not None:
        return codec[0](attr, value)
    kind_of(attr)
    if not isinstance(value, Mapping):
        raise _invalid(attr, "an attribute array must be a dict")
    return [(t, encode(t, value[t])) for t in sorted(value)]


def normalize(attr: int, value: Any) -> Any:
    """`value` checked against the attribute's kind and brought to its canonical Python form (the
    value `decode` would give); a value of the wrong type is CKR_ATTRIBUTE_VALUE_INVALID."""
    attr = int(attr)
    codec = _BY_ATTR.get(attr)
    if codec is not None:
        return codec[2](attr, value)
    return decode(attr, encode(attr, value))


def decode_template(raw: list[tuple[int, bytes | list]]) -> dict[int, Any]:
    """A template as attribute -> value. The same type twice with different values is
    CKR_TEMPLATE_INCONSISTENT (§4.1.1 rule 5); twice with the same value counts once (rule 6)."""
    out: dict[int, Any] = {}
    for attr, value in raw:
        attr = int(attr)
        decoded = decode(attr, value)
        if attr in out and out[attr] != decoded:
            raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, f"attribute 0x{attr:x} given twice")
        out[attr] = decoded
    return out


def encoded_size(attr: int, value: Any) -> int:
    """Bytes the value occupies in C form (arrays: their CK_ATTRIBUTEs plus the nested values)."""
    encoded = encode(attr, value)
    if isinstance(encoded, list):
        return _ATTRIBUTE_SIZE * len(encoded) + sum(encoded_size(t, value[t]) for t, _ in encoded)
    return len(encoded)


# --- persistence ---------------------------------------------------------------------------------
# Layout (all integers big-endian): b"SSA2", then per attribute in ascending type order:
# type (8 bytes), tag (1 byte: 0 value, 1 nested array), length (4 bytes), payload. A nested array's
# payload is the same entry list without the magic. Deterministic: equal dicts give equal bytes.
# b"SSA1" data has the same layout, written while every key stored an empty CKA_ALLOWED_MECHANISMS
# meaning "any mechanism": read back, that empty array is dropped (no restriction), because an empty
# array now means what it says (no mechanism).
_MAGIC = b"SSA2"
_MAGIC_ANY_MECHANISM = b"SSA1"
_ENTRY = struct.Struct(">QBI")
_VALUE, _ARRAY = 0, 1


def _serialize_entries(attrs: dict[int, Any]) -> bytes:
    out = bytearray()
    for attr in sorted(attrs):
        encoded = encode(attr, attrs[attr])
        if isinstance(encoded, list):
            tag, payload = _ARRAY, _serialize_entries(attrs[attr])
        else:
            tag, payload = _VALUE, encoded
        out += _ENTRY.pack(int(attr), tag, len(payload)) + payload
    return bytes(out)


def _deserialize_entries(data: bytes, depth: int = 0) -> dict[int, Any]:
    if depth > 4:
        raise ValueError("attribute data nested too deeply")
    out: dict[int, Any] = {}
    pos = 0
    while pos < len(data):
        if pos + _ENTRY.size > len(data):
            raise ValueError("truncated attribute data")
        attr, tag, length = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        payload = data[pos:pos + length]
        if len(payload) != length or attr in out or tag not in (_VALUE, _ARRAY):
            raise ValueError("corrupt attribute data")
        pos += length
        if tag == _ARRAY:
            if kind_of(attr) is not Kind.TEMPLATE:
                raise ValueError("corrupt attribute data")
            out[attr] = _deserialize_entries(payload, depth + 1)
        else:
            out[attr] = decode(attr, payload)
    return out


def serialize(attrs: dict[int, Any]) -> bytes:
    """Attributes as bytes for a key blob's appdata."""
    return _MAGIC + _serialize_entries(attrs)


def _body_start(data: bytes) -> int:
    if not (data.startswith(_MAGIC) or data.startswith(_MAGIC_ANY_MECHANISM)):
        raise ValueError("not softshield attribute data")
    return len(_MAGIC)


def _upgrade(data: bytes, out: dict[int, Any]) -> dict[int, Any]:
    if data.startswith(_MAGIC_ANY_MECHANISM) and out.get(Attribute.ALLOWED_MECHANISMS) == ():
        del out[Attribute.ALLOWED_MECHANISMS]
    return out


def deserialize_some(data: bytes, wanted: frozenset[int]) -> dict[int, Any]:
    """Only the `wanted` top-level attributes of `serialize`d data (the others are stepped over by
    their length, not decoded): what a token object's find index needs at load time. `serialize`
    writes entries in ascending type order, so the walk stops after the highest wanted type (the
    find index's CLASS/TOKEN/PRIVATE/LABEL/ID are the first few of ~30 entries)."""
    _body_start(data)
    out: dict[int, Any] = {}
    pos, end = len(_MAGIC), len(data)
    last = max(wanted, default=-1)
    unpack, size, by_attr = _ENTRY.unpack_from, _ENTRY.size, _BY_ATTR
    while pos + size <= end:
        attr, tag, length = unpack(data, pos)
        if attr > last:
            break
        pos += size
        following = pos + length
        if following > end:
            raise ValueError("truncated attribute data")
        if tag == _VALUE and attr in wanted:
            codec = by_attr.get(attr)
            out[attr] = codec[1](attr, data[pos:following]) if codec is not None else decode(attr, data[pos:following])
        pos = following
    if pos < end and pos + size > end:
        raise ValueError("truncated attribute data")
    return _upgrade(data, out)


def deserialize(data: bytes) -> dict[int, Any]:
    """The inverse of `serialize`. Structural damage raises ValueError (the blob was authenticated,
    so damage means a bug or version skew, not an attacker)."""
    return _upgrade(data, _deserialize_entries(bytes(data[_body_start(data):])))
