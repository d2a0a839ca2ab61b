"""new_object, check_modify, readable, matches, object_size: exact results and exact CKR codes."""

from __future__ import annotations

import ctypes
import os
import uuid
from typing import Any

import pytest

from pkcs11_shim.attributes import templates
from pkcs11_shim.attributes.codecs import CKA_PUBLIC_KEY_INFO
from pkcs11_shim.attributes.templates import (
    Origin,
    check_modify,
    matches,
    new_object,
    object_size,
    readable,
)
from pkcs11_shim.constants import (
    CK_UNAVAILABLE_INFORMATION,
    CKR,
    Attribute,
    CertificateType,
    KeyType,
    Mechanism,
    NCipherAttribute,
    ObjectClass,
)
from pkcs11_shim.errors import PKCS11Error

A = Attribute
AES_CREATE = {A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES, A.VALUE: bytes(range(16))}
AES_GENERATE = {A.VALUE_LEN: 16}
RSA_PUBLIC_CREATE = {A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.RSA, A.MODULUS: b"\xc3" * 256,
                     A.PUBLIC_EXPONENT: b"\x01\x00\x01"}
CERT = {A.CLASS: ObjectClass.CERTIFICATE, A.CERTIFICATE_TYPE: CertificateType.X_509,
        A.SUBJECT: b"\x30\x00", A.VALUE: b"\x30\x03\x02\x01\x00"}


def code(call: Any) -> int:
    with pytest.raises(PKCS11Error) as excinfo:
        call()
    return excinfo.value.rv


def secret(origin: Origin = Origin.GENERATE, base: dict | None = None, **extra: Any) -> dict:
    template = {**AES_GENERATE, **{getattr(A, k): v for k, v in extra.items()}}
    if origin is Origin.UNWRAP:
        template.update({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES})
    return new_object(template, origin, object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                      mechanism=Mechanism.AES_KEY_GEN, base=base)


# --- defaults ---------------------------------------------------------------------------------------

def test_secret_key_defaults() -> None:
    attrs = new_object(AES_CREATE, Origin.CREATE)
    assert attrs[A.CLASS] == ObjectClass.SECRET_KEY and attrs[A.KEY_TYPE] == KeyType.AES
    expected = {A.TOKEN: False, A.PRIVATE: True, A.MODIFIABLE: True, A.COPYABLE: True, A.DESTROYABLE: True,
                A.LABEL: "", A.ID: b"", A.START_DATE: b"", A.END_DATE: b"", A.DERIVE: False,
                A.SENSITIVE: False, A.EXTRACTABLE: False, A.WRAP_WITH_TRUSTED: False, A.TRUSTED: False,
                A.ENCRYPT: True, A.DECRYPT: True, A.SIGN: True, A.VERIFY: True, A.WRAP: True, A.UNWRAP: True,
                A.WRAP_TEMPLATE: {}, A.UNWRAP_TEMPLATE: {}, A.DERIVE_TEMPLATE: {}}
    for attr, value in expected.items():
        assert attrs[attr] == value, A(attr).name
    # No restriction given, none reported: an empty array would say "no mechanism".
    assert A.ALLOWED_MECHANISMS not in attrs
    assert attrs[A.VALUE] == bytes(range(16))  # material stays for the caller to split off


def test_public_private_data_certificate_defaults() -> None:
    public = new_object(RSA_PUBLIC_CREATE, Origin.CREATE)
    assert public[A.PRIVATE] is False and public[A.ENCRYPT] is True and public[A.VERIFY] is True
    assert public[A.WRAP] is True and public[A.TRUSTED] is False and public[A.SUBJECT] == b""
    assert A.SENSITIVE not in public and A.ALWAYS_SENSITIVE not in public
    private = new_object({A.MODULUS_BITS: 2048}, Origin.GENERATE_PAIR, object_class=ObjectClass.PUBLIC_KEY,
                         key_type=KeyType.RSA)
    assert private[A.MODULUS_BITS] == 2048
    priv = new_object({}, Origin.GENERATE_PAIR, object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.RSA,
                      mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN)
    assert priv[A.PRIVATE] is True and priv[A.SIGN] is True and priv[A.ALWAYS_AUTHENTICATE] is False
    data = new_object({A.CLASS: ObjectClass.DATA}, Origin.CREATE)
    assert data[A.PRIVATE] is True and data[A.VALUE] == b"" and data[A.APPLICATION] == ""
    assert data[A.OBJECT_ID] == b"" and A.LOCAL not in data
    cert = new_object(CERT, Origin.CREATE)
    assert cert[A.PRIVATE] is False and cert[A.TRUSTED] is False and cert[A.CERTIFICATE_CATEGORY] == 0
    assert cert[A.ISSUER] == b"" and cert[A.JAVA_MIDP_SECURITY_DOMAIN] == 0 and cert[CKA_PUBLIC_KEY_INFO] == b""


