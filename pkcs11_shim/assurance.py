"""nShield's Security Assurance Mechanism (SAM): key creations cknfast refuses unless overridden.

cknfast refuses, by default, to make keys whose security it cannot vouch for long-term: keys whose
value can leave the module in the clear stored as token objects, keys imported in plaintext, keys
unwrapped with a mechanism without integrity, derivations that let a caller steer key bits, and
short keys. `CKNFAST_OVERRIDE_SECURITY_ASSURANCES` lists, separated by `;` (or `,`), the checks to
waive: `all`, `none`, a check's token below, `shortkey_<alg>=<bits>` to lower one minimum, and
`silent` (no log line for a waived check). The tokens are nShield's names; which attribute
combination each one covers is our reading of them (the vendor's exact rules are not public in the
material we had: see docs/security-world.md).

The SAM applies in worlds made by `new-world` (an administered estate, as on a real nShield);
the world `Module.open` makes on first use is a developer's soft token and skips it unless
SOFTSHIELD_SECURITY_ASSURANCES=1 asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import library
from .attributes.templates import Origin
from .constants import CKR, Attribute, KeyType, Mechanism, ObjectClass
from .errors import PKCS11Error

log = logging.getLogger("softshield")

KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY)
#: Unwrap mechanisms without integrity: a wrong or edited ciphertext still unwraps to some key.
NO_INTEGRITY_UNWRAP = frozenset({
    Mechanism.AES_ECB, Mechanism.AES_CBC, Mechanism.AES_CBC_PAD, Mechanism.DES3_ECB, Mechanism.DES3_CBC,
    Mechanism.DES3_CBC_PAD, Mechanism.RSA_PKCS, Mechanism.RSA_X_509,
})
#: Derivations whose result the caller can steer bit by bit (PKCS#11 §2.40 "miscellaneous").
CONCATENATE = frozenset({Mechanism.CONCATENATE_BASE_AND_KEY, Mechanism.CONCATENATE_BASE_AND_DATA,
                         Mechanism.CONCATENATE_DATA_AND_BASE})
XOR = frozenset({Mechanism.XOR_BASE_AND_DATA})
EXTRACT = frozenset({Mechanism.EXTRACT_KEY_FROM_KEY})
#: Minimum key sizes in bits, per `shortkey_<alg>` name; the SP800-131A suite raises RSA/DSA/DH.
MIN_BITS = {"rsa": 1024, "dsa": 1024, "dh": 1024, "aes": 128, "hmac": 112, "ec": 224}
SP800_131A_MIN_BITS = {"rsa": 2048, "dsa": 2048, "dh": 2048}
_ALG = {KeyType.RSA: "rsa", KeyType.DSA: "dsa", KeyType.DH: "dh", KeyType.AES: "aes",
        KeyType.GENERIC_SECRET: "hmac", KeyType.EC: "ec"}


@dataclass(frozen=True)
class NewKey:
    """What a check sees of a key about to be made."""

    attrs: dict[int, Any]
    origin: Origin
    mechanism: int | None
    bits: int | None

    @property
    def is_key(self) -> bool:
        return self.attrs.get(Attribute.CLASS) in KEY_CLASSES

    @property
    def token_key(self) -> bool:
        return self.is_key and bool(self.attrs.get(Attribute.TOKEN))

    @property
    def readable(self) -> bool:
        return not self.attrs.get(Attribute.SENSITIVE, False) and bool(self.attrs.get(Attribute.EXTRACTABLE, True))


@dataclass(frozen=True)
class Check:
    token: str  # the CKNFAST_OVERRIDE_SECURITY_ASSURANCES word that waives it
    code: int
    applies: Callable[[NewKey], bool]
    why: str


CHECKS: tuple[Check, ...] = (
    Check("tokenkeys", CKR.TEMPLATE_INCONSISTENT, lambda k: k.token_key and k.readable,
          "a token key whose value can be read in the clear (CKA_SENSITIVE false, CKA_EXTRACTABLE true)"),
    Check("import", CKR.TEMPLATE_INCONSISTENT, lambda k: k.token_key and k.origin is Origin.CREATE,
          "a token key imported in plaintext (C_CreateObject): the module never had it alone"),
    Check("unwrap_mech", CKR.MECHANISM_INVALID,
          lambda k: k.token_key and k.origin is Origin.UNWRAP and k.mechanism in NO_INTEGRITY_UNWRAP,
          "a token key unwrapped with a mechanism without integrity protection"),
    Check("derive_concatenate", CKR.MECHANISM_INVALID,
          lambda k: k.origin is Origin.DERIVE and k.mechanism in CONCATENATE,
          "a key derived by concatenation (its bits are partly the caller's)"),
    Check("derive_xor", CKR.MECHANISM_INVALID, lambda k: k.origin is Origin.DERIVE and k.mechanism in XOR,
          "a key derived by XOR with caller data"),
    Check("derive_extract", CKR.MECHANISM_INVALID, lambda k: k.origin is Origin.DERIVE and k.mechanism in EXTRACT,
          "a key extracted from bits of another key"),
    Check("explicitness", CKR.TEMPLATE_INCONSISTENT,
          lambda k: k.token_key and bool(k.attrs.get(Attribute.DERIVE)) and any(
              k.attrs.get(a) for a in (Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.WRAP)),
          "a token key allowed both to derive and to encrypt/sign/wrap (one key, one purpose)"),
)
KNOWN = frozenset({c.token for c in CHECKS} | {"all", "none", "silent", "longterm"})


@dataclass(frozen=True)
class Overrides:
    waived: frozenset[str]
    min_bits: dict[str, int]
    silent: bool

    @classmethod
    def parse(cls, text: str | None, *, sp800_131a: bool = False) -> Overrides:
        words = [w.strip().lower() for w in (text or "").replace(",", ";").split(";") if w.strip()]
        mins = dict(MIN_BITS, **(SP800_131A_MIN_BITS if sp800_131a else {}))
        waived: set[str] = set()
        for word in words:
            name, _, value = word.partition("=")
            if name == "all":
                waived |= {c.token for c in CHECKS}
                mins = {alg: 0 for alg in mins}
            elif name.startswith("shortkey_") and name[9:] in mins:
                mins[name[9:]] = int(value) if value.isdigit() else 0
            elif name in KNOWN:
                waived.add(name)
            else:
                log.warning("CKNFAST_OVERRIDE_SECURITY_ASSURANCES: unknown word %r ignored", word)
        return cls(frozenset(waived), mins, "silent" in waived)


def check(overrides: Overrides, attrs: dict[int, Any], origin: Origin, mechanism: int | None,
          bits: int | None) -> None:
    """Raise PKCS11Error with the refusal's CKR unless every applying check is waived."""
    key = NewKey(attrs, origin, mechanism, bits)
    for rule in CHECKS:
        if not rule.applies(key):
            continue
        if rule.token in overrides.waived:
            if not overrides.silent:
                log.warning("security assurance waived (%s): %s", rule.token, rule.why)
            continue
        text = f"security assurance: refused {rule.why}; CKNFAST_OVERRIDE_SECURITY_ASSURANCES={rule.token} permits it"
        log.info("%s", text)  # an application sees only the CKR: the log says which check and why
        raise PKCS11Error(rule.code, text)
    alg = _ALG.get(attrs.get(Attribute.KEY_TYPE))
    if key.is_key and alg and bits is not None and bits < overrides.min_bits.get(alg, 0):
        text = (f"security assurance: a {bits}-bit {alg.upper()} key is below {overrides.min_bits[alg]} bits; "
                f"CKNFAST_OVERRIDE_SECURITY_ASSURANCES=shortkey_{alg}={bits} permits it")
        log.info("%s", text)
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, text)


