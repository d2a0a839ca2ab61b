"""Attribute codecs: C form <-> Python values, templates, persistence."""

from __future__ import annotations

import datetime
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkcs11_shim.attributes import codecs
from pkcs11_shim.attributes.codecs import CKA_PUBLIC_KEY_INFO, KINDS, Kind
from pkcs11_shim.constants import CKR, Attribute, Mechanism, NCipherAttribute, ObjectClass
from pkcs11_shim.errors import PKCS11Error

ULONG = struct.Struct("@L")

#: One sample Python value per kind, and its C form.
SAMPLES = {
    Kind.BOOL: (True, b"\x01"),
    Kind.ULONG: (0x1234, ULONG.pack(0x1234)),
    Kind.BYTES: (b"\x00\xffabc", b"\x00\xffabc"),
    Kind.BIGINT: (b"\x01\x00\x01", b"\x01\x00\x01"),
    Kind.STRING: ("läbel ✓", "läbel ✓".encode()),
    Kind.DATE: ("20240229", b"20240229"),
    Kind.ULONG_ARRAY: ((Mechanism.RSA_PKCS, Mechanism.AES_CBC, Mechanism.AES_KEY_WRAP),
                       ULONG.pack(Mechanism.RSA_PKCS) + ULONG.pack(Mechanism.AES_CBC) + ULONG.pack(Mechanism.AES_KEY_WRAP)),
    Kind.TEMPLATE: ({Attribute.TOKEN: True, Attribute.LABEL: "x"},
                    [(Attribute.TOKEN, b"\x01"), (Attribute.LABEL, b"x")]),
}


def rv(excinfo: pytest.ExceptionInfo) -> int:
    return excinfo.value.rv


@pytest.mark.parametrize("attr", sorted(KINDS), ids=lambda a: f"0x{a:x}")
def test_every_known_attribute_round_trips(attr: int) -> None:
    value, raw = SAMPLES[KINDS[attr]]
    assert codecs.encode(attr, value) == raw
    assert codecs.decode(attr, raw) == value
    assert codecs.is_known(attr)


def test_ulong_is_native_8_byte_little_endian() -> None:
    assert codecs.encode(Attribute.CLASS, ObjectClass.SECRET_KEY) == (4).to_bytes(8, "little")
    assert codecs.decode(Attribute.VALUE_LEN, (32).to_bytes(8, "little")) == 32
    assert codecs.encode(Attribute.CLASS, 2**64 - 1) == b"\xff" * 8


def test_bbool_is_one_byte_and_any_nonzero_byte_is_true() -> None:
    assert codecs.encode(Attribute.TOKEN, False) == b"\x00"
    assert codecs.decode(Attribute.TOKEN, b"\x00") is False
    assert codecs.decode(Attribute.TOKEN, b"\x02") is True


@pytest.mark.parametrize("attr,raw", [
    (Attribute.TOKEN, b""), (Attribute.TOKEN, b"\x01\x00"), (Attribute.SENSITIVE, b"\x01\x00\x00\x00"),
    (Attribute.CLASS, b"\x04\x00\x00\x00"), (Attribute.VALUE_LEN, b""), (Attribute.KEY_TYPE, bytes(9)),
    (Attribute.ALLOWED_MECHANISMS, bytes(12)), (Attribute.START_DATE, b"2024"),
    (Attribute.END_DATE, b"2024-1-1"), (Attribute.LABEL, b"\xff\xfe"),
    (Attribute.WRAP_TEMPLATE, b"\x01"),
])
def test_malformed_values_are_value_invalid(attr: int, raw: bytes) -> None:
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.decode(attr, raw)
    assert rv(excinfo) == CKR.ATTRIBUTE_VALUE_INVALID


@pytest.mark.parametrize("attr,value", [
    (Attribute.TOKEN, "yes"), (Attribute.TOKEN, 2), (Attribute.CLASS, -1), (Attribute.CLASS, 2**64),
    (Attribute.CLASS, True), (Attribute.ID, "text"), (Attribute.MODULUS, -5), (Attribute.START_DATE, "2024"),
    (Attribute.ALLOWED_MECHANISMS, b"\x00"), (Attribute.ALLOWED_MECHANISMS, (1, -1)),
    (Attribute.WRAP_TEMPLATE, [1, 2]), (Attribute.LABEL, b"\xff"),
])
def test_encoding_a_value_of_the_wrong_type_is_value_invalid(attr: int, value: object) -> None:
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.encode(attr, value)
    assert rv(excinfo) == CKR.ATTRIBUTE_VALUE_INVALID


@pytest.mark.parametrize("attr", [0x7FFF, 0x80000001, 0x40000999])
def test_unknown_types_are_type_invalid(attr: int) -> None:
    assert not codecs.is_known(attr)
    for call in (lambda: codecs.decode(attr, b"\x01"), lambda: codecs.encode(attr, b"\x01"),
                 lambda: codecs.decode_template([(attr, b"\x01")])):
        with pytest.raises(PKCS11Error) as excinfo:
            call()
        assert rv(excinfo) == CKR.ATTRIBUTE_TYPE_INVALID