def test_template_values_override_defaults() -> None:
    attrs = new_object({**AES_CREATE, A.TOKEN: True, A.LABEL: "k", A.ENCRYPT: False}, Origin.CREATE)
    assert attrs[A.TOKEN] is True and attrs[A.LABEL] == "k" and attrs[A.ENCRYPT] is False


# --- computed attributes -----------------------------------------------------------------------------

@pytest.mark.parametrize("origin,local,always_sensitive,never_extractable,gen_mech", [
    (Origin.GENERATE, True, True, True, Mechanism.AES_KEY_GEN),
    (Origin.UNWRAP, False, False, False, CK_UNAVAILABLE_INFORMATION),
    (Origin.DERIVE, False, True, True, CK_UNAVAILABLE_INFORMATION),
])
def test_computed_for_sensitive_unextractable_keys(origin: Origin, local: bool, always_sensitive: bool,
                                                   never_extractable: bool, gen_mech: int) -> None:
    base = {A.ALWAYS_SENSITIVE: True, A.NEVER_EXTRACTABLE: True}
    attrs = secret(origin, base=base, SENSITIVE=True, EXTRACTABLE=False)
    assert attrs[A.LOCAL] is local
    assert attrs[A.ALWAYS_SENSITIVE] is always_sensitive
    assert attrs[A.NEVER_EXTRACTABLE] is never_extractable
    assert attrs[A.KEY_GEN_MECHANISM] == gen_mech


def test_computed_for_created_keys() -> None:
    attrs = new_object({**AES_CREATE, A.SENSITIVE: True, A.EXTRACTABLE: False}, Origin.CREATE)
    assert attrs[A.LOCAL] is False and attrs[A.ALWAYS_SENSITIVE] is False
    assert attrs[A.NEVER_EXTRACTABLE] is False and attrs[A.KEY_GEN_MECHANISM] == CK_UNAVAILABLE_INFORMATION


def test_generated_keys_follow_their_own_flags() -> None:
    attrs = secret(Origin.GENERATE)  # defaults: not sensitive, not extractable
    assert attrs[A.EXTRACTABLE] is False
    assert attrs[A.ALWAYS_SENSITIVE] is False and attrs[A.NEVER_EXTRACTABLE] is True
    opened = secret(Origin.GENERATE, SENSITIVE=True, EXTRACTABLE=True)
    assert opened[A.ALWAYS_SENSITIVE] is True and opened[A.NEVER_EXTRACTABLE] is False
    pair = new_object({}, Origin.GENERATE_PAIR, object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC,
                      mechanism=Mechanism.EC_KEY_PAIR_GEN)
    assert pair[A.LOCAL] is True and pair[A.KEY_GEN_MECHANISM] == Mechanism.EC_KEY_PAIR_GEN


@pytest.mark.parametrize("base_always,base_never,sensitive,extractable,always,never", [
    (True, True, True, False, True, True),
    (False, True, True, False, False, True),
    (True, False, True, False, True, False),
    (True, True, False, True, False, False),
    (None, None, True, False, False, False),   # base without the attributes (a public key)
])
def test_derive_ands_with_the_base(base_always: bool | None, base_never: bool | None, sensitive: bool,
                                   extractable: bool, always: bool, never: bool) -> None:
    base = {k: v for k, v in ((A.ALWAYS_SENSITIVE, base_always), (A.NEVER_EXTRACTABLE, base_never))
            if v is not None}
    attrs = secret(Origin.DERIVE, base=base, SENSITIVE=sensitive, EXTRACTABLE=extractable)
    assert attrs[A.ALWAYS_SENSITIVE] is always and attrs[A.NEVER_EXTRACTABLE] is never


def test_unique_ids_are_assigned_and_unique() -> None:
    first, second = new_object(AES_CREATE, Origin.CREATE), new_object(AES_CREATE, Origin.CREATE)
    assert isinstance(first[A.UNIQUE_ID], str) and first[A.UNIQUE_ID] != second[A.UNIQUE_ID]
    data = new_object({A.CLASS: ObjectClass.DATA}, Origin.CREATE)
    assert data[A.UNIQUE_ID]


