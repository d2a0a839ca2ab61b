"""PKCS#11 attributes mapped onto the module's ACLs.

The ACL inside the emulator is the check that counts; PKCS#11 attributes are the application's view
of it. A key's ACL is built from its attributes when the key comes into being, and later attribute
changes may only reduce it, as on nShield, where an ACL can be reduced but never widened.
"""

from __future__ import annotations

from typing import Any

from emulator.acl import Acl, Action, PermissionGroup

from .constants import Attribute, CKR, ObjectClass
from .errors import PKCS11Error

#: Usage attribute -> the module action it needs.
USAGE_ACTIONS: tuple[tuple[int, Action], ...] = (
    (Attribute.ENCRYPT, Action.ENCRYPT),
    (Attribute.DECRYPT, Action.DECRYPT),
    (Attribute.SIGN, Action.SIGN),
    (Attribute.SIGN_RECOVER, Action.SIGN),
    (Attribute.VERIFY, Action.VERIFY),
    (Attribute.VERIFY_RECOVER, Action.VERIFY),
    (Attribute.WRAP, Action.WRAP),
    (Attribute.UNWRAP, Action.UNWRAP),
    (Attribute.DERIVE, Action.DERIVE),
    # PKCS#11 3.2 KEMs: encapsulation is a public-key encryption of a fresh secret, decapsulation
    # its decryption (the module has no separate permission for them).
    (Attribute.ENCAPSULATE, Action.ENCRYPT),
    (Attribute.DECAPSULATE, Action.DECRYPT),
)

#: Lifecycle attribute -> the action it grants while TRUE.
LIFECYCLE_ACTIONS: tuple[tuple[int, Action], ...] = (
    (Attribute.EXTRACTABLE, Action.EXPORT_AS_BLOB),
    (Attribute.COPYABLE, Action.DUPLICATE),
    (Attribute.DESTROYABLE, Action.DESTROY),
    (Attribute.MODIFIABLE, Action.SET_APPDATA),
)

# C_DigestKey is allowed on any secret key by PKCS#11 (§5.12.4); the ACL still has to say so.
ALWAYS = frozenset({Action.REDUCE_ACL, Action.GET_APPDATA, Action.DIGEST})
KEY_CLASSES = (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY)


def actions_for(attrs: dict[int, Any]) -> frozenset[Action]:
    granted = set(ALWAYS)
    for attr, action in USAGE_ACTIONS + LIFECYCLE_ACTIONS:
        if attrs.get(attr, attr in (Attribute.COPYABLE, Attribute.DESTROYABLE, Attribute.MODIFIABLE)):
            granted.add(action)
    cls = attrs.get(Attribute.CLASS)
    plain_readable = cls not in KEY_CLASSES or cls == ObjectClass.PUBLIC_KEY or (
        not attrs.get(Attribute.SENSITIVE, False) and attrs.get(Attribute.EXTRACTABLE, True)
    )
    if plain_readable:
        granted.add(Action.EXPORT_PLAIN)
    return frozenset(granted)


def acl_for(attrs: dict[int, Any]) -> Acl:
    return Acl((PermissionGroup(actions_for(attrs)),))


def reduce_for(acl: Acl, new_attrs: dict[int, Any]) -> Acl | None:
    """The reduced ACL after an attribute change, None when unchanged; widening is refused."""
    wanted = actions_for(new_attrs)
    current = acl.actions()
    widened = {a for a in wanted - current if a not in (Action.SET_APPDATA,)}
    if widened:
        names = ", ".join(sorted(a.value for a in widened))
        raise PKCS11Error(CKR.ATTRIBUTE_READ_ONLY, f"the key's ACL does not permit {names}")
    if wanted >= current:
        return None
    return acl.reduce(wanted)