def test_vendor_and_3x_attributes_are_known() -> None:
    assert codecs.decode(NCipherAttribute.NFKM_APPNAME, b"pkcs11") == "pkcs11"
    assert codecs.decode(NCipherAttribute.NFKM_ID, b"ua1234") == b"ua1234"
    assert codecs.decode(NCipherAttribute.NFKM_HASH, bytes(20)) == bytes(20)
    assert codecs.decode(CKA_PUBLIC_KEY_INFO, b"\x30\x00") == b"\x30\x00"


def test_dates() -> None:
    assert codecs.decode(Attribute.START_DATE, b"") == b""
    assert codecs.encode(Attribute.START_DATE, "") == b""
    assert codecs.encode(Attribute.START_DATE, b"") == b""
    assert codecs.encode(Attribute.END_DATE, datetime.date(2031, 12, 1)) == b"20311201"
    assert codecs.normalize(Attribute.END_DATE, datetime.date(2031, 12, 1)) == "20311201"


def test_big_integers_accept_ints_and_stay_bytes() -> None:
    assert codecs.encode(Attribute.PUBLIC_EXPONENT, 65537) == b"\x01\x00\x01"
    assert codecs.normalize(Attribute.PUBLIC_EXPONENT, 65537) == b"\x01\x00\x01"
    assert codecs.encode(Attribute.MODULUS, 0) == b"\x00"


def test_allowed_mechanisms_is_a_mechanism_array_not_a_template() -> None:
    assert codecs.decode(Attribute.ALLOWED_MECHANISMS, b"") == ()
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.decode(Attribute.ALLOWED_MECHANISMS, [(Attribute.TOKEN, b"\x01")])
    assert rv(excinfo) == CKR.ATTRIBUTE_VALUE_INVALID


def test_array_attributes_nest_and_encode_sorted() -> None:
    raw = [(Attribute.LABEL, b"k"), (Attribute.CLASS, ULONG.pack(4)),
           (Attribute.UNWRAP_TEMPLATE, [(Attribute.SENSITIVE, b"\x01")])]
    value = codecs.decode(Attribute.WRAP_TEMPLATE, raw)
    assert value == {Attribute.LABEL: "k", Attribute.CLASS: 4,
                     Attribute.UNWRAP_TEMPLATE: {Attribute.SENSITIVE: True}}
    assert codecs.encode(Attribute.WRAP_TEMPLATE, value) == sorted(raw, key=lambda item: item[0])
    assert codecs.decode(Attribute.WRAP_TEMPLATE, []) == {}
    assert codecs.decode(Attribute.WRAP_TEMPLATE, b"") == {}
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.decode(Attribute.LABEL, [(Attribute.TOKEN, b"\x01")])
    assert rv(excinfo) == CKR.ATTRIBUTE_VALUE_INVALID
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.decode(Attribute.WRAP_TEMPLATE, [(0x7FFF, b"")])
    assert rv(excinfo) == CKR.ATTRIBUTE_TYPE_INVALID


def test_decode_template_duplicates() -> None:
    same = codecs.decode_template([(Attribute.TOKEN, b"\x01"), (Attribute.TOKEN, b"\x01")])
    assert same == {Attribute.TOKEN: True}
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.decode_template([(Attribute.TOKEN, b"\x01"), (Attribute.TOKEN, b"\x00")])
    assert rv(excinfo) == CKR.TEMPLATE_INCONSISTENT
    with pytest.raises(PKCS11Error) as excinfo:
        codecs.decode_template([(Attribute.LABEL, b"a"), (Attribute.TOKEN, b"\x01\x01")])
    assert rv(excinfo) == CKR.ATTRIBUTE_VALUE_INVALID


def test_encoded_size() -> None:
    assert codecs.encoded_size(Attribute.LABEL, "abc") == 3
    assert codecs.encoded_size(Attribute.CLASS, 1) == ULONG.size
    assert codecs.encoded_size(Attribute.WRAP_TEMPLATE, {Attribute.TOKEN: True}) == 24 + 1


# --- persistence -----------------------------------------------------------------------------------

ALL_SAMPLES = {attr: SAMPLES[kind][0] for attr, kind in KINDS.items()}


def test_serialize_round_trips_every_known_attribute() -> None:
    assert codecs.deserialize(codecs.serialize(ALL_SAMPLES)) == ALL_SAMPLES
    assert codecs.deserialize(codecs.serialize({})) == {}


def test_serialize_is_deterministic() -> None:
    forward = dict(ALL_SAMPLES)
    backward = dict(reversed(list(ALL_SAMPLES.items())))
    assert codecs.serialize(forward) == codecs.serialize(backward)


