"""Which attributes each kind of object has, and what may be done with each: one table per object
class and key (or certificate) type, Kryoptic-factory style.

Each `AttributeRule` names its flags. They follow the footnotes of the PKCS#11 3.0 attribute tables
(§4.2 table 10 "Common footnotes for object attribute tables"):

| flag                   | footnote / section                                              |
|------------------------|-----------------------------------------------------------------|
| REQUIRED_ON_CREATE     | 1: must be given to C_CreateObject                              |
| FORBIDDEN_ON_CREATE    | 2: must not be given to C_CreateObject                          |
| REQUIRED_ON_GENERATE   | 3: must be given to C_GenerateKey / C_GenerateKeyPair           |
| FORBIDDEN_ON_GENERATE  | 4: must not be given to C_GenerateKey / C_GenerateKeyPair       |
| REQUIRED_ON_UNWRAP     | 5: must be given to C_UnwrapKey                                 |
| FORBIDDEN_ON_UNWRAP    | 6: must not be given to C_UnwrapKey                             |
| FORBIDDEN_ON_DERIVE    | (ours) the derivation supplies it, as generation does           |
| SENSITIVE              | 7: never revealed when CKA_SENSITIVE or not CKA_EXTRACTABLE     |
| SETTABLE               | 8: C_SetAttributeValue and C_CopyObject may change it           |
| COPY_MODIFIABLE        | §4.1.3: only C_CopyObject may change it (TOKEN, PRIVATE, ...)   |
| SET_ON_CREATE_ONLY     | may be given when the object is made, never changed             |
| SO_ONLY_TRUE           | 10: only the SO may make it CK_TRUE                             |
| ONLY_FALSE_TO_TRUE     | 11: read-only once CK_TRUE                                      |
| ONLY_TRUE_TO_FALSE     | 12: read-only once CK_FALSE                                     |
| CLEAR_ONLY             | §4.10 CKA_CHECK_VALUE: may only be changed to empty             |
| DEFAULTED              | has `default` when the template leaves it out                   |
| TOKEN_COMPUTED         | 2,4,6 (+ derive): the token alone sets it (CKA_LOCAL, ...)      |

A table lists only what an object of that kind has; a known attribute outside its table is
CKR_TEMPLATE_INCONSISTENT (§4.1.1 rule 5, "an attribute appropriate for other key classes").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..constants import (
    CKK_AES_XTS,
    CKK_DES,
    CKK_EC_MONTGOMERY,
    CKK_HKDF,
    CKK_MD5_HMAC,
    CKK_SHA512_224_HMAC,
    CKK_SHA512_256_HMAC,
    Attribute,
    CertificateType,
    KeyType,
    Mechanism,
    NCipherAttribute,
    ObjectClass,
)
from .codecs import CKA_NAME_HASH_ALGORITHM, CKA_PUBLIC_KEY_INFO


class Flag(enum.Flag):
    NONE = 0
    REQUIRED_ON_CREATE = 1 << 0
    FORBIDDEN_ON_CREATE = 1 << 1
    REQUIRED_ON_GENERATE = 1 << 2
    FORBIDDEN_ON_GENERATE = 1 << 3
    REQUIRED_ON_UNWRAP = 1 << 4
    FORBIDDEN_ON_UNWRAP = 1 << 5
    FORBIDDEN_ON_DERIVE = 1 << 6
    SENSITIVE = 1 << 7
    SETTABLE = 1 << 8
    COPY_MODIFIABLE = 1 << 9
    SET_ON_CREATE_ONLY = 1 << 10
    SO_ONLY_TRUE = 1 << 11
    ONLY_FALSE_TO_TRUE = 1 << 12
    ONLY_TRUE_TO_FALSE = 1 << 13
    CLEAR_ONLY = 1 << 14
    DEFAULTED = 1 << 15
    TOKEN_COMPUTED = FORBIDDEN_ON_CREATE | FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE
    #: Key material given only to C_CreateObject (footnotes 1,4,6): generation, unwrapping and
    #: derivation produce it.
    MATERIAL = REQUIRED_ON_CREATE | FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE


REQUIRED_ON_CREATE = Flag.REQUIRED_ON_CREATE
FORBIDDEN_ON_CREATE = Flag.FORBIDDEN_ON_CREATE
REQUIRED_ON_GENERATE = Flag.REQUIRED_ON_GENERATE
FORBIDDEN_ON_GENERATE = Flag.FORBIDDEN_ON_GENERATE
REQUIRED_ON_UNWRAP = Flag.REQUIRED_ON_UNWRAP
FORBIDDEN_ON_UNWRAP = Flag.FORBIDDEN_ON_UNWRAP
FORBIDDEN_ON_DERIVE = Flag.FORBIDDEN_ON_DERIVE
SENSITIVE = Flag.SENSITIVE
SETTABLE = Flag.SETTABLE
COPY_MODIFIABLE = Flag.COPY_MODIFIABLE
SET_ON_CREATE_ONLY = Flag.SET_ON_CREATE_ONLY
SO_ONLY_TRUE = Flag.SO_ONLY_TRUE
ONLY_FALSE_TO_TRUE = Flag.ONLY_FALSE_TO_TRUE
ONLY_TRUE_TO_FALSE = Flag.ONLY_TRUE_TO_FALSE
CLEAR_ONLY = Flag.CLEAR_ONLY
DEFAULTED = Flag.DEFAULTED
TOKEN_COMPUTED = Flag.TOKEN_COMPUTED
MATERIAL = Flag.MATERIAL

#: Exactly one of these says how an attribute may change after the object exists.
MUTABILITY = (SETTABLE, COPY_MODIFIABLE, SET_ON_CREATE_ONLY)
#: Restrictions that only make sense on a settable attribute.
SET_RESTRICTIONS = SO_ONLY_TRUE | ONLY_FALSE_TO_TRUE | ONLY_TRUE_TO_FALSE | CLEAR_ONLY

_NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class AttributeRule:
    attr: int
    flags: Flag = Flag.NONE
    default: Any = field(default=_NO_DEFAULT, compare=False)
    #: Value check beyond the codec's type check: False -> CKR_ATTRIBUTE_VALUE_INVALID.
    valid: Callable[[Any], bool] | None = field(default=None, compare=False)

    #: `flags` as a plain int: every object made tests a dozen rules, and enum.Flag's `&` costs a
    #: Python call where an int's costs nothing.
    bits: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", self.flags._value_)
        problems = rule_problems(self)
        if problems:
            raise ValueError(f"rule for attribute 0x{self.attr:x}: {'; '.join(problems)}")

    def has(self, flag: Flag) -> bool:
        """All of `flag`'s bits are set (composite flags such as TOKEN_COMPUTED need every bit)."""
        bits = flag._value_
        return bits != 0 and (self.bits & bits) == bits

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


