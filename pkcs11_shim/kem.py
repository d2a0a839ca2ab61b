"""Key encapsulation (PKCS#11 3.2 §5.18: C_EncapsulateKey, C_DecapsulateKey).

Both make a secret-key object from the KEM's shared secret under the caller's template, as
C_DeriveKey does from a derived secret: the class defaults to CKO_SECRET_KEY and the key type to
CKK_GENERIC_SECRET; the value is the leading CKA_VALUE_LEN bytes of the secret (or the key type's
fixed length), so a 32-byte ML-KEM secret gives AES-128/192/256 or generic keys of up to 32 bytes.
The object's origin is that of a derived key (CKA_LOCAL FALSE; CKA_ALWAYS_SENSITIVE and
CKA_NEVER_EXTRACTABLE follow the decapsulating key, and are FALSE on the encapsulating side, where
the secret came from a public-key operation).

The ciphertext follows the two-call convention (§5.2): a NULL or short buffer gets the length and
CKR_OK / CKR_BUFFER_TOO_SMALL, and no key is made.
"""

from __future__ import annotations

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


def _spec(session: Session, mechanism: int, flag: int, param: Any) -> MechanismSpec:
    spec = REGISTRY.get(mechanism)
    mechanism_policy.require_allowed(session.slot_id, mechanism)
    if not spec.flags & flag:
        raise PKCS11Error(CKR.MECHANISM_INVALID, f"{spec.name} does not do this")
    spec.validate(param)
    return spec


def _secret_attributes(session: Session, raw: list, mechanism: int, base: dict | None) -> dict[int, Any]:
    template = codecs.decode_template(raw)
    template.setdefault(Attribute.CLASS, ObjectClass.SECRET_KEY)
    template.setdefault(Attribute.KEY_TYPE, KeyType.GENERIC_SECRET)
    if template[Attribute.CLASS] != ObjectClass.SECRET_KEY:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "a KEM makes secret keys")
    attrs = templates.new_object(template, Origin.DERIVE, mechanism=mechanism, is_so=session.is_so, base=base)
    session.require_rw_for(attrs)
    return attrs


def _store(session: Session, attrs: dict[int, Any], secret: bytes, mechanism: int) -> int:
    material = keybytes.derived(attrs[Attribute.KEY_TYPE], secret, attrs.get(Attribute.VALUE_LEN))
    keyparts.check_material_attributes(attrs, material)
    return add_object(session, with_material_attributes(attrs, material), material, origin=Origin.DERIVE,
                      mechanism=mechanism).handle


def encapsulate_key(session: Session, mechanism: int, param: Any, public_handle: int, raw: list,
                    capacity: int | None) -> tuple[bytes | int, int | None]:
    """(ciphertext, new key handle), or (ciphertext length, None) when the caller's buffer cannot
    take the ciphertext (NULL or too small): then nothing is encapsulated."""
    spec = _spec(session, mechanism, MechanismFlag.ENCAPSULATE, param)
    key = session.key(public_handle)
    check_key_for(session, spec, key, Attribute.ENCAPSULATE, (ObjectClass.PUBLIC_KEY,))
    attrs = _secret_attributes(session, raw, mechanism, None)
    with session.lock:
        material = session.token.objects.module.use(key.key, Action.ENCRYPT)
        length = spec.encapsulated_len(material)
        if capacity is None or capacity < length:
            return length, None
        ciphertext, secret = spec.encapsulate(material, param)
        return ciphertext, _store(session, attrs, secret, mechanism)


def decapsulate_key(session: Session, mechanism: int, param: Any, private_handle: int, raw: list,
                    ciphertext: bytes) -> int:
    spec = _spec(session, mechanism, MechanismFlag.DECAPSULATE, param)
    key = session.key(private_handle)
    check_key_for(session, spec, key, Attribute.DECAPSULATE, (ObjectClass.PRIVATE_KEY,))
    attrs = _secret_attributes(session, raw, mechanism, key.attrs)
    with session.lock:
        material = session.token.objects.module.use(key.key, Action.DECRYPT)
        secret = spec.decapsulate(material, param, ciphertext)
        return _store(session, attrs, secret, mechanism)
