"""Object management (PKCS#11 3.0 §5.7): create, copy, destroy, attributes, search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.acl import Acl, Action
from emulator.keys import Key

from . import assurance, policy
from .attributes import codecs, templates
from .attributes.templates import Origin
from .constants import CKA_SOFTSHIELD_WRAP_KEY_HASH, CKR, Attribute, ObjectClass
from .errors import PKCS11Error
from .nfkm_naming import take_naming
from .objects import VENDOR, P11Object
from .sessions import Session


def _keyparts() -> Any:
    """`attributes.keyparts`, imported on first use: a process that only logs in, finds and reads
    objects never needs it, nor the key-component code and `cryptography` modules it pulls in
    (the first C_FindObjectsInit of a fresh process imports this module)."""
    global _keyparts_module
    if _keyparts_module is None:
        from .attributes import keyparts

        _keyparts_module = keyparts
    return _keyparts_module


_keyparts_module: Any = None


def _protection(token_hash: str | None, private: bool) -> str:
    """A token's private objects are sealed under the token's key, everything else under the module's."""
    return "token" if token_hash and private else "module"


def protection_for(session: Session, attrs: dict[int, Any]) -> tuple[str, str | None]:
    """(protection, owner token) of a new object."""
    token_hash = session.token.token_hash
    return _protection(token_hash, bool(attrs.get(Attribute.PRIVATE))), token_hash


def add_object(session: Session, attrs: dict[int, Any], material: Any, acl: Any = None,
               naming: tuple[str, str] | None = None, origin: Origin | None = None,
               mechanism: int | None = None,
               deferred: Callable[[], dict[int, Any]] | None = None) -> P11Object:
    """Make the emulator key for a new object, persist it when it is a token object; `naming`
    (app, ident) from CKA_NFKM_APPNAME/CKA_NFKM_ID names its file key_<app>_<ident>; `origin`
    (and the mechanism) let the security assurance checks judge a new key (copies pass None);
    `deferred` gives the keyparts.DEFERRABLE attributes `attrs` lacks, computed when first read
    for a session object (a token object is written with all of them at once)."""
    session.require_rw_for(attrs)
    if not attrs.get(Attribute.TOKEN):  # a session object has no file, so no naming
        return add_session_key(session, attrs, material, acl if acl is not None else policy.acl_for(attrs),
                               bool(attrs.get(Attribute.PRIVATE)), origin, mechanism, deferred)
    assurance.check_new(session, attrs, material, origin, mechanism)
    protection, owner = protection_for(session, attrs)
    module = session.token.objects.module
    # Every field here is the shim's own (protection and owner from the session's token, whose hash
    # the token list checked): the validating constructor cost ~10 us of every unwrap.
    key = Key.trusted(material, acl if acl is not None else policy.acl_for(attrs), app="pkcs11", ident="",
                      protection=protection, token=owner, appdata=b"")
    store = session.token.objects
    if deferred is not None:
        for attr, value in deferred().items():
            attrs.setdefault(attr, value)
    key.ident = module.new_ident(owner)
    if naming is not None:
        if module.key_exists(*naming):
            raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, f"key_{naming[0]}_{naming[1]} already exists")
        key.app, key.ident = naming
    obj = store.add(attrs, key, None)
    try:
        store.persist(obj, session.token.auth)
    except BaseException:
        store.remove(obj)
        raise
    return obj


def add_session_key(session: Session, attrs: dict[int, Any], material: Any, acl: Acl, private: bool,
                    origin: Origin | None, mechanism: int | None,
                    deferred: Callable[[], dict[int, Any]] | None) -> P11Object:
    """`add_object` for a session object (CKA_TOKEN false), whose caller already ran
    `session.require_rw_for(attrs)` and knows its ACL and CKA_PRIVATE: C_UnwrapKey decides them once
    per template. The same checks and the same object as `add_object` makes."""
    assurance.check_new(session, attrs, material, origin, mechanism)
    owner = session.token.token_hash
    key = Key.trusted(material, acl, app="pkcs11", ident="", protection=_protection(owner, private), token=owner,
                      appdata=b"")
    if deferred is not None and _keyparts().DEFERRABLE <= attrs.keys():
        for attr, value in deferred().items():  # the template gave them all: nothing left to defer
            attrs.setdefault(attr, value)
        deferred = None
    return session.token.objects.add(attrs, key, session.handle,
                                     None if deferred is None else (_keyparts().DEFERRABLE, deferred))


