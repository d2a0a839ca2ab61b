"""Key encapsulation (PKCS#11 3.2 §5.18: C_EncapsulateKey, C_DecapsulateKey).

Both make a secret-key object from the KEM's shared secret under the caller's template, as
C_DeriveKey does from a derived secret: the class defaults to CKO_SECRET_KEY and the key type to
CKK_GENERIC_SECRET; the value is the leading CKA_VALUE_LEN bytes of the secret (or the key type's
fixed length), so a 32-byte ML-KEM secret gives AES-128/192/256 or generic keys of up to 32 bytes.
The new key has CKA_LOCAL, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE FALSE on both sides (the
function text lists all three), and CKA_EXTRACTABLE TRUE unless the template says otherwise.

The KEM key's CKA_ENCAPSULATE_TEMPLATE / CKA_DECAPSULATE_TEMPLATE is added to the caller's template
(as CKA_UNWRAP_TEMPLATE is for C_UnwrapKey); an attribute the two give differently is
CKR_KEY_HANDLE_INVALID when encapsulating and CKR_TEMPLATE_INCONSISTENT when decapsulating, the
codes the function texts name. (3.2 lists the two attributes in pkcs11t.h only; the wording is the
OASIS TC's 3.3 text, which fills that gap.)

The ciphertext follows the two-call convention (§5.2): a NULL or short buffer gets the length and
CKR_OK / CKR_BUFFER_TOO_SMALL, and no key is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.acl import Action

from . import mechanism_policy
from .attributes import codecs, keyparts, templates
from .attributes.templates import Origin
from .constants import CKR, Attribute, KeyType, MechanismFlag, ObjectClass
from .errors import PKCS11Error
from .management import add_object, with_material_attributes
from .mechanisms import keybytes
from .mechanisms.registry import REGISTRY, MechanismSpec
from .operations import check_key_for
from .sessions import Session


@dataclass(frozen=True)
class Direction:
    """What differs between encapsulating and decapsulating."""

    flag: int         # CK_MECHANISM_INFO flag the row must have
    usage: int        # the key's capability attribute (FALSE -> CKR_KEY_FUNCTION_NOT_PERMITTED)
    key_class: int
    template: int     # the key's attribute whose attributes every new key gets
    conflict: int     # the code for a caller template that contradicts it
    action: Action    # the module's ACL action for the key


ENCAPSULATE = Direction(MechanismFlag.ENCAPSULATE, Attribute.ENCAPSULATE, ObjectClass.PUBLIC_KEY,
                        Attribute.ENCAPSULATE_TEMPLATE, CKR.KEY_HANDLE_INVALID, Action.ENCRYPT)
DECAPSULATE = Direction(MechanismFlag.DECAPSULATE, Attribute.DECAPSULATE, ObjectClass.PRIVATE_KEY,
                        Attribute.DECAPSULATE_TEMPLATE, CKR.TEMPLATE_INCONSISTENT, Action.DECRYPT)


def _prepare(session: Session, direction: Direction, mechanism: int, param: Any, key_handle: int,
             raw: list) -> tuple[MechanismSpec, Any, dict[int, Any]]:
    """(row, KEM key, the new secret key's attributes): every check before the KEM runs."""
    spec = REGISTRY.get(mechanism)
    mechanism_policy.require_allowed(session.slot_id, mechanism)
    if not spec.flags & direction.flag:
        raise PKCS11Error(CKR.MECHANISM_INVALID, f"{spec.name} does not do this")
    spec.validate(param)
    key = session.key(key_handle)
    check_key_for(session, spec, key, direction.usage, (direction.key_class,))
    template = codecs.decode_template(raw)
    template.setdefault(Attribute.CLASS, ObjectClass.SECRET_KEY)
    template.setdefault(Attribute.KEY_TYPE, KeyType.GENERIC_SECRET)
    if template[Attribute.CLASS] != ObjectClass.SECRET_KEY:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "a KEM makes secret keys")
    template = templates.with_key_template(template, key.attrs.get(direction.template), direction.conflict,
                                           f"attribute 0x{direction.template:x} of the KEM key")
    attrs = templates.new_object(template, Origin.DERIVE, mechanism=mechanism, is_so=session.is_so)
    session.require_rw_for(attrs)
    return spec, key, attrs


def _store(session: Session, attrs: dict[int, Any], secret: bytes, mechanism: int) -> int:
    material = keybytes.derived(attrs[Attribute.KEY_TYPE], secret, attrs.get(Attribute.VALUE_LEN))
    keyparts.check_material_attributes(attrs, material)
    return add_object(session, with_material_attributes(attrs, material), material, origin=Origin.DERIVE,
                      mechanism=mechanism).handle


def encapsulate_key(session: Session, mechanism: int, param: Any, public_handle: int, raw: list,
                    capacity: int | None) -> tuple[bytes | int, int | None]:
    """(ciphertext, new key handle), or (ciphertext length, None) when the caller's buffer cannot
    take the ciphertext (NULL or too small): then nothing is encapsulated."""
    spec, key, attrs = _prepare(session, ENCAPSULATE, mechanism, param, public_handle, raw)
    with session.lock:
        material = session.token.objects.module.use(key.key, ENCAPSULATE.action)
        length = spec.encapsulated_len(material)
        if capacity is None or capacity < length:
            return length, None
        ciphertext, secret = spec.encapsulate(material, param)
        return ciphertext, _store(session, attrs, secret, mechanism)


def decapsulate_key(session: Session, mechanism: int, param: Any, private_handle: int, raw: list,
                    ciphertext: bytes) -> int:
    spec, key, attrs = _prepare(session, DECAPSULATE, mechanism, param, private_handle, raw)
    with session.lock:
        material = session.token.objects.module.use(key.key, DECAPSULATE.action)
        secret = spec.decapsulate(material, param, ciphertext)
        return _store(session, attrs, secret, mechanism)
