"""Functions over templates: making a new object's attributes, changing them, reading and matching.

Everything here is driven by the tables in `rules`; the only per-attribute code is the table of
token-computed values (`COMPUTED`) and the cross-attribute constraints (`REQUIRES_TRUE`).

Return codes (PKCS#11 3.0 §4.1.1, applied to modify and copy by §4.1.2-4.1.3):
- unknown attribute type -> CKR_ATTRIBUTE_TYPE_INVALID (rule 1);
- a known attribute the object's class/key type does not have -> CKR_TEMPLATE_INCONSISTENT (rule 5:
  "a secret key object with an attribute which is appropriate for ... public keys");
- a bad value -> CKR_ATTRIBUTE_VALUE_INVALID (rule 2), also an unsupported CKA_CLASS / CKA_KEY_TYPE /
  CKA_CERTIFICATE_TYPE value;
- a read-only attribute (token-computed, forbidden for this kind of creation, not changeable now,
  CKA_TRUSTED=TRUE from a non-SO) -> CKR_ATTRIBUTE_READ_ONLY (rule 3, §4.2 for CKA_UNIQUE_ID);
- a missing required attribute -> CKR_TEMPLATE_INCOMPLETE (rule 4);
- the class or key type disagreeing with the function's own -> CKR_TEMPLATE_INCONSISTENT.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable, Mapping
from typing import Any

from .. import forks
from ..constants import CK_UNAVAILABLE_INFORMATION, CKR, Attribute
from ..errors import PKCS11Error
from . import codecs, rules
from .rules import Flag


class Origin(enum.Enum):
    CREATE = "C_CreateObject"
    GENERATE = "C_GenerateKey"
    GENERATE_PAIR = "C_GenerateKeyPair"
    UNWRAP = "C_UnwrapKey"
    DERIVE = "C_DeriveKey"
    COPY = "C_CopyObject"


#: Origin -> (flag making an attribute required, flag forbidding it) in that origin's template.
ORIGIN_FLAGS: dict[Origin, tuple[Flag, Flag]] = {
    Origin.CREATE: (Flag.REQUIRED_ON_CREATE, Flag.FORBIDDEN_ON_CREATE),
    Origin.GENERATE: (Flag.REQUIRED_ON_GENERATE, Flag.FORBIDDEN_ON_GENERATE),
    Origin.GENERATE_PAIR: (Flag.REQUIRED_ON_GENERATE, Flag.FORBIDDEN_ON_GENERATE),
    Origin.UNWRAP: (Flag.REQUIRED_ON_UNWRAP, Flag.FORBIDDEN_ON_UNWRAP),
    Origin.DERIVE: (Flag.NONE, Flag.FORBIDDEN_ON_DERIVE),
}
GENERATED = frozenset({Origin.GENERATE, Origin.GENERATE_PAIR})

#: (a, b): CKA_a may be TRUE only when CKA_b is TRUE. §4.9: CKA_ALWAYS_AUTHENTICATE "may only be set to
#: CK_TRUE when CKA_PRIVATE is also CK_TRUE".
REQUIRES_TRUE: tuple[tuple[int, int], ...] = ((Attribute.ALWAYS_AUTHENTICATE, Attribute.PRIVATE),)


def _fail(rv: int, attr: int | None, why: str) -> PKCS11Error:
    where = f"attribute 0x{attr:x}: " if attr is not None else ""
    return PKCS11Error(rv, where + why)


# --- token-computed values (§4.7, §4.9, §4.10) ------------------------------------------------------
# Each takes (origin, attrs so far, mechanism, base key's attrs) and returns the value.
Computed = Callable[[Origin, dict, int | None, Mapping | None], Any]


def _local(origin: Origin, attrs: dict, mechanism: int | None, base: Mapping | None) -> bool:
    # CKA_LOCAL: TRUE only for keys generated on the token (or copies of such keys).
    return origin in GENERATED


def _key_gen_mechanism(origin: Origin, attrs: dict, mechanism: int | None, base: Mapping | None) -> int:
    # §4.7: valid only when CKA_LOCAL is TRUE; otherwise CK_UNAVAILABLE_INFORMATION.
    if origin in GENERATED and mechanism is not None:
        return int(mechanism)
    return CK_UNAVAILABLE_INFORMATION


def _always_sensitive(origin: Origin, attrs: dict, mechanism: int | None, base: Mapping | None) -> bool:
    # Generated keys start with their CKA_SENSITIVE; created and unwrapped keys have been outside the
    # token in the clear (or may have been), so FALSE. Derived keys: the base key's ALWAYS_SENSITIVE
    # AND the new key's SENSITIVE (§5.18.5 / §4.10 "derive: AND of base and new").
    sensitive = bool(attrs.get(Attribute.SENSITIVE, False))
    if origin in GENERATED:
        return sensitive
    if origin is Origin.DERIVE:
        return bool(base and base.get(Attribute.ALWAYS_SENSITIVE, False)) and sensitive
    return False


def _never_extractable(origin: Origin, attrs: dict, mechanism: int | None, base: Mapping | None) -> bool:
    unextractable = not attrs.get(Attribute.EXTRACTABLE, False)
    if origin in GENERATED:
        return unextractable
    if origin is Origin.DERIVE:
        return bool(base and base.get(Attribute.NEVER_EXTRACTABLE, False)) and unextractable
    return False


#: Random (version 4) UUIDs made 256 at a time: one `os.urandom` call and one hex conversion per
#: batch instead of `str(uuid.uuid4())` per object (~3 us of every C_UnwrapKey). A forked child
#: must not hand out its parent's remaining ids: Python's at-fork hooks do not run when a C host
#: calls fork() itself, so the pool remembers the fork mark it was filled under (`_uuid_mark`, forks.py).
_UUID_BATCH = 256
_uuid_pool: list[str] = []
_uuid_mark: Any = None


def _uuid_masks() -> tuple[int, int]:
    """(and, or) masks over a whole batch as one big-endian integer: RFC 9562 §5.4's version 4
    (byte 6's high nibble) and variant 10 (byte 8's top two bits) set in every 16-byte id at once."""
    keep, force = bytearray(b"\xff" * 16), bytearray(16)
    keep[6], force[6] = 0x0F, 0x40
    keep[8], force[8] = 0x3F, 0x80
    return int.from_bytes(bytes(keep) * _UUID_BATCH, "big"), int.from_bytes(bytes(force) * _UUID_BATCH, "big")


_UUID_KEEP, _UUID_FORCE = _uuid_masks()


#: A batch's hex text cut into the five groups of every id (8-4-4-4-12 digits) in one unpack.
_UUID_GROUPS = struct.Struct("8s4s4s4s12s" * _UUID_BATCH)


def _fresh_uuids() -> list[str]:
    # Every new object takes one (CKA_UNIQUE_ID): the bits are set by two integer operations per
    # batch, not two byte writes per id, and the text is cut by one struct unpack, not five slices each.
    size = 16 * _UUID_BATCH
    text = ((int.from_bytes(os.urandom(size), "big") & _UUID_KEEP) | _UUID_FORCE).to_bytes(size, "big").hex()
    groups = _UUID_GROUPS.unpack(text.encode())
    return [b"-".join(groups[at:at + 5]).decode() for at in range(0, 5 * _UUID_BATCH, 5)]


def new_uuid4() -> str:
    global _uuid_mark
    mark = forks.mark[0]  # no system call where the embedded library keeps a fork generation
    if _uuid_mark != mark:
        _uuid_pool.clear()  # filled in the parent before a fork: its ids are the parent's
        _uuid_mark = mark
    try:
        return _uuid_pool.pop()  # atomic: threads never get the same id
    except IndexError:
        fresh = _fresh_uuids()
        mine = fresh.pop()
        _uuid_pool.extend(fresh)
        return mine


def _unique_id(origin: Origin, attrs: dict, mechanism: int | None, base: Mapping | None) -> str:
    # §4.2: unique across the objects a session sees; a UUID is unique across tokens and processes.
    return new_uuid4()


COMPUTED: dict[int, Computed] = {
    Attribute.LOCAL: _local,
    Attribute.KEY_GEN_MECHANISM: _key_gen_mechanism,
    Attribute.ALWAYS_SENSITIVE: _always_sensitive,
    Attribute.NEVER_EXTRACTABLE: _never_extractable,
    Attribute.UNIQUE_ID: _unique_id,
}


# --- resolving the object's kind ------------------------------------------------------------------

def _resolve(template: Mapping[int, Any], attr: int, given: int | None) -> int | None:
    """The template's value for `attr` or the function's own; both and different: inconsistent."""
    value = template.get(attr)
    if value is not None and given is not None and int(value) != int(given):
        raise _fail(CKR.TEMPLATE_INCONSISTENT, attr, f"template says 0x{int(value):x}, the function "
                                                     f"makes 0x{int(given):x}")
    return value if value is not None else given


def _known_subtypes(subtype_attr: int) -> set[int]:
    return {sub for spec in rules.CLASSES.values() if spec.subtype_attr == subtype_attr
            for sub in spec.tables if sub is not None}


def _table(template: Mapping[int, Any], object_class: int | None,
           key_type: int | None) -> tuple[int, int | None, rules.Table]:
    cls = _resolve(template, Attribute.CLASS, object_class)
    if cls is None:
        raise _fail(CKR.TEMPLATE_INCOMPLETE, Attribute.CLASS, "CKA_CLASS missing")
    spec = rules.CLASSES.get(int(cls))
    if spec is None:
        raise _fail(CKR.ATTRIBUTE_VALUE_INVALID, Attribute.CLASS, f"objects of class 0x{int(cls):x} "
                                                                  "cannot be made on this token")
    if spec.subtype_attr is None:
        return int(cls), None, spec.tables[None]
    sub = _resolve(template, spec.subtype_attr, key_type if spec.subtype_attr == Attribute.KEY_TYPE else None)
    if sub is None:
        raise _fail(CKR.TEMPLATE_INCOMPLETE, spec.subtype_attr, f"a {spec.name} needs its type")
    tbl = spec.tables.get(int(sub))
    if tbl is None:
        # A type this token knows for another class (CKK_AES for a private key) is inconsistent;
        # one it does not know at all is an invalid value.
        rv = CKR.TEMPLATE_INCONSISTENT if int(sub) in _known_subtypes(spec.subtype_attr) else \
            CKR.ATTRIBUTE_VALUE_INVALID
        raise _fail(rv, spec.subtype_attr, f"type 0x{int(sub):x} is not supported for a {spec.name}")
    return int(cls), int(sub), tbl


def _check_value(rule: rules.AttributeRule, value: Any) -> Any:
    value = codecs.normalize(rule.attr, value)
    if rule.valid is not None and not rule.valid(value):
        raise _fail(CKR.ATTRIBUTE_VALUE_INVALID, rule.attr, "value out of range")
    return value


def _check_consistency(attrs: Mapping[int, Any]) -> None:
    for attr, needs in REQUIRES_TRUE:
        if attrs.get(attr) and not attrs.get(needs):
            raise _fail(CKR.TEMPLATE_INCONSISTENT, attr, f"needs attribute 0x{needs:x} to be TRUE")


# --- new objects ----------------------------------------------------------------------------------

def new_object(template: dict[int, Any], origin: Origin, *, object_class: int | None = None,
               key_type: int | None = None, mechanism: int | None = None, is_so: bool = False,
               base: dict | None = None) -> dict[int, Any]:
    """The full attribute set of a new object from a (decoded) template.

    The class and key type come from the template or the arguments. For C_CreateObject of keys the
    material attributes (secret CKA_VALUE, RSA components, EC CKA_VALUE) are required and stay in
    the result; the caller splits them off with `keyparts`. For DERIVE, `base` is the base key's
    attributes (CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE are ANDed with it). For COPY, `base`
    is the object copied and `template` the changes (`check_modify` with copying=True).
    """
    if origin is Origin.COPY:
        if base is None:
            raise ValueError("Origin.COPY needs the copied object's attributes as `base`")
        return check_modify(base, template, is_so=is_so, copying=True)
    for attr in template:
        if not codecs.is_known(attr):
            raise _fail(CKR.ATTRIBUTE_TYPE_INVALID, attr, "not a known attribute")
    cls, sub, tbl = _table(template, object_class, key_type)
    required, forbidden = ORIGIN_FLAGS[origin]
    required_bits, forbidden_bits = required._value_, forbidden._value_

    attrs: dict[int, Any] = {}
    for attr, value in template.items():
        attr = int(attr)
        rule = tbl.get(attr)
        if rule is None:
            raise _fail(CKR.TEMPLATE_INCONSISTENT, attr, "not an attribute of this kind of object")
        if rule.bits & forbidden_bits:
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, f"must not be given to {origin.value}")
        value = _check_value(rule, value)
        if rule.has(Flag.SO_ONLY_TRUE) and value is True and not is_so:
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "only the SO may set it to TRUE")
        attrs[attr] = value

    attrs[Attribute.CLASS] = cls
    if sub is not None:
        attrs[rules.CLASSES[cls].subtype_attr] = sub
    missing = [attr for attr, rule in tbl.items() if rule.bits & required_bits and attr not in attrs]
    if missing:
        raise _fail(CKR.TEMPLATE_INCOMPLETE, missing[0], f"required by {origin.value}")
    for attr, rule in tbl.items():
        if rule.has_default and attr not in attrs:
            attrs[attr] = codecs.normalize(attr, rule.default)
    _check_consistency(attrs)
    for attr, compute in COMPUTED.items():
        if attr in tbl:
            attrs[attr] = compute(origin, attrs, mechanism, base)
    return attrs


def required(attrs: Mapping[int, Any], attr: int) -> Any:
    """The value of an attribute a key's material needs; missing -> CKR_TEMPLATE_INCOMPLETE (rule 4)."""
    try:
        return attrs[attr]
    except KeyError:
        raise _fail(CKR.TEMPLATE_INCOMPLETE, attr, "missing") from None


