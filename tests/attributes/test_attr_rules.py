"""The rule tables themselves: well-formed, complete where the spec says so, named flags."""

from __future__ import annotations

import pytest

from pkcs11_shim.attributes import codecs, rules
from pkcs11_shim.attributes.rules import AttributeRule, Flag
from pkcs11_shim.constants import (
    CKK_EC_MONTGOMERY,
    Attribute,
    CertificateType,
    KeyType,
    ObjectClass,
)

TABLES = rules.all_tables()
IDS = [f"class{cls:x}-type{sub if sub is None else hex(sub)}" for cls, sub, _ in TABLES]


@pytest.mark.parametrize("cls,sub,tbl", TABLES, ids=IDS)
def test_every_rule_is_consistent_and_known(cls: int, sub: int | None, tbl: rules.Table) -> None:
    for attr, rule in tbl.items():
        assert attr == rule.attr
        assert codecs.is_known(attr), hex(attr)
        assert rules.rule_problems(rule) == []
        if rule.has_default:
            codecs.normalize(attr, rule.default)  # the default is a valid value


@pytest.mark.parametrize("cls,sub,tbl", TABLES, ids=IDS)
def test_storage_attributes_everywhere(cls: int, sub: int | None, tbl: rules.Table) -> None:
    for attr in (Attribute.CLASS, Attribute.TOKEN, Attribute.PRIVATE, Attribute.MODIFIABLE,
                 Attribute.LABEL, Attribute.COPYABLE, Attribute.DESTROYABLE, Attribute.UNIQUE_ID):
        assert attr in tbl
    assert tbl[Attribute.CLASS].has(Flag.REQUIRED_ON_CREATE)
    assert tbl[Attribute.UNIQUE_ID].has(Flag.TOKEN_COMPUTED)
    for attr in (Attribute.TOKEN, Attribute.PRIVATE, Attribute.MODIFIABLE, Attribute.DESTROYABLE):
        assert tbl[attr].has(Flag.COPY_MODIFIABLE) and not tbl[attr].has(Flag.SETTABLE)


@pytest.mark.parametrize("cls,sub,tbl", [t for t in TABLES if t[0] in rules.KEY_CLASSES])
def test_key_tables(cls: int, sub: int, tbl: rules.Table) -> None:
    assert tbl[Attribute.KEY_TYPE].has(Flag.REQUIRED_ON_CREATE | Flag.REQUIRED_ON_UNWRAP)
    for attr in (Attribute.LOCAL, Attribute.KEY_GEN_MECHANISM):
        assert tbl[attr].has(Flag.TOKEN_COMPUTED)
    sensitive = {a for a, r in tbl.items() if r.has(Flag.SENSITIVE)}
    if cls == ObjectClass.PUBLIC_KEY:
        assert sensitive == set()
        assert Attribute.SENSITIVE not in tbl and Attribute.EXTRACTABLE not in tbl
    else:
        assert sensitive, "private and secret keys have secret components"
        assert tbl[Attribute.SENSITIVE].has(Flag.ONLY_FALSE_TO_TRUE)
        assert tbl[Attribute.EXTRACTABLE].has(Flag.ONLY_TRUE_TO_FALSE)
        assert tbl[Attribute.WRAP_WITH_TRUSTED].has(Flag.ONLY_FALSE_TO_TRUE)
        for attr in (Attribute.ALWAYS_SENSITIVE, Attribute.NEVER_EXTRACTABLE):
            assert tbl[attr].has(Flag.TOKEN_COMPUTED)
    if Attribute.TRUSTED in tbl:
        assert tbl[Attribute.TRUSTED].has(Flag.SO_ONLY_TRUE)


def test_sensitive_components_are_exactly_footnote_7() -> None:
    def sensitive(cls: int, sub: int) -> set[int]:
        return {a for a, r in rules.table_for(cls, sub).items() if r.has(Flag.SENSITIVE)}

    assert sensitive(ObjectClass.PRIVATE_KEY, KeyType.RSA) == {
        Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2, Attribute.EXPONENT_1,
        Attribute.EXPONENT_2, Attribute.COEFFICIENT}
    for key_type in (KeyType.EC, KeyType.EC_EDWARDS, CKK_EC_MONTGOMERY):
        assert sensitive(ObjectClass.PRIVATE_KEY, key_type) == {Attribute.VALUE}
    for key_type in (KeyType.AES, KeyType.DES3, KeyType.GENERIC_SECRET, KeyType.SHA256_HMAC):
        assert sensitive(ObjectClass.SECRET_KEY, key_type) == {Attribute.VALUE}
    assert not rules.DATA[Attribute.VALUE].has(Flag.SENSITIVE)
    assert not rules.X509_CERTIFICATE[Attribute.VALUE].has(Flag.SENSITIVE)


def test_private_defaults_by_class() -> None:
    assert rules.DATA[Attribute.PRIVATE].default is True
    assert rules.X509_CERTIFICATE[Attribute.PRIVATE].default is False
    assert rules.RSA_PUBLIC[Attribute.PRIVATE].default is False
    assert rules.RSA_PRIVATE[Attribute.PRIVATE].default is True
    assert rules.SECRET_VALUE[Attribute.PRIVATE].default is True


def test_lookup() -> None:
    assert rules.table_for(ObjectClass.SECRET_KEY, KeyType.AES) is rules.SECRET_VALUE
    assert rules.table_for(ObjectClass.CERTIFICATE, CertificateType.X_509) is rules.X509_CERTIFICATE
    assert rules.table_for(ObjectClass.DATA) is rules.DATA
    assert rules.table_for(ObjectClass.SECRET_KEY, KeyType.RSA) is None
    assert rules.table_for(ObjectClass.HW_FEATURE) is None
    assert rules.rules_for({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC}) \
        is rules.EC_PUBLIC
    assert dict(rules.rules_for({})) == {}
    assert dict(rules.rules_for({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: 0x7777})) == {}


@pytest.mark.parametrize("flags,default", [
    (Flag.SETTABLE | Flag.SET_ON_CREATE_ONLY, None),         # two mutabilities
    (Flag.NONE, None),                                       # no mutability
    (Flag.TOKEN_COMPUTED | Flag.SETTABLE, None),             # computed but settable
    (Flag.SET_ON_CREATE_ONLY | Flag.ONLY_FALSE_TO_TRUE, None),  # restriction without SETTABLE
    (Flag.SETTABLE | Flag.DEFAULTED, None),                  # DEFAULTED without a default
    (Flag.SETTABLE, False),                                  # a default without DEFAULTED
    (Flag.SETTABLE | Flag.REQUIRED_ON_CREATE | Flag.FORBIDDEN_ON_CREATE, None),
])
def test_contradictory_rules_are_refused(flags: Flag, default: object) -> None:
    kwargs = {} if default is None else {"default": default}
    with pytest.raises(ValueError):
        AttributeRule(Attribute.LABEL, flags, **kwargs)


def test_composite_flags_need_every_bit() -> None:
    partial = AttributeRule(Attribute.PRIME_1, Flag.FORBIDDEN_ON_GENERATE | Flag.SET_ON_CREATE_ONLY)
    assert not partial.has(Flag.TOKEN_COMPUTED)
    assert rules.RSA_PRIVATE[Attribute.MODULUS].has(Flag.MATERIAL)
    assert not partial.has(Flag.NONE)