def rule_problems(rule: AttributeRule) -> list[str]:
    """Contradictions within one rule (checked when the tables are built, and by the tests)."""
    problems = []
    computed = rule.has(TOKEN_COMPUTED)
    mutability = [flag for flag in MUTABILITY if rule.flags & flag]
    if computed and mutability:
        problems.append("token-computed attributes cannot be changed by the application")
    if not computed and len(mutability) != 1:
        problems.append("needs exactly one of SETTABLE, COPY_MODIFIABLE, SET_ON_CREATE_ONLY")
    if rule.flags & SET_RESTRICTIONS and not rule.flags & SETTABLE:
        problems.append("SO_ONLY_TRUE/ONLY_*/CLEAR_ONLY restrict SETTABLE attributes")
    if bool(rule.flags & DEFAULTED) != rule.has_default:
        problems.append("DEFAULTED and a default value go together")
    for required, forbidden in ((REQUIRED_ON_CREATE, FORBIDDEN_ON_CREATE),
                                (REQUIRED_ON_GENERATE, FORBIDDEN_ON_GENERATE),
                                (REQUIRED_ON_UNWRAP, FORBIDDEN_ON_UNWRAP)):
        if rule.flags & required and rule.flags & forbidden:
            problems.append(f"{required.name} and {forbidden.name} together")
    return problems