def test_unique_ids_are_rfc_9562_version_4_and_never_repeat_across_batches() -> None:
    ids = [templates.new_uuid4() for _ in range(3 * templates._UUID_BATCH + 7)]  # several refills
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


@pytest.mark.parametrize("fork", ["os.fork", "libc fork"])
def test_a_forked_child_does_not_reuse_its_parents_pooled_ids(fork: str) -> None:
    """os.fork runs Python's at-fork hooks; a C host's own fork() (libc, here through ctypes) does not."""
    templates.new_uuid4()  # the pool now holds ids the parent has not handed out
    pending = set(templates._uuid_pool)
    assert pending
    read, write = os.pipe()
    pid = os.fork() if fork == "os.fork" else ctypes.CDLL(None, use_errno=True).fork()
    if pid == 0:  # the child: report the ids it makes, then leave without pytest's teardown
        os.close(read)
        os.write(write, "\n".join(templates.new_uuid4() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_ids = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    assert len(child_ids) == 50 and not child_ids & pending


# --- token-computed and origin-forbidden attributes -> CKR_ATTRIBUTE_READ_ONLY -----------------------

@pytest.mark.parametrize("attr,value", [
    (A.LOCAL, True), (A.LOCAL, False), (A.ALWAYS_SENSITIVE, True), (A.NEVER_EXTRACTABLE, False),
    (A.KEY_GEN_MECHANISM, Mechanism.AES_KEY_GEN), (A.UNIQUE_ID, "mine"),
    (NCipherAttribute.NFKM_APPNAME, "pkcs11"), (NCipherAttribute.NFKM_ID, b"ua00"),
])
@pytest.mark.parametrize("origin", [Origin.CREATE, Origin.GENERATE, Origin.UNWRAP, Origin.DERIVE])
def test_token_computed_attributes_are_read_only_in_every_template(attr: int, value: Any,
                                                                     origin: Origin) -> None:
    template = dict(AES_CREATE) if origin is Origin.CREATE else {A.CLASS: ObjectClass.SECRET_KEY,
                                                                  A.KEY_TYPE: KeyType.AES, A.VALUE_LEN: 16}
    template[attr] = value
    assert code(lambda: new_object(template, origin, base={})) == CKR.ATTRIBUTE_READ_ONLY


@pytest.mark.parametrize("template,origin,kwargs", [
    ({**AES_CREATE, A.VALUE_LEN: 16}, Origin.CREATE, {}),                      # footnote 2
    ({A.VALUE_LEN: 16, A.VALUE: bytes(16)}, Origin.GENERATE, {}),               # footnote 4
    ({A.VALUE_LEN: 16, A.VALUE: bytes(16)}, Origin.DERIVE, {}),
    ({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES, A.VALUE: bytes(16)}, Origin.UNWRAP, {}),
    ({A.MODULUS_BITS: 2048, A.MODULUS: b"\x01"}, Origin.GENERATE_PAIR, {"object_class": ObjectClass.PUBLIC_KEY,
                                                                         "key_type": KeyType.RSA}),
    ({**RSA_PUBLIC_CREATE, A.MODULUS_BITS: 2048}, Origin.CREATE, {}),
    ({A.EC_PARAMS: b"\x06\x00"}, Origin.GENERATE_PAIR, {"object_class": ObjectClass.PRIVATE_KEY,
                                                       "key_type": KeyType.EC}),
    ({A.PRIME_1: b"\x07"}, Origin.GENERATE_PAIR, {"object_class": ObjectClass.PRIVATE_KEY, "key_type": KeyType.RSA}),
    ({A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.RSA, A.MODULUS: b"\x01"}, Origin.UNWRAP, {}),
    ({A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.RSA, CKA_PUBLIC_KEY_INFO: b"\x30\x00"},
     Origin.UNWRAP, {}),
])
def test_origin_forbidden_attributes_are_read_only(template: dict, origin: Origin, kwargs: dict) -> None:
    if origin in (Origin.GENERATE, Origin.DERIVE):
        kwargs = {"object_class": ObjectClass.SECRET_KEY, "key_type": KeyType.AES, **kwargs}
    assert code(lambda: new_object(template, origin, **kwargs)) == CKR.ATTRIBUTE_READ_ONLY


def test_value_len_is_allowed_for_unwrap_and_derive() -> None:
    assert secret(Origin.UNWRAP)[A.VALUE_LEN] == 16
    assert secret(Origin.DERIVE, base={})[A.VALUE_LEN] == 16
    des3 = new_object({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.DES3}, Origin.GENERATE,
                      mechanism=Mechanism.DES3_KEY_GEN)
    assert A.VALUE_LEN not in des3  # the material supplies it


# --- class and key type --------------------------------------------------------------------------------

def test_class_and_key_type_from_arguments_or_template() -> None:
    attrs = new_object(AES_GENERATE, Origin.GENERATE, object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES)
    assert attrs[A.CLASS] == ObjectClass.SECRET_KEY and attrs[A.KEY_TYPE] == KeyType.AES
    same = new_object({**AES_GENERATE, A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES}, Origin.GENERATE,
                      object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES)
    assert same[A.KEY_TYPE] == KeyType.AES


@pytest.mark.parametrize("template,kwargs,expected", [
    ({A.CLASS: ObjectClass.PUBLIC_KEY, **AES_GENERATE}, {"object_class": ObjectClass.SECRET_KEY,
                                                         "key_type": KeyType.AES}, CKR.TEMPLATE_INCONSISTENT),
    ({A.KEY_TYPE: KeyType.DES3, **AES_GENERATE}, {"object_class": ObjectClass.SECRET_KEY,
                                                  "key_type": KeyType.AES}, CKR.TEMPLATE_INCONSISTENT),
    ({A.KEY_TYPE: KeyType.AES, A.VALUE: bytes(16)}, {}, CKR.TEMPLATE_INCOMPLETE),            # no class
    ({A.CLASS: ObjectClass.SECRET_KEY, A.VALUE: bytes(16)}, {}, CKR.TEMPLATE_INCOMPLETE),     # no key type
    ({A.CLASS: ObjectClass.CERTIFICATE, A.SUBJECT: b"", A.VALUE: b""}, {}, CKR.TEMPLATE_INCOMPLETE),
    ({A.CLASS: ObjectClass.HW_FEATURE}, {}, CKR.ATTRIBUTE_VALUE_INVALID),
    ({A.CLASS: 0x7777}, {}, CKR.ATTRIBUTE_VALUE_INVALID),
    ({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: 0x7777, A.VALUE: b"1"}, {}, CKR.ATTRIBUTE_VALUE_INVALID),
    ({A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.DSA}, {}, CKR.ATTRIBUTE_VALUE_INVALID),
    ({A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.AES, A.VALUE: b"1"}, {}, CKR.TEMPLATE_INCONSISTENT),
    ({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.RSA}, {}, CKR.TEMPLATE_INCONSISTENT),
    ({**CERT, A.CERTIFICATE_TYPE: CertificateType.WTLS}, {}, CKR.ATTRIBUTE_VALUE_INVALID),
])
def test_class_and_type_errors(template: dict, kwargs: dict, expected: int) -> None:
    origin = Origin.GENERATE if kwargs else Origin.CREATE
    assert code(lambda: new_object(template, origin, **kwargs)) == expected


# --- incomplete / inconsistent / invalid ----------------------------------------------------------------

@pytest.mark.parametrize("template,origin,kwargs", [
    ({A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES}, Origin.CREATE, {}),          # no VALUE
    ({A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.RSA, A.PUBLIC_EXPONENT: b"\x03"}, Origin.CREATE, {}),
    ({A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.RSA, A.MODULUS: b"\x0f",
      A.PRIVATE_EXPONENT: b"\x03"}, Origin.CREATE, {}),                                         # no e (2.40+)
    ({A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.EC, A.EC_PARAMS: b"\x06\x00"}, Origin.CREATE, {}),
    ({A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: KeyType.EC, A.VALUE: b"\x01"}, Origin.CREATE, {}),
    ({A.CLASS: ObjectClass.CERTIFICATE, A.CERTIFICATE_TYPE: CertificateType.X_509, A.VALUE: b"0"},
     Origin.CREATE, {}),
    ({}, Origin.GENERATE, {"object_class": ObjectClass.SECRET_KEY, "key_type": KeyType.AES}),   # no VALUE_LEN
    ({}, Origin.GENERATE, {"object_class": ObjectClass.SECRET_KEY, "key_type": KeyType.SHA256_HMAC}),
    ({}, Origin.GENERATE_PAIR, {"object_class": ObjectClass.PUBLIC_KEY, "key_type": KeyType.RSA}),
    ({}, Origin.GENERATE_PAIR, {"object_class": ObjectClass.PUBLIC_KEY, "key_type": KeyType.EC}),
    ({A.CLASS: ObjectClass.SECRET_KEY}, Origin.UNWRAP, {}),                                     # footnote 5
    ({A.KEY_TYPE: KeyType.AES}, Origin.UNWRAP, {}),
])
def test_missing_required_attributes_are_template_incomplete(template: dict, origin: Origin,
                                                             kwargs: dict) -> None:
    assert code(lambda: new_object(template, origin, **kwargs)) == CKR.TEMPLATE_INCOMPLETE


@pytest.mark.parametrize("attr,value", [
    (A.MODULUS, b"\x01"), (A.EC_POINT, b"\x04"), (A.SIGN_RECOVER, True), (A.APPLICATION, "app"),
    (A.CERTIFICATE_TYPE, 0), (A.ALWAYS_AUTHENTICATE, False), (A.OTP_FORMAT, 0),
])
def test_attributes_of_other_classes_are_template_inconsistent(attr: int, value: Any) -> None:
    assert code(lambda: new_object({**AES_CREATE, attr: value}, Origin.CREATE)) == CKR.TEMPLATE_INCONSISTENT


def test_public_keys_have_no_sensitivity() -> None:
    template = {**RSA_PUBLIC_CREATE, A.SENSITIVE: True}
    assert code(lambda: new_object(template, Origin.CREATE)) == CKR.TEMPLATE_INCONSISTENT


def test_unknown_attribute_is_type_invalid() -> None:
    assert code(lambda: new_object({**AES_CREATE, 0x7FFF: b""}, Origin.CREATE)) == CKR.ATTRIBUTE_TYPE_INVALID


@pytest.mark.parametrize("template", [
    {**AES_CREATE, A.SENSITIVE: "yes"}, {**AES_CREATE, A.LABEL: 5}, {**AES_CREATE, A.START_DATE: "1/1/2020"},
    {**CERT, A.CERTIFICATE_CATEGORY: 7}, {**CERT, A.JAVA_MIDP_SECURITY_DOMAIN: 4},
    {**AES_CREATE, A.ALLOWED_MECHANISMS: "AES"},
])
def test_bad_values_are_value_invalid(template: dict) -> None:
    assert code(lambda: new_object(template, Origin.CREATE)) == CKR.ATTRIBUTE_VALUE_INVALID


def test_zero_value_len_is_value_invalid() -> None:
    assert code(lambda: secret(VALUE_LEN=0)) == CKR.ATTRIBUTE_VALUE_INVALID


def test_values_are_normalized() -> None:
    attrs = new_object({**AES_CREATE, A.ID: bytearray(b"id"), A.ENCRYPT: 1, A.ALLOWED_MECHANISMS: [Mechanism.AES_CBC]},
                       Origin.CREATE)
    assert attrs[A.ID] == b"id" and type(attrs[A.ID]) is bytes
    assert attrs[A.ENCRYPT] is True and attrs[A.ALLOWED_MECHANISMS] == (Mechanism.AES_CBC,)


def test_always_authenticate_needs_private() -> None:
    template = {A.ALWAYS_AUTHENTICATE: True, A.PRIVATE: False}
    kwargs = {"object_class": ObjectClass.PRIVATE_KEY, "key_type": KeyType.RSA}
    assert code(lambda: new_object(template, Origin.GENERATE_PAIR, **kwargs)) == CKR.TEMPLATE_INCONSISTENT
    ok = new_object({A.ALWAYS_AUTHENTICATE: True}, Origin.GENERATE_PAIR, **kwargs)
    assert ok[A.ALWAYS_AUTHENTICATE] is True and ok[A.PRIVATE] is True


def test_trusted_true_only_by_the_so() -> None:
    template = {**RSA_PUBLIC_CREATE, A.TRUSTED: True}
    assert code(lambda: new_object(template, Origin.CREATE)) == CKR.ATTRIBUTE_READ_ONLY
    assert new_object(template, Origin.CREATE, is_so=True)[A.TRUSTED] is True
    assert new_object({**RSA_PUBLIC_CREATE, A.TRUSTED: False}, Origin.CREATE)[A.TRUSTED] is False
    assert code(lambda: new_object({**CERT, A.TRUSTED: True}, Origin.CREATE)) == CKR.ATTRIBUTE_READ_ONLY
    assert code(lambda: new_object({**AES_CREATE, A.TRUSTED: True}, Origin.CREATE)) == CKR.ATTRIBUTE_READ_ONLY


def test_new_object_leaves_the_template_alone() -> None:
    template = dict(AES_CREATE)
    new_object(template, Origin.CREATE)
    assert template == AES_CREATE


# --- check_modify ---------------------------------------------------------------------------------------

def aes(**extra: Any) -> dict:
    return new_object({**AES_CREATE, **{getattr(A, k): v for k, v in extra.items()}}, Origin.CREATE)


def modify(current: dict, copying: bool = False, is_so: bool = False, **changes: Any) -> dict:
    return check_modify(current, {getattr(A, k): v for k, v in changes.items()}, is_so=is_so, copying=copying)


def test_settable_attributes_change() -> None:
    current = aes()
    merged = modify(current, LABEL="new", ENCRYPT=False, ID=b"\x01", END_DATE="20300101", DERIVE=True)
    assert merged[A.LABEL] == "new" and merged[A.ENCRYPT] is False and merged[A.END_DATE] == "20300101"
    assert current[A.LABEL] == "" and current[A.ENCRYPT] is True  # the current dict is untouched


def test_not_modifiable_is_action_prohibited_except_for_copy() -> None:
    current = aes(MODIFIABLE=False)
    assert code(lambda: modify(current, LABEL="x")) == CKR.ACTION_PROHIBITED
    assert modify(current, copying=True, LABEL="x")[A.LABEL] == "x"


def test_not_copyable_is_action_prohibited_for_copy() -> None:
    current = aes(COPYABLE=False)
    assert code(lambda: modify(current, copying=True)) == CKR.ACTION_PROHIBITED
    assert modify(current, LABEL="x")[A.LABEL] == "x"


@pytest.mark.parametrize("copying", [False, True])
def test_sensitive_only_false_to_true(copying: bool) -> None:
    assert modify(aes(), copying=copying, SENSITIVE=True)[A.SENSITIVE] is True
    assert code(lambda: modify(aes(SENSITIVE=True), copying=copying, SENSITIVE=False)) == CKR.ATTRIBUTE_READ_ONLY
    assert modify(aes(SENSITIVE=True), copying=copying, SENSITIVE=True)[A.SENSITIVE] is True


@pytest.mark.parametrize("copying", [False, True])
def test_extractable_only_true_to_false(copying: bool) -> None:
    assert modify(aes(), copying=copying, EXTRACTABLE=False)[A.EXTRACTABLE] is False
    assert code(lambda: modify(aes(EXTRACTABLE=False), copying=copying, EXTRACTABLE=True)) \
        == CKR.ATTRIBUTE_READ_ONLY


@pytest.mark.parametrize("copying", [False, True])
def test_wrap_with_trusted_is_sticky(copying: bool) -> None:
    assert modify(aes(), copying=copying, WRAP_WITH_TRUSTED=True)[A.WRAP_WITH_TRUSTED] is True
    assert code(lambda: modify(aes(WRAP_WITH_TRUSTED=True), copying=copying, WRAP_WITH_TRUSTED=False)) \
        == CKR.ATTRIBUTE_READ_ONLY


def test_copyable_only_true_to_false() -> None:
    assert modify(aes(), COPYABLE=False)[A.COPYABLE] is False
    assert code(lambda: modify(aes(COPYABLE=False), COPYABLE=True)) == CKR.ATTRIBUTE_READ_ONLY


@pytest.mark.parametrize("copying", [False, True])
def test_trusted_by_so_only(copying: bool) -> None:
    public = new_object(RSA_PUBLIC_CREATE, Origin.CREATE)
    assert code(lambda: modify(public, copying=copying, TRUSTED=True)) == CKR.ATTRIBUTE_READ_ONLY
    trusted = modify(public, copying=copying, is_so=True, TRUSTED=True)
    assert trusted[A.TRUSTED] is True
    assert modify(trusted, copying=copying, TRUSTED=False)[A.TRUSTED] is False  # anyone may withdraw trust
    assert modify(trusted, copying=copying, TRUSTED=True)[A.TRUSTED] is True    # restating is no change


@pytest.mark.parametrize("name,value", [("TOKEN", True), ("PRIVATE", False), ("MODIFIABLE", False),
                                        ("DESTROYABLE", False)])
def test_copy_only_attributes(name: str, value: bool) -> None:
    current = aes()
    assert code(lambda: modify(current, **{name: value})) == CKR.ATTRIBUTE_READ_ONLY
    assert modify(current, copying=True, **{name: value})[getattr(A, name)] is value


@pytest.mark.parametrize("copying", [False, True])
@pytest.mark.parametrize("name,value", [
    ("CLASS", ObjectClass.DATA), ("KEY_TYPE", KeyType.GENERIC_SECRET), ("VALUE", bytes(16)),
    ("LOCAL", True), ("ALWAYS_SENSITIVE", True), ("NEVER_EXTRACTABLE", True), ("UNIQUE_ID", "x"),
    ("KEY_GEN_MECHANISM", Mechanism.AES_KEY_GEN), ("ALLOWED_MECHANISMS", (1,)), ("WRAP_TEMPLATE", {A.TOKEN: True}),
])
def test_fixed_attributes_are_read_only(copying: bool, name: str, value: Any) -> None:
    stored = {k: v for k, v in aes().items() if k != A.VALUE}
    assert code(lambda: modify(stored, copying=copying, **{name: value})) == CKR.ATTRIBUTE_READ_ONLY


def test_restating_a_read_only_value_is_no_change() -> None:
    current = aes()
    merged = modify(current, CLASS=ObjectClass.SECRET_KEY, KEY_TYPE=KeyType.AES)
    assert merged == current


@pytest.mark.parametrize("copying", [False, True])
@pytest.mark.parametrize("name", ["KEY_GEN_MECHANISM", "LOCAL", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE"])
def test_token_computed_attributes_are_read_only_even_restated(copying: bool, name: str) -> None:
    """PKCS#11 3.0 §4.7 footnotes 2,4,6: CKA_KEY_GEN_MECHANISM and the other values the token computes
    cannot be given by the application, not even with the value they have."""
    generated = secret(Origin.GENERATE)
    assert code(lambda: modify(generated, copying=copying, **{name: generated[getattr(A, name)]})) \
        == CKR.ATTRIBUTE_READ_ONLY


def test_modify_errors_by_kind() -> None:
    current = aes()
    assert code(lambda: check_modify(current, {0x7FFF: b""}, is_so=False, copying=False)) \
        == CKR.ATTRIBUTE_TYPE_INVALID
    assert code(lambda: modify(current, MODULUS=b"\x01")) == CKR.TEMPLATE_INCONSISTENT
    assert code(lambda: modify(current, LABEL=b"\xff")) == CKR.ATTRIBUTE_VALUE_INVALID
    assert code(lambda: modify(current, SENSITIVE="no")) == CKR.ATTRIBUTE_VALUE_INVALID


def test_check_value_may_only_be_cleared() -> None:
    current = {**aes(), A.CHECK_VALUE: b"\x01\x02\x03"}
    assert modify(current, CHECK_VALUE=b"")[A.CHECK_VALUE] == b""
    assert code(lambda: modify(current, CHECK_VALUE=b"\x09\x09\x09")) == CKR.ATTRIBUTE_READ_ONLY


def test_copy_keeps_history_and_gets_a_new_unique_id() -> None:
    generated = secret(Origin.GENERATE, SENSITIVE=True)
    copy = modify(generated, copying=True, TOKEN=True)
    assert copy[A.LOCAL] is True and copy[A.ALWAYS_SENSITIVE] is True
    assert copy[A.KEY_GEN_MECHANISM] == Mechanism.AES_KEY_GEN
    assert copy[A.UNIQUE_ID] != generated[A.UNIQUE_ID]
    assert modify(generated, LABEL="x")[A.UNIQUE_ID] == generated[A.UNIQUE_ID]


def test_copy_through_new_object() -> None:
    current = aes()
    copy = new_object({A.LABEL: "copy"}, Origin.COPY, base=current)
    assert copy[A.LABEL] == "copy" and copy[A.UNIQUE_ID] != current[A.UNIQUE_ID]


def test_copy_cannot_break_always_authenticate() -> None:
    priv = new_object({A.ALWAYS_AUTHENTICATE: True}, Origin.GENERATE_PAIR, object_class=ObjectClass.PRIVATE_KEY,
                      key_type=KeyType.EC)
    assert code(lambda: modify(priv, copying=True, PRIVATE=False)) == CKR.TEMPLATE_INCONSISTENT


def test_modify_certificate_fields() -> None:
    cert = new_object(CERT, Origin.CREATE)
    assert modify(cert, ISSUER=b"\x30\x00", SERIAL_NUMBER=b"\x02\x01\x05", ID=b"1")[A.ID] == b"1"
    assert code(lambda: modify(cert, SUBJECT=b"\x30\x01")) == CKR.ATTRIBUTE_READ_ONLY
    assert code(lambda: modify(cert, VALUE=b"")) == CKR.ATTRIBUTE_READ_ONLY


def test_modify_data_object() -> None:
    data = new_object({A.CLASS: ObjectClass.DATA, A.VALUE: b"v"}, Origin.CREATE)
    assert modify(data, LABEL="d")[A.LABEL] == "d"
    for name, value in (("VALUE", b"w"), ("APPLICATION", "app"), ("OBJECT_ID", b"\x06\x01\x01")):
        assert code(lambda n=name, v=value: modify(data, **{n: v})) == CKR.ATTRIBUTE_READ_ONLY


# --- readable ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sensitive,extractable,expected", [
    (False, True, True), (True, True, False), (False, False, False), (True, False, False)])
def test_secret_components_are_readable_only_when_not_sensitive_and_extractable(
        sensitive: bool, extractable: bool, expected: bool) -> None:
    key = aes(SENSITIVE=sensitive, EXTRACTABLE=extractable)
    assert readable(key, A.VALUE) is expected
    assert readable(key, A.LABEL) and readable(key, A.VALUE_LEN) and readable(key, A.CHECK_VALUE)
    rsa = new_object({A.SENSITIVE: sensitive, A.EXTRACTABLE: extractable}, Origin.GENERATE_PAIR,
                     object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.RSA)
    for attr in (A.PRIVATE_EXPONENT, A.PRIME_1, A.PRIME_2, A.EXPONENT_1, A.EXPONENT_2, A.COEFFICIENT):
        assert readable(rsa, attr) is expected
    assert readable(rsa, A.MODULUS) and readable(rsa, A.PUBLIC_EXPONENT)


def test_public_data_and_certificates_are_always_readable() -> None:
    assert readable(new_object(RSA_PUBLIC_CREATE, Origin.CREATE), A.MODULUS)
    assert readable(new_object({A.CLASS: ObjectClass.DATA, A.VALUE: b"x"}, Origin.CREATE), A.VALUE)
    assert readable(new_object(CERT, Origin.CREATE), A.VALUE)
    assert readable({}, A.VALUE)


# --- matches -----------------------------------------------------------------------------------------------

def test_matches() -> None:
    key = aes(LABEL="k", ID=b"\x01", ALLOWED_MECHANISMS=(Mechanism.AES_ECB, Mechanism.AES_CBC),
              UNWRAP_TEMPLATE={A.SENSITIVE: True, A.EXTRACTABLE: False})
    assert matches(key, {})
    assert matches(key, {A.CLASS: ObjectClass.SECRET_KEY, A.LABEL: "k", A.ID: b"\x01"})
    assert matches(key, {A.ENCRYPT: 1, A.KEY_TYPE: int(KeyType.AES)})
    assert matches(key, {A.UNWRAP_TEMPLATE: {A.EXTRACTABLE: False, A.SENSITIVE: True}})  # order free
    assert matches(key, {A.START_DATE: ""}) and matches(key, {A.START_DATE: b""})
    assert matches(key, {A.ALLOWED_MECHANISMS: (Mechanism.AES_ECB, Mechanism.AES_CBC)})
    assert not matches(key, {A.ALLOWED_MECHANISMS: (Mechanism.AES_CBC, Mechanism.AES_ECB)})  # exact values
    assert not matches(key, {A.UNWRAP_TEMPLATE: {A.SENSITIVE: True}})
    assert not matches(key, {A.LABEL: "K"})
    assert not matches(key, {A.MODULUS: b"\x01"})
    assert not matches(key, {0x7FFF: b""})
    assert not matches(key, {A.ENCRYPT: "yes"})


def test_wrap_template_matching() -> None:
    wrap_template = {A.CLASS: ObjectClass.SECRET_KEY, A.EXTRACTABLE: True}
    assert matches(aes(EXTRACTABLE=True), wrap_template)
    assert not matches(aes(EXTRACTABLE=False), wrap_template)
    assert not matches(aes(), wrap_template)  # the default is unextractable


# --- object_size ---------------------------------------------------------------------------------------------

def test_object_size_is_stable_and_grows_with_content() -> None:
    key = {k: v for k, v in aes().items() if k != A.UNIQUE_ID}
    assert object_size(key) == object_size(dict(reversed(list(key.items()))))
    assert object_size({**key, A.LABEL: "a longer label"}) == object_size(key) + len("a longer label")
    assert object_size({}) == 0
    assert object_size({0x7FFF: b"ignored"}) == 0


def test_origin_flags_cover_every_origin_but_copy() -> None:
    assert set(templates.ORIGIN_FLAGS) == set(Origin) - {Origin.COPY}