@pytest.mark.parametrize("data", [b"", b"XXXX", b"SSA1\x00", codecs.serialize({Attribute.LABEL: "abc"})[:-1],
                                  b"SSA1" + struct.pack(">QBI", Attribute.LABEL, 7, 0),
                                  b"SSA1" + struct.pack(">QBI", Attribute.LABEL, 1, 0)])
def test_deserialize_refuses_damaged_data(data: bytes) -> None:
    with pytest.raises(ValueError):
        codecs.deserialize(data)


def test_deserialize_refuses_a_repeated_attribute() -> None:
    entry = struct.pack(">QBI", Attribute.LABEL, 0, 1) + b"a"
    with pytest.raises(ValueError):
        codecs.deserialize(b"SSA1" + entry + entry)


_VALUES = {
    Kind.BOOL: st.booleans(),
    Kind.ULONG: st.integers(0, 2**64 - 1),
    Kind.BYTES: st.binary(max_size=40),
    Kind.BIGINT: st.binary(max_size=40),
    Kind.STRING: st.text(max_size=20),
    Kind.DATE: st.one_of(st.just(b""), st.from_regex(r"\A[0-9]{8}\Z")),
    Kind.ULONG_ARRAY: st.lists(st.integers(0, 2**64 - 1), max_size=5).map(tuple),
}
_SCALARS = sorted(a for a, k in KINDS.items() if k is not Kind.TEMPLATE)


def _scalar_dicts() -> st.SearchStrategy:
    return st.lists(st.sampled_from(_SCALARS), unique=True, max_size=8).flatmap(
        lambda attrs: st.fixed_dictionaries({a: _VALUES[KINDS[a]] for a in attrs}))


@settings(max_examples=150, deadline=None)
@given(_scalar_dicts(), _scalar_dicts())
def test_serialize_round_trips_random_attribute_sets(attrs: dict, nested: dict) -> None:
    attrs = dict(attrs)
    attrs[Attribute.UNWRAP_TEMPLATE] = nested
    assert codecs.deserialize(codecs.serialize(attrs)) == attrs
    raw = [(a, codecs.encode(a, v)) for a, v in attrs.items()]
    assert codecs.decode_template(raw) == attrs


def test_attribute_data_of_the_previous_format_keeps_any_mechanism() -> None:
    """Blobs written while every key stored an empty CKA_ALLOWED_MECHANISMS meaning "any mechanism"
    (b"SSA1") read back without the attribute; the current format keeps an explicit empty array,
    which allows no mechanism."""
    attrs = {Attribute.CLASS: 4, Attribute.LABEL: "k", Attribute.ALLOWED_MECHANISMS: ()}
    current = codecs.serialize(attrs)
    assert current.startswith(b"SSA2") and codecs.deserialize(current) == attrs
    previous = b"SSA1" + current[4:]
    assert codecs.deserialize(previous) == {Attribute.CLASS: 4, Attribute.LABEL: "k"}
    wanted = frozenset({Attribute.CLASS, Attribute.ALLOWED_MECHANISMS})
    assert codecs.deserialize_some(previous, wanted) == {Attribute.CLASS: 4}
    restricted = {**attrs, Attribute.ALLOWED_MECHANISMS: (Mechanism.AES_ECB,)}
    assert codecs.deserialize(b"SSA1" + codecs.serialize(restricted)[4:]) == restricted


def test_deserialize_some_reads_only_up_to_the_highest_wanted_type() -> None:
    """`deserialize_some` stops after the highest wanted attribute type (entries are written in
    ascending type order): it must give exactly `deserialize`'s values for what it is asked, and
    still refuse data cut inside an entry it reads."""
    attrs = {Attribute.CLASS: 4, Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: "obj-7",
             Attribute.KEY_TYPE: 0x1F, Attribute.ID: b"\x00\x07", Attribute.SENSITIVE: True,
             Attribute.VALUE_LEN: 32, Attribute.UNIQUE_ID: "u-1", Attribute.ALLOWED_MECHANISMS: (Mechanism.AES_ECB,)}
    data = codecs.serialize(attrs)
    full = codecs.deserialize(data)
    for wanted in (frozenset({Attribute.CLASS, Attribute.TOKEN, Attribute.PRIVATE, Attribute.LABEL, Attribute.ID}),
                   frozenset({Attribute.UNIQUE_ID}), frozenset({Attribute.ALLOWED_MECHANISMS, Attribute.CLASS}),
                   frozenset({Attribute.VERIFY}), frozenset()):
        assert codecs.deserialize_some(data, wanted) == {a: full[a] for a in wanted if a in full}
    # Cut inside the ID entry (needed) is refused; cut after it is not read at all.
    id_at = data.index(b"\x00\x07", data.index(b"obj-7"))
    with pytest.raises(ValueError):
        codecs.deserialize_some(data[:id_at + 1], frozenset({Attribute.ID}))
    assert codecs.deserialize_some(data[:id_at + 2], frozenset({Attribute.ID})) == {Attribute.ID: b"\x00\x07"}