Table = Mapping[int, AttributeRule]


def table(*parts: tuple[AttributeRule, ...]) -> Table:
    """A class table from rule groups; a later group's rule for an attribute replaces an earlier one
    (a class narrowing the common default, e.g. public keys default to CKA_PRIVATE false)."""
    rules: dict[int, AttributeRule] = {}
    for part in parts:
        for rule in part:
            rules[int(rule.attr)] = rule
    return MappingProxyType(rules)


def _in_range(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: low <= value <= high


def _positive(value: Any) -> bool:
    return value > 0


R = AttributeRule
A = Attribute

# --- PKCS#11 3.0 §4.2 common object attributes, §4.4 storage objects -----------------------------
COMMON = (
    R(A.CLASS, REQUIRED_ON_CREATE | REQUIRED_ON_UNWRAP | SET_ON_CREATE_ONLY),
    # §4.2: CKA_UNIQUE_ID is assigned by the token; giving it is CKR_ATTRIBUTE_READ_ONLY.
    R(A.UNIQUE_ID, TOKEN_COMPUTED),
    # nShield's vendor attributes: computed from the key (`objects.vendor_attributes`), read-only.
    R(NCipherAttribute.NFKM_APPNAME, TOKEN_COMPUTED),
    R(NCipherAttribute.NFKM_ID, TOKEN_COMPUTED),
    R(NCipherAttribute.NFKM_HASH, TOKEN_COMPUTED),
)
STORAGE = COMMON + (
    R(A.TOKEN, COPY_MODIFIABLE | DEFAULTED, default=False),
    # §4.4: the default is token-specific. Private for keys and data (SoftHSM2), public for public
    # keys and certificates (SoftHSM2: "make public keys/certificates public"); see the class tables.
    R(A.PRIVATE, COPY_MODIFIABLE | DEFAULTED, default=True),
    R(A.MODIFIABLE, COPY_MODIFIABLE | DEFAULTED, default=True),
    R(A.LABEL, SETTABLE | DEFAULTED, default=""),
    R(A.COPYABLE, SETTABLE | ONLY_TRUE_TO_FALSE | DEFAULTED, default=True),
    R(A.DESTROYABLE, COPY_MODIFIABLE | DEFAULTED, default=True),
)
PUBLIC_BY_DEFAULT = (R(A.PRIVATE, COPY_MODIFIABLE | DEFAULTED, default=False),)

# --- §4.5 data objects ---------------------------------------------------------------------------
# No footnote 8 on any of them: fixed once the object exists (SoftHSM2 reads it the same way).
DATA = table(STORAGE, (
    R(A.APPLICATION, SET_ON_CREATE_ONLY | DEFAULTED, default=""),
    R(A.OBJECT_ID, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
    R(A.VALUE, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
))

# --- §4.6 certificates (X.509 public key certificates only) ---------------------------------------
CERTIFICATE_COMMON = STORAGE + PUBLIC_BY_DEFAULT + (
    R(A.CERTIFICATE_TYPE, REQUIRED_ON_CREATE | SET_ON_CREATE_ONLY),
    # Footnote 10. We also let the SO set it later (anyone may clear it): trust is the SO's call.
    R(A.TRUSTED, SETTABLE | SO_ONLY_TRUE | DEFAULTED, default=False),
    R(A.CERTIFICATE_CATEGORY, SET_ON_CREATE_ONLY | DEFAULTED, default=0, valid=_in_range(0, 3)),
    R(A.CHECK_VALUE, SET_ON_CREATE_ONLY),
    R(A.START_DATE, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
    R(A.END_DATE, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
    R(CKA_PUBLIC_KEY_INFO, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
)
X509_CERTIFICATE = table(CERTIFICATE_COMMON, (
    R(A.SUBJECT, REQUIRED_ON_CREATE | SET_ON_CREATE_ONLY),
    # §4.6.3: "Only the CKA_ID, CKA_ISSUER, and CKA_SERIAL_NUMBER attributes may be modified".
    R(A.ID, SETTABLE | DEFAULTED, default=b""),
    R(A.ISSUER, SETTABLE | DEFAULTED, default=b""),
    R(A.SERIAL_NUMBER, SETTABLE | DEFAULTED, default=b""),
    R(A.VALUE, REQUIRED_ON_CREATE | SET_ON_CREATE_ONLY),
    R(A.URL, SET_ON_CREATE_ONLY | DEFAULTED, default=""),
    R(A.HASH_OF_SUBJECT_PUBLIC_KEY, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
    R(A.HASH_OF_ISSUER_PUBLIC_KEY, SET_ON_CREATE_ONLY | DEFAULTED, default=b""),
    R(A.JAVA_MIDP_SECURITY_DOMAIN, SET_ON_CREATE_ONLY | DEFAULTED, default=0, valid=_in_range(0, 3)),
    R(CKA_NAME_HASH_ALGORITHM, SET_ON_CREATE_ONLY | DEFAULTED, default=int(Mechanism.SHA_1)),
))

# --- §4.7 keys -------------------------------------------------------------------------------------
KEY_COMMON = STORAGE + (
    R(A.KEY_TYPE, REQUIRED_ON_CREATE | REQUIRED_ON_UNWRAP | SET_ON_CREATE_ONLY),
    R(A.ID, SETTABLE | DEFAULTED, default=b""),
    R(A.START_DATE, SETTABLE | DEFAULTED, default=b""),
    R(A.END_DATE, SETTABLE | DEFAULTED, default=b""),
    R(A.DERIVE, SETTABLE | DEFAULTED, default=False),
    R(A.LOCAL, TOKEN_COMPUTED),
    R(A.KEY_GEN_MECHANISM, TOKEN_COMPUTED),
    # No footnote 8: fixed once made. Kept only when the template gives it, and then enforced as
    # read back: an empty array allows no mechanism. A key made without it has no such restriction
    # and no such attribute (C_GetAttributeValue: CKR_ATTRIBUTE_TYPE_INVALID), so what a reader sees
    # is exactly what the key allows.
    R(A.ALLOWED_MECHANISMS, SET_ON_CREATE_ONLY),
)
#: §4.9/4.10: the SPKI must agree with the key (checked against the material, `keyparts`). We do not
#: take it from generation, unwrapping or derivation templates (the token computes it), nor change it
#: later (footnote 8 allows a token to be stricter: §4.1.1 rule 3).
_PUBLIC_KEY_INFO = R(CKA_PUBLIC_KEY_INFO, SET_ON_CREATE_ONLY | FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP
                     | FORBIDDEN_ON_DERIVE)



def _usage(*attributes: int) -> tuple[AttributeRule, ...]:
    """Usage flags. Their defaults are token-specific (footnote 9): TRUE, as SoftHSM2, except
    CKA_DERIVE (spec: FALSE), which is not among them."""
    return tuple(R(attr, SETTABLE | DEFAULTED, default=True) for attr in attributes)


PUBLIC_KEY_COMMON = KEY_COMMON + PUBLIC_BY_DEFAULT + (
    R(A.SUBJECT, SETTABLE | DEFAULTED, default=b""),
    *_usage(A.ENCRYPT, A.VERIFY, A.VERIFY_RECOVER, A.WRAP),
    R(A.TRUSTED, SETTABLE | SO_ONLY_TRUE | DEFAULTED, default=False),
    R(A.WRAP_TEMPLATE, SET_ON_CREATE_ONLY | DEFAULTED, default=MappingProxyType({})),
    _PUBLIC_KEY_INFO,
)
_SENSITIVE_FLAG = R(A.SENSITIVE, SETTABLE | ONLY_FALSE_TO_TRUE | DEFAULTED, default=False)
# Token-specific default (footnote 9): FALSE, as SoftHSM2 and nShield (a key leaves the module only
# when its maker asked for that): a CKA_SENSITIVE key made without CKA_EXTRACTABLE cannot be wrapped
# out (the Tookan attacks wrap such keys under a key the attacker made).
_EXTRACTABLE_FLAG = R(A.EXTRACTABLE, SETTABLE | ONLY_TRUE_TO_FALSE | DEFAULTED, default=False)
_LIFECYCLE = (
    _SENSITIVE_FLAG,
    _EXTRACTABLE_FLAG,
    R(A.ALWAYS_SENSITIVE, TOKEN_COMPUTED),
    R(A.NEVER_EXTRACTABLE, TOKEN_COMPUTED),
    R(A.WRAP_WITH_TRUSTED, SETTABLE | ONLY_FALSE_TO_TRUE | DEFAULTED, default=False),
    R(A.UNWRAP_TEMPLATE, SET_ON_CREATE_ONLY | DEFAULTED, default=MappingProxyType({})),
    R(A.DERIVE_TEMPLATE, SET_ON_CREATE_ONLY | DEFAULTED, default=MappingProxyType({})),
)
PRIVATE_KEY_COMMON = KEY_COMMON + _LIFECYCLE + (
    R(A.SUBJECT, SETTABLE | DEFAULTED, default=b""),
    *_usage(A.DECRYPT, A.SIGN, A.SIGN_RECOVER, A.UNWRAP),
    R(A.ALWAYS_AUTHENTICATE, SET_ON_CREATE_ONLY | DEFAULTED, default=False),
    _PUBLIC_KEY_INFO,
)
SECRET_KEY_COMMON = KEY_COMMON + _LIFECYCLE + (
    *_usage(A.ENCRYPT, A.DECRYPT, A.SIGN, A.VERIFY, A.WRAP, A.UNWRAP),
    # §4.10: given values must match the computed one; empty suppresses it; C_SetAttributeValue may
    # only destroy it (set it empty).
    R(A.CHECK_VALUE, SETTABLE | CLEAR_ONLY),
    R(A.TRUSTED, SETTABLE | SO_ONLY_TRUE | DEFAULTED, default=False),
    R(A.WRAP_TEMPLATE, SET_ON_CREATE_ONLY | DEFAULTED, default=MappingProxyType({})),
)

# --- key types (mechanisms chapter) ----------------------------------------------------------------
RSA_PUBLIC = table(PUBLIC_KEY_COMMON, (
    R(A.MODULUS, REQUIRED_ON_CREATE | FORBIDDEN_ON_GENERATE | SET_ON_CREATE_ONLY),
    R(A.MODULUS_BITS, FORBIDDEN_ON_CREATE | REQUIRED_ON_GENERATE | SET_ON_CREATE_ONLY, valid=_positive),
    # Optional on generation: the mechanism defaults to 65537 (§2.1.5).
    R(A.PUBLIC_EXPONENT, REQUIRED_ON_CREATE | SET_ON_CREATE_ONLY),
))
RSA_PRIVATE = table(PRIVATE_KEY_COMMON, (
    R(A.MODULUS, MATERIAL | SET_ON_CREATE_ONLY),
    R(A.PUBLIC_EXPONENT, MATERIAL | SET_ON_CREATE_ONLY),
    R(A.PRIVATE_EXPONENT, MATERIAL | SENSITIVE | SET_ON_CREATE_ONLY),
    R(A.PRIME_1, FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE | SENSITIVE
      | SET_ON_CREATE_ONLY),
    R(A.PRIME_2, FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE | SENSITIVE
      | SET_ON_CREATE_ONLY),
    R(A.EXPONENT_1, FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE | SENSITIVE
      | SET_ON_CREATE_ONLY),
    R(A.EXPONENT_2, FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE | SENSITIVE
      | SET_ON_CREATE_ONLY),
    R(A.COEFFICIENT, FORBIDDEN_ON_GENERATE | FORBIDDEN_ON_UNWRAP | FORBIDDEN_ON_DERIVE | SENSITIVE
      | SET_ON_CREATE_ONLY),
    # Not in the spec's private key table: we add it (computed) because applications read the key
    # size from it on either half of the pair (python-pkcs11's `key_length`).
    R(A.MODULUS_BITS, TOKEN_COMPUTED),
))
# §2.3: EC (short Weierstrass), Edwards and Montgomery keys share one attribute layout.
EC_PUBLIC = table(PUBLIC_KEY_COMMON, (
    R(A.EC_PARAMS, REQUIRED_ON_CREATE | REQUIRED_ON_GENERATE | SET_ON_CREATE_ONLY),
    R(A.EC_POINT, REQUIRED_ON_CREATE | FORBIDDEN_ON_GENERATE | SET_ON_CREATE_ONLY),
))
EC_PRIVATE = table(PRIVATE_KEY_COMMON, (
    R(A.EC_PARAMS, MATERIAL | SET_ON_CREATE_ONLY),
    R(A.VALUE, MATERIAL | SENSITIVE | SET_ON_CREATE_ONLY),
))
# AES §2.8, generic secret §2.23, HMAC key types: CKA_VALUE 1,4,6,7 and CKA_VALUE_LEN 2,3. The length
# may be given to C_UnwrapKey and C_DeriveKey: the wrap mechanisms truncate to it (§2.14 ECB/CBC/KW).
SECRET_VALUE = table(SECRET_KEY_COMMON, (
    R(A.VALUE, MATERIAL | SENSITIVE | SET_ON_CREATE_ONLY),
    R(A.VALUE_LEN, FORBIDDEN_ON_CREATE | REQUIRED_ON_GENERATE | SET_ON_CREATE_ONLY, valid=_positive),
))
# DES §2.x and DES3 §2.10: fixed length, so no CKA_VALUE_LEN in the spec; we keep it (computed, 24) for readers and
# accept it where a mechanism may use it (the mechanism checks it is 24).
DES3_SECRET = table(SECRET_KEY_COMMON, (
    R(A.VALUE, MATERIAL | SENSITIVE | SET_ON_CREATE_ONLY),
    R(A.VALUE_LEN, FORBIDDEN_ON_CREATE | SET_ON_CREATE_ONLY, valid=_positive),
))
# PKCS#11 3.2 ML-DSA and ML-KEM keys (encodings in attributes/pqc.py): the parameter set is chosen
# in the public template of C_GenerateKeyPair and comes from the key otherwise; a public key's
# CKA_VALUE is the encoded public key, a private key's CKA_SEED its seed.
_PARAMETER_SET_PUBLIC = R(A.PARAMETER_SET, REQUIRED_ON_CREATE | REQUIRED_ON_GENERATE | SET_ON_CREATE_ONLY,
                          valid=_in_range(1, 3))
_PQC_PUBLIC = (_PARAMETER_SET_PUBLIC, R(A.VALUE, REQUIRED_ON_CREATE | FORBIDDEN_ON_GENERATE | SET_ON_CREATE_ONLY))
_PQC_PRIVATE = (
    R(A.PARAMETER_SET, MATERIAL | SET_ON_CREATE_ONLY, valid=_in_range(1, 3)),
    R(A.SEED, MATERIAL | SENSITIVE | SET_ON_CREATE_ONLY),
)
ML_DSA_PUBLIC = table(PUBLIC_KEY_COMMON, _PQC_PUBLIC)
ML_DSA_PRIVATE = table(PRIVATE_KEY_COMMON, _PQC_PRIVATE)
# 3.2 §4.8/4.9: CKA_ENCAPSULATE / CKA_DECAPSULATE are the KEM usage flags (TRUE by default, as the
# other usages here). CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE (the attributes every new
# shared-secret key gets, `kem`) are fixed once the key exists, as CKA_WRAP_TEMPLATE is (no footnote 8).
ML_KEM_PUBLIC = table(PUBLIC_KEY_COMMON, _PQC_PUBLIC, (
    R(A.ENCAPSULATE, SETTABLE | DEFAULTED, default=True),
    R(A.ENCAPSULATE_TEMPLATE, SET_ON_CREATE_ONLY | DEFAULTED, default=MappingProxyType({})),
))
ML_KEM_PRIVATE = table(PRIVATE_KEY_COMMON, _PQC_PRIVATE, (
    R(A.DECAPSULATE, SETTABLE | DEFAULTED, default=True),
    R(A.DECAPSULATE_TEMPLATE, SET_ON_CREATE_ONLY | DEFAULTED, default=MappingProxyType({})),
))
del R, A


@dataclass(frozen=True)
class ClassSpec:
    """An object class: the attribute naming its subtype (key or certificate type), and one table per
    subtype (key `None` when the class has no subtype)."""

    name: str
    subtype_attr: int | None
    tables: Mapping[int | None, Table]


HMAC_KEY_TYPES = (KeyType.SHA_1_HMAC, KeyType.SHA224_HMAC, KeyType.SHA256_HMAC, KeyType.SHA384_HMAC,
                  KeyType.SHA512_HMAC, KeyType.SHA3_224_HMAC, KeyType.SHA3_256_HMAC,
                  KeyType.SHA3_384_HMAC, KeyType.SHA3_512_HMAC, CKK_SHA512_224_HMAC, CKK_SHA512_256_HMAC,
                  CKK_MD5_HMAC)
CLASSES: Mapping[int, ClassSpec] = MappingProxyType({
    ObjectClass.DATA: ClassSpec("data", None, {None: DATA}),
    ObjectClass.CERTIFICATE: ClassSpec("certificate", Attribute.CERTIFICATE_TYPE,
                                       {CertificateType.X_509: X509_CERTIFICATE}),
    ObjectClass.PUBLIC_KEY: ClassSpec("public key", Attribute.KEY_TYPE, {
        KeyType.RSA: RSA_PUBLIC, KeyType.EC: EC_PUBLIC, KeyType.EC_EDWARDS: EC_PUBLIC,
        CKK_EC_MONTGOMERY: EC_PUBLIC, KeyType.ML_DSA: ML_DSA_PUBLIC, KeyType.ML_KEM: ML_KEM_PUBLIC,
    }),
    ObjectClass.PRIVATE_KEY: ClassSpec("private key", Attribute.KEY_TYPE, {
        KeyType.RSA: RSA_PRIVATE, KeyType.EC: EC_PRIVATE, KeyType.EC_EDWARDS: EC_PRIVATE,
        CKK_EC_MONTGOMERY: EC_PRIVATE, KeyType.ML_DSA: ML_DSA_PRIVATE, KeyType.ML_KEM: ML_KEM_PRIVATE,
    }),
    ObjectClass.SECRET_KEY: ClassSpec("secret key", Attribute.KEY_TYPE, {
        KeyType.AES: SECRET_VALUE, KeyType.DES3: DES3_SECRET, KeyType.GENERIC_SECRET: SECRET_VALUE,
        CKK_DES: DES3_SECRET,  # the same attributes: fixed length, CKA_VALUE_LEN computed
        **{key_type: SECRET_VALUE for key_type in HMAC_KEY_TYPES},
        CKK_AES_XTS: SECRET_VALUE, CKK_HKDF: SECRET_VALUE,  # PKCS#11 3.0 §2.14.x, §2.43
    }),
})
KEY_CLASSES = frozenset({ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY})
_EMPTY: Table = MappingProxyType({})


def table_for(object_class: int, subtype: int | None = None) -> Table | None:
    """The table for a class and subtype, None when this token does not make such objects."""
    spec = CLASSES.get(object_class)
    if spec is None:
        return None
    return spec.tables.get(subtype if spec.subtype_attr is not None else None)


def rules_for(attrs: Mapping[int, Any]) -> Table:
    """The table of an existing object (empty for a class we never make)."""
    object_class = attrs.get(Attribute.CLASS)
    spec = CLASSES.get(object_class) if object_class is not None else None
    if spec is None:
        return _EMPTY
    subtype = attrs.get(spec.subtype_attr) if spec.subtype_attr is not None else None
    return spec.tables.get(subtype, _EMPTY)


def all_tables() -> list[tuple[int, int | None, Table]]:
    return [(cls, sub, tbl) for cls, spec in CLASSES.items() for sub, tbl in spec.tables.items()]