def with_key_template(template: dict[int, Any], forced: Mapping[int, Any] | None, conflict: int,
                      name: str) -> dict[int, Any]:
    """The caller's template for a new key plus the attributes a key's CKA_UNWRAP_TEMPLATE /
    CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE adds to every key made with it (3.0 §5.18.5,
    3.2 §5.18.8-9); an attribute both give with different values fails with `conflict`."""
    if not forced:
        return template
    merged = dict(template)
    for attr, value in forced.items():
        if attr in merged and not _same(attr, merged[attr], value):
            raise _fail(conflict, attr, f"the template conflicts with {name}")
        merged[attr] = value
    return merged


# --- changing objects ------------------------------------------------------------------------------

def _same(attr: int, a: Any, b: Any) -> bool:
    try:
        return codecs.normalize(attr, a) == codecs.normalize(attr, b)
    except PKCS11Error:
        return False


def check_modify(current: dict, changes: dict, *, is_so: bool, copying: bool) -> dict:
    """The object's attributes after C_SetAttributeValue (copying=False) or C_CopyObject
    (copying=True) with `changes`; raises the code the spec names when a change is not allowed."""
    if copying and not current.get(Attribute.COPYABLE, True):
        raise _fail(CKR.ACTION_PROHIBITED, Attribute.COPYABLE, "the object is not copyable")
    if not copying and not current.get(Attribute.MODIFIABLE, True):
        raise _fail(CKR.ACTION_PROHIBITED, Attribute.MODIFIABLE, "the object is not modifiable")
    tbl = rules.rules_for(current)
    may_change = Flag.SETTABLE | Flag.COPY_MODIFIABLE if copying else Flag.SETTABLE
    merged = dict(current)
    for attr, value in changes.items():
        attr = int(attr)
        if not codecs.is_known(attr):
            raise _fail(CKR.ATTRIBUTE_TYPE_INVALID, attr, "not a known attribute")
        rule = tbl.get(attr)
        if rule is None:
            raise _fail(CKR.TEMPLATE_INCONSISTENT, attr, "not an attribute of this kind of object")
        value = _check_value(rule, value)
        if rule.has(Flag.TOKEN_COMPUTED):
            # Footnotes 2,4,6: the token alone sets these (CKA_LOCAL, CKA_KEY_GEN_MECHANISM,
            # CKA_ALWAYS_SENSITIVE, ...); giving one is CKR_ATTRIBUTE_READ_ONLY even with the value
            # it already has, as in every template that makes an object.
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "set by the token alone")
        old = current.get(attr, rule.default if rule.has_default else None)
        if attr in current and _same(attr, old, value):
            continue  # restating the current value changes nothing, even for a fixed attribute
        if not rule.flags & may_change:
            hint = " except by C_CopyObject" if rule.has(Flag.COPY_MODIFIABLE) else ""
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "cannot be changed" + hint)
        if rule.has(Flag.ONLY_FALSE_TO_TRUE) and old and not value:
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "cannot go back to FALSE once TRUE")
        if rule.has(Flag.ONLY_TRUE_TO_FALSE) and old is not None and not old and value:
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "cannot go back to TRUE once FALSE")
        if rule.has(Flag.SO_ONLY_TRUE) and value is True and not is_so:
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "only the SO may set it to TRUE")
        if rule.has(Flag.CLEAR_ONLY) and len(value) != 0:
            raise _fail(CKR.ATTRIBUTE_READ_ONLY, attr, "may only be cleared")
        merged[attr] = value
    _check_consistency(merged)
    if copying and Attribute.UNIQUE_ID in tbl:
        merged[Attribute.UNIQUE_ID] = _unique_id(Origin.COPY, merged, None, current)
    return merged