def with_material_attributes(attrs: dict[int, Any], material: Any) -> dict[int, Any]:
    """Stored attributes: secret components removed, derivable public ones filled in."""
    stored = _keyparts().strip_material(attrs)
    if material is not None:
        for attr, value in _keyparts().public_attributes(material).items():
            stored.setdefault(attr, value)
    return stored


def create_object(session: Session, raw: list) -> int:
    template = codecs.decode_template(raw)
    attrs = templates.new_object(template, Origin.CREATE, is_so=session.is_so)
    session.require_rw_for(attrs)
    material = _keyparts().material_from_attributes(attrs)
    return add_object(session, with_material_attributes(attrs, material), material, origin=Origin.CREATE).handle


def copy_object(session: Session, handle: int, raw: list) -> int:
    obj = session.object(handle)
    if not obj.attrs.get(Attribute.COPYABLE, True):
        raise PKCS11Error(CKR.ACTION_PROHIBITED)
    limit = [bytes(value) for attr, value in raw if attr == CKA_SOFTSHIELD_WRAP_KEY_HASH]
    changes = codecs.decode_template([(attr, value) for attr, value in raw if attr != CKA_SOFTSHIELD_WRAP_KEY_HASH])
    naming = take_naming(changes)
    if limit:
        return _transfer_copy(session, obj, changes, limit[0], naming)
    new_attrs = templates.check_modify(obj.attrs, changes, is_so=session.is_so, copying=True)
    session.require_rw_for(new_attrs)
    module = session.token.objects.module
    if obj.material is not None:
        module.use(obj.key, Action.DUPLICATE)
    acl = policy.reduce_for(obj.key.acl, new_attrs) or obj.key.acl
    stored = {k: v for k, v in new_attrs.items() if k not in VENDOR}
    return add_object(session, stored, obj.material, acl, naming=naming).handle


def _transfer_copy(session: Session, obj: P11Object, changes: dict[int, Any], limit: bytes,
                   naming: tuple[str, str] | None) -> int:
    """nShield's ACS-authorised ACL rewrite (KeyTransferRemote -ModifyAcls) as PKCS#11: the SO
    (logged in with the ACS quorum) copies a key so that the copy can do nothing but be wrapped
    (CKA_WRAP_WITH_TRUSTED) by the one trusted wrapping key whose hash the template names. The ACS
    is what lets the copy become extractable under that key, which no user's attribute change may."""
    if not session.is_so:
        raise PKCS11Error(CKR.USER_NOT_LOGGED_IN, "a transfer copy needs the SO login (the ACS quorum)")
    if obj.material is None or obj.attrs.get(Attribute.CLASS) not in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "only secret and private keys are transferred")
    if changes.get(Attribute.WRAP_WITH_TRUSTED) is not True:
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "a transfer copy needs CKA_WRAP_WITH_TRUSTED true")
    wanted = limit.hex()
    if not any(o.attrs.get(Attribute.TRUSTED) and o.attrs.get(Attribute.WRAP) and o.key.key_hash == wanted
               for o in session.token.objects.all()):
        raise PKCS11Error(CKR.WRAPPING_KEY_HANDLE_INVALID, f"no trusted wrapping key with hash {wanted} on this token")
    changes.pop(Attribute.EXTRACTABLE, None)
    new_attrs = templates.check_modify(obj.attrs, changes, is_so=True, copying=True)
    new_attrs[Attribute.EXTRACTABLE] = True
    new_attrs[Attribute.NEVER_EXTRACTABLE] = False
    session.require_rw_for(new_attrs)
    session.token.objects.module.use(obj.key, Action.DUPLICATE)
    acl = Acl.allowing({Action.EXPORT_AS_BLOB}, wrap_key_hash=wanted)
    stored = {k: v for k, v in new_attrs.items() if k not in VENDOR}
    return add_object(session, stored, obj.material, acl, naming=naming).handle


_DESTROYABLE = Attribute.DESTROYABLE  # bound once: an Enum member read costs ~0.16 us in CPython 3.11