def key_bits(material: Any) -> int | None:
    """Size of the key in bits, from its material (None when it has no size that matters here)."""
    value = getattr(material, "value", None)
    if isinstance(value, (bytes, bytearray)):
        return len(value) * 8
    key = getattr(material, "key", None)
    size = getattr(key, "key_size", None)
    if size is None and hasattr(key, "curve"):
        size = key.curve.key_size
    return size


def overrides_for(library: Any) -> Overrides | None:
    """The library's SAM settings (read once, at C_Initialize as cknfast does); None: not enforced."""
    cached = getattr(library, "_assurance", False)
    if cached is not False:
        return cached
    config, module = library.config, library.module
    enforced = getattr(module, "administered", False) or config.flag("SOFTSHIELD_SECURITY_ASSURANCES")
    result = None
    if enforced:
        result = Overrides.parse(config.get("CKNFAST_OVERRIDE_SECURITY_ASSURANCES"),
                                 sp800_131a="SP800131A" in module.world.cipher_suite)
    library._assurance = result
    return result


def check_new(session: Any, attrs: dict[int, Any], material: Any, origin: Origin | None,
              mechanism: int | None) -> None:
    """The SAM check for an object about to be made in `session` (no-op when not enforced)."""
    if origin is None:
        return
    overrides = overrides_for(library.state())
    if overrides is not None:
        check(overrides, attrs, origin, mechanism, key_bits(material))