# --- reading, matching, sizing ---------------------------------------------------------------------

def readable(attrs: dict, attr: int) -> bool:
    """Whether C_GetAttributeValue may reveal `attr` (False -> CKR_ATTRIBUTE_SENSITIVE): footnote 7
    attributes stay inside while the object is CKA_SENSITIVE or not CKA_EXTRACTABLE."""
    rule = rules.rules_for(attrs).get(int(attr))
    if rule is None or not rule.has(Flag.SENSITIVE):
        return True
    return not attrs.get(Attribute.SENSITIVE, False) and bool(attrs.get(Attribute.EXTRACTABLE, True))


def _canonical(attr: int, value: Any) -> Any:
    """A value in a form where equal C encodings compare equal (arrays: as dicts of such values)."""
    if codecs.kind_of(attr) is codecs.Kind.TEMPLATE:
        if not isinstance(value, Mapping):
            raise _fail(CKR.ATTRIBUTE_VALUE_INVALID, attr, "an attribute array must be a dict")
        return {int(t): _canonical(t, v) for t, v in value.items()}
    return codecs.encode(attr, value)


def matches(attrs: dict, template: dict) -> bool:
    """C_FindObjects matching (§5.7.7) and CKA_WRAP_TEMPLATE matching (§5.18.3): every attribute of
    the template is present with exactly that value (arrays compare as sets of attributes)."""
    for attr, wanted in template.items():
        if attr not in attrs:
            return False
        try:
            if _canonical(attr, attrs[attr]) != _canonical(attr, wanted):
                return False
        except PKCS11Error:
            return False
    return True


def object_size(attrs: dict) -> int:
    """C_GetObjectSize: the encoded length of the stored attributes (a stable estimate; the spec
    leaves the meaning to the token, §5.7.5)."""
    total = 0
    for attr, value in attrs.items():
        try:
            total += codecs.encoded_size(attr, value)
        except PKCS11Error:
            continue
    return total