def destroy_object(session: Session, handle: int) -> None:
    obj = session.object(handle)
    if not obj.peek(_DESTROYABLE, True):
        raise PKCS11Error(CKR.ACTION_PROHIBITED)
    if obj.is_token and not session.rw:
        raise PKCS11Error(CKR.SESSION_READ_ONLY)
    session.token.objects.delete(obj)


def readable_attributes(obj: P11Object) -> tuple[dict[int, Any], frozenset[int]]:
    """(stored attributes C_GetAttributeValue answers as they are, the names it must ask
    `attribute_value` for): the stored dict holds no secret component (`with_material_attributes`),
    so a name in it is its value; deferred names and secret components take the full path.
    clients read ~10 attributes after each object they make (python-pkcs11's make_object)."""
    stored, deferred = obj.stored_view()
    if not deferred:
        return stored, SECRET_COMPONENTS
    full = _FULL_PATHS.get(deferred)
    if full is None:  # one set per deferred set (there are few): its hash is computed once
        full = _FULL_PATHS[deferred] = SECRET_COMPONENTS | deferred
    return stored, full


_FULL_PATHS: dict[frozenset[int], frozenset[int]] = {}


def attribute_value(session: Session, obj: P11Object, attr: int) -> Any:
    """One attribute's value for C_GetAttributeValue, or the per-attribute error (§5.7.5)."""
    present, value = obj.value(attr)  # a deferred CKA_CHECK_VALUE is computed only when asked for
    if present:
        return value
    if obj.material is not None and attr in SECRET_COMPONENTS:
        if not templates.readable(obj.attrs, attr):
            raise PKCS11Error(CKR.ATTRIBUTE_SENSITIVE)
        material = session.token.objects.module.use(obj.key, Action.EXPORT_PLAIN)
        parts = _keyparts().secret_attributes(material)
        if attr in parts:
            return parts[attr]
    raise PKCS11Error(CKR.ATTRIBUTE_TYPE_INVALID)


def set_attributes(session: Session, handle: int, raw: list) -> None:
    obj = session.object(handle)
    if not obj.attrs.get(Attribute.MODIFIABLE, True):
        raise PKCS11Error(CKR.ACTION_PROHIBITED)
    if obj.is_token and not session.rw:
        raise PKCS11Error(CKR.SESSION_READ_ONLY)
    changes = codecs.decode_template(raw)
    new_attrs = templates.check_modify(obj.attrs, changes, is_so=session.is_so, copying=False)
    reduced = policy.reduce_for(obj.key.acl, new_attrs)
    old = obj.attrs
    if reduced is not None:
        session.token.objects.module.reduce_acl(obj.key, reduced.actions())
    obj.attrs = new_attrs
    session.token.objects.reindex(obj, old)
    if obj.is_token:
        try:
            session.token.objects.persist(obj, session.token.auth)
        except BaseException:
            obj.attrs = old
            session.token.objects.reindex(obj, new_attrs)
            raise


#: Key components that live in the material, never in the stored attributes.
SECRET_COMPONENTS = frozenset({
    Attribute.VALUE, Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2,
    Attribute.EXPONENT_1, Attribute.EXPONENT_2, Attribute.COEFFICIENT,
    Attribute.SEED,  # PKCS#11 3.2 ML-DSA / ML-KEM private keys
})


# --- search ----------------------------------------------------------------------------------
@dataclass
class FindState:
    handles: list[int] = field(default_factory=list)
    position: int = 0


def find_init(session: Session, raw: list) -> None:
    with session.lock:
        if "find" in session.ops:
            raise PKCS11Error(CKR.OPERATION_ACTIVE)
        template = codecs.decode_template(raw)
        session.sync_objects()
        # In the order the objects were loaded or made (ObjectStore.find), not by handle: token
        # handles are hashes of the keys' identities, and hosts that take the first match (pkcs11-tool
        # --sign ignores --label) should keep finding the oldest key first.
        # Private objects only for a logged-in user.
        session.ops["find"] = FindState(session.token.objects.find(template, session.user_logged_in))


def find_next(session: Session, max_count: int) -> list[int]:
    with session.lock:
        state = session.ops.get("find")
        if not isinstance(state, FindState):
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
        chunk = state.handles[state.position:state.position + max_count]
        state.position += len(chunk)
        return chunk


def find_final(session: Session) -> None:
    with session.lock:
        if not isinstance(session.ops.pop("find", None), FindState):
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
