"""Key management (PKCS#11 3.0 §5.18) and random numbers (§5.19)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from emulator.acl import Action
from emulator.crypto import keywrap as kw_crypto
from emulator.crypto import rsa as rsa_crypto
from emulator.crypto.material import SecretMaterial

from .attributes import codecs, keyparts, templates
from .attributes.templates import Origin
from .constants import CKM_HKDF_DATA, CKM_RSA_AES_KEY_WRAP, Attribute, CKR, KeyType, Mechanism, MechanismFlag, ObjectClass
from . import library, mechanism_policy, policy
from .errors import PKCS11Error
from .management import add_object, add_session_key, with_material_attributes
from .mechanisms.hashes import DIGEST_MECHANISMS
from .mechanisms.registry import REGISTRY, MechanismSpec
from .nfkm_naming import take_naming
from .objects import P11Object
from .operations import check_key_for
from .sessions import Session

#: Enum members read on every unwrap or key pair, bound once: reading a member off its Enum class
#: costs ~0.16 us in CPython 3.11 (the same member objects, so the same keys and arguments).
_UNIQUE_ID, _UNWRAP_TEMPLATE = Attribute.UNIQUE_ID, Attribute.UNWRAP_TEMPLATE
_ORIGIN_UNWRAP, _ORIGIN_PAIR, _ACTION_UNWRAP = Origin.UNWRAP, Origin.GENERATE_PAIR, Action.UNWRAP
_PUBLIC_KEY, _PRIVATE_KEY, _PAIR_FLAG = ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY, MechanismFlag.GENERATE_KEY_PAIR

#: Rows that passed `_spec_for`, per (slot, mechanism, operation flag), with the configuration they
#: were checked against (a new C_Initialize reads a new one). The checks (registry, the slot's
#: mechanism profile, IntFlag arithmetic) cost ~5 us, every wrap and unwrap call makes them.
_SPECS: dict[tuple[int, int, int], tuple[Any, MechanismSpec]] = {}


def _spec_for(session: Session, mechanism: int, flag: int, factory: str) -> MechanismSpec:
    config = library.state().config
    hit = _SPECS.get((session.slot_id, mechanism, flag))
    if hit is not None and hit[0] is config:
        return hit[1]
    spec = REGISTRY.get(mechanism)
    mechanism_policy.require_allowed(session.slot_id, mechanism)
    if not spec.flags & flag or getattr(spec, factory, None) is None:
        raise PKCS11Error(CKR.MECHANISM_INVALID)
    _SPECS[(session.slot_id, mechanism, flag)] = (config, spec)
    return spec


def _key_type(template: dict[int, Any], spec: MechanismSpec, fallback: int | None = None) -> int:
    given = template.get(Attribute.KEY_TYPE)
    allowed = spec.generated_key_types or ()
    if given is not None:
        if allowed and given not in allowed:
            raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "key type does not fit the mechanism")
        return given
    if allowed:
        return next(iter(allowed))
    if fallback is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_KEY_TYPE missing")
    return fallback


class _TemplateRow:
    """What one key-making template makes, checked once: clients generate and unwrap with the same
    template over and over, and `templates.new_object` with its per-attribute rules costs several
    times the key operation itself. Everything here follows from the template, the mechanism and
    whether the SO is logged in alone; each new object gets its own copy of `stored` and its own
    CKA_UNIQUE_ID. `attrs` is read-only (shared by every call)."""

    __slots__ = ("attrs", "stored", "nested", "acl")

    def __init__(self, attrs: dict[int, Any]) -> None:
        self.attrs = attrs
        self.stored = keyparts.strip_material(attrs)  # what with_material_attributes keeps
        self.nested = tuple(attr for attr, value in self.stored.items() if isinstance(value, dict))  # *_TEMPLATEs
        # An `Acl` is immutable, and the usage and lifecycle attributes it follows from are the
        # template's (the material adds only CKA_VALUE_LEN / public components).
        self.acl = policy.acl_for(attrs)

    def new_stored(self) -> dict[int, Any]:
        """The new object's own attribute dict (no secret components; public ones not yet added)."""
        stored = dict(self.stored)
        for attr in self.nested:  # the only mutable values: each object gets its own copies
            stored[attr] = dict(stored[attr])
        if _UNIQUE_ID in stored:
            stored[_UNIQUE_ID] = templates.new_uuid4()  # templates.COMPUTED's rule, whatever the origin
        return stored


class _NewKeyAttributes(_TemplateRow):
    """A C_GenerateKey / C_GenerateKeyPair template's row, with the naming and key type it fixes."""

    __slots__ = ("naming", "key_type")

    def __init__(self, attrs: dict[int, Any], naming: tuple[str, str] | None, key_type: int) -> None:
        super().__init__(attrs)
        self.naming, self.key_type = naming, key_type


_NEW_KEY_ATTRS: dict[tuple, _NewKeyAttributes] = {}
_NEW_KEY_ATTRS_MAX = 256


def _raw_key(raw: list) -> tuple:
    try:  # read_template's [(int, bytes)] hashes as it is; nested templates (lists) need freezing
        frozen = tuple(raw)
        hash(frozen)
    except TypeError:
        frozen = _frozen_template(raw)
    return frozen


def _generated(spec: MechanismSpec, raw: list, origin: Origin, object_class: int, mechanism: int, is_so: bool,
               key_type: int | None = None) -> _NewKeyAttributes:
    """The checked attributes of a generated key's (or key-pair half's) template. `key_type` None:
    from the template or the mechanism (C_GenerateKey, a pair's public half)."""
    key = (origin, object_class, mechanism, is_so, key_type, _raw_key(raw))
    made = _NEW_KEY_ATTRS.get(key)
    if made is None:
        template = codecs.decode_template(raw)
        naming = take_naming(template)
        chosen = _key_type(template, spec) if key_type is None else key_type
        attrs = templates.new_object(template, origin, object_class=object_class, key_type=chosen,
                                     mechanism=mechanism, is_so=is_so)
        made = _NewKeyAttributes(attrs, naming, chosen)
        if len(_NEW_KEY_ATTRS) >= _NEW_KEY_ATTRS_MAX:
            _NEW_KEY_ATTRS.clear()
        _NEW_KEY_ATTRS[key] = made
    return made


def _with_public(stored: dict[int, Any], public: dict[int, Any]) -> dict[int, Any]:
    for attr, value in public.items():  # as with_material_attributes: the template's value wins
        stored.setdefault(attr, value)
    return stored


def generate_key(session: Session, mechanism: int, param: Any, raw: list) -> int:
    spec = _spec_for(session, mechanism, MechanismFlag.GENERATE, "generate")
    spec.validate(param)
    made = _generated(spec, raw, Origin.GENERATE, ObjectClass.SECRET_KEY, mechanism, session.is_so)
    attrs = made.attrs
    session.require_rw_for(attrs)
    material = spec.generate(param, made.key_type, attrs.get(Attribute.VALUE_LEN))
    keyparts.check_material_attributes(attrs, material)
    public, deferred = keyparts.split_public_attributes(material)  # CKA_CHECK_VALUE when first read
    return add_object(session, _with_public(made.new_stored(), public), material, made.acl, naming=made.naming,
                      origin=Origin.GENERATE, mechanism=mechanism, deferred=deferred).handle


def generate_key_pair(session: Session, mechanism: int, param: Any, raw_public: list,
                      raw_private: list) -> tuple[int, int]:
    spec = _spec_for(session, mechanism, _PAIR_FLAG, "generate_pair")
    spec.validate(param)
    # The public half of a named pair stays a pkcs11 object: its naming is dropped.
    is_so = session.is_so
    pub = _generated(spec, raw_public, _ORIGIN_PAIR, _PUBLIC_KEY, mechanism, is_so)
    priv = _generated(spec, raw_private, _ORIGIN_PAIR, _PRIVATE_KEY, mechanism, is_so, key_type=pub.key_type)
    session.require_rw_for(pub.attrs)
    session.require_rw_for(priv.attrs)
    private = spec.generate_pair(param, pub.attrs, priv.attrs)
    public = private.public()
    pub_public, priv_public = keyparts.pair_public_attributes(private, public)
    pub_obj = add_object(session, _with_public(pub.new_stored(), pub_public), public, pub.acl)
    try:
        priv_obj = add_object(session, _with_public(priv.new_stored(), priv_public), private, priv.acl,
                              naming=priv.naming, origin=_ORIGIN_PAIR, mechanism=mechanism)
    except BaseException:
        session.token.objects.delete(pub_obj)
        raise
    return pub_obj.handle, priv_obj.handle


class _Checked:
    """The PKCS#11-level checks of one call (mechanism, parameter, key handles) that passed, and what
    they were made against. They hold while each handle still names the same object with the same
    attribute dict, key and ACL (C_SetAttributeValue, C_CopyObject and a re-load from kmdata each
    replace one of these, never mutate it) and the login state is the same. The module's ACL check
    (`module.use`) is still made by every call that uses key material. `length` is the answer to a
    wrap's length query, kept once the ACL checks passed for it."""

    __slots__ = ("spec", "param", "handles", "objects", "against", "login", "length", "wrapper")

    def __init__(self, session: Session, spec: MechanismSpec, param: Any, handles: tuple[int, ...],
                 objects: tuple[P11Object, ...]) -> None:
        self.spec, self.param, self.handles, self.objects = spec, param, handles, objects
        # One flat row per handle: still_valid runs twice per C_WrapKey (length query, data call).
        self.against = tuple((handle, obj, obj.attrs, obj.key, obj.key.acl) for handle, obj in zip(handles, objects))
        self.login = session.token.login
        self.length: int | None = None
        #: wrap(target material) -> bytes for a wrap's data calls: the row's `prepare_wrap` (or its
        #: `wrap`) bound to the wrapping key and parameter these checks were made against.
        self.wrapper: Callable[[Any], bytes] | None = None

    def still_valid(self, session: Session, param: Any) -> bool:
        # `is` first: the parameter readers return one object per distinct value (mechanism_params).
        token = session.token
        if not (param is self.param or param == self.param) or token.login != self.login:
            return False
        get = token.objects.get
        for handle, obj, attrs, key, acl in self.against:
            if get(handle) is not obj or obj.attrs is not attrs or obj.key is not key or key.acl is not acl:
                return False
        return True


def _remember(session: Session, cache_key: tuple, checks: _Checked) -> None:
    if len(session.checked) >= _CHECKED_MAX:
        session.checked.clear()
    session.checked[cache_key] = checks


def _check_wrap(session: Session, spec: MechanismSpec, param: Any, wrapping_handle: int,
                key_handle: int) -> _Checked:
    wrapping = session.key(wrapping_handle, code=CKR.WRAPPING_KEY_HANDLE_INVALID)
    target = session.key(key_handle, code=CKR.KEY_HANDLE_INVALID)
    check_key_for(session, spec, wrapping, Attribute.WRAP,
                  (ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY),
                  type_code=CKR.WRAPPING_KEY_TYPE_INCONSISTENT)
    if not target.attrs.get(Attribute.EXTRACTABLE, False):
        raise PKCS11Error(CKR.KEY_UNEXTRACTABLE)
    if target.attrs.get(Attribute.WRAP_WITH_TRUSTED) and not wrapping.attrs.get(Attribute.TRUSTED):
        raise PKCS11Error(CKR.KEY_NOT_WRAPPABLE, "CKA_WRAP_WITH_TRUSTED needs a trusted wrapping key")
    wrap_template = wrapping.attrs.get(Attribute.WRAP_TEMPLATE)
    if wrap_template and not templates.matches(target.attrs, wrap_template):
        # PKCS#11 3.0 §5.18.3 names CKR_KEY_HANDLE_INVALID for a CKA_WRAP_TEMPLATE mismatch.
        raise PKCS11Error(CKR.KEY_HANDLE_INVALID, "key does not match CKA_WRAP_TEMPLATE")
    return _Checked(session, spec, param, (wrapping_handle, key_handle), (wrapping, target))


def _rsa_wrapped_len(limit: Callable[[Any, Any], int]) -> Callable[[Any, Any, Any], int | None]:
    """k for a padded RSA encryption of a secret key that fits the padding (RFC 8017 §7)."""

    def length(wrapping: Any, param: Any, target: Any) -> int | None:
        if not isinstance(target, SecretMaterial) or not 0 < len(target.value) <= limit(wrapping, param):
            return None
        return rsa_crypto.modulus_len(wrapping)

    return length


def _rsa_aes_wrapped_len(wrapping: Any, param: Any, target: Any) -> int | None:
    """PKCS#11 3.0 §2.1.21: k bytes of OAEP, then KWP of the target (RFC 5649: padded to 8, plus 8)."""
    if not isinstance(target, SecretMaterial) or not target.value:
        return None  # a private key's PKCS#8 length is known only once it is encoded
    if rsa_crypto.oaep_max_input(wrapping, DIGEST_MECHANISMS[param.oaep.hash_alg]) < param.aes_key_bits // 8:
        return None  # the wrap itself names the error
    return rsa_crypto.modulus_len(wrapping) + kw_crypto.kwp_wrapped_len(len(target.value))


#: Wrap mechanisms whose output length follows from the keys and the parameter: the length query of
#: the two-call convention (NULL buffer, PKCS#11 3.0 §5.2) is answered from it without any crypto.
#: Each returns None when it cannot be sure (unusual keys); the query then wraps, and the result is
#: kept for the data call that follows (`wrap_key`).
WRAPPED_LENGTHS: dict[int, Callable[[Any, Any, Any], int | None]] = {
    CKM_RSA_AES_KEY_WRAP: _rsa_aes_wrapped_len,
    Mechanism.RSA_PKCS_OAEP: _rsa_wrapped_len(
        lambda m, p: rsa_crypto.oaep_max_input(m, DIGEST_MECHANISMS[p.hash_alg])),
    Mechanism.RSA_PKCS: _rsa_wrapped_len(lambda m, p: rsa_crypto.modulus_len(m) - 11),  # RFC 8017 §7.2.1
}


def wrap_key(session: Session, mechanism: int, param: Any, wrapping_handle: int, key_handle: int,
             capacity: int | None) -> bytes | int:
    """The wrapped key, or (for a length query answered without wrapping) its length as an int.

    A wrapped result the caller could not take (NULL or short buffer) is kept for the next call
    with the same mechanism, parameter and handles, and only returned while the checks it passed
    still hold (`_Checked`): RSA-AES and OAEP wraps are randomised, and the length promised must
    be the length delivered."""
    cache_key = ("wrap", mechanism, wrapping_handle, key_handle)  # the parameter is checked in still_valid
    with session.lock:
        checks = session.checked.get(cache_key)
        # The row passed `_spec_for` when the checks were made, in this session of this library.
        spec = checks.spec if checks is not None else _spec_for(session, mechanism, MechanismFlag.WRAP, "wrap")
        if checks is None or not checks.still_valid(session, param):
            spec.validate(param)
            checks = _check_wrap(session, spec, param, wrapping_handle, key_handle)
            _remember(session, cache_key, checks)
            session.ops.pop("wrap-pending", None)
        elif capacity is None and checks.length is not None:
            return checks.length  # asked before, nothing it depends on has changed
        cached = session.ops.get("wrap-pending")
        if cached is not None and cached[0] == cache_key and cached[1] is checks:
            out = cached[2]
            if capacity is not None and capacity >= len(out):
                session.ops.pop("wrap-pending", None)  # delivered; a short buffer keeps it
            return out
        module = session.token.objects.module
        wrapping, target = checks.objects
        wrapping_material = module.use(wrapping.key, Action.WRAP)
        target_material = module.use(target.key, Action.EXPORT_AS_BLOB, wrap_key_hash=wrapping.key.key_hash)
        if capacity is None:
            length_of = WRAPPED_LENGTHS.get(mechanism)
            if length_of is not None:
                checks.length = length_of(wrapping_material, param, target_material)
                if checks.length is not None:
                    return checks.length
        wrapper = checks.wrapper
        if wrapper is None:
            wrapper = checks.wrapper = (
                spec.prepare_wrap(wrapping_material, param) if spec.prepare_wrap is not None
                else functools.partial(spec.wrap, wrapping_material, param))
    # The primitive runs outside the session's lock: it guards the session's caches, not the keys
    # (the RSA operation releases the GIL, and nothing here waits on the session meanwhile).
    out = wrapper(target_material)
    if capacity is None or capacity < len(out):
        with session.lock:
            session.ops["wrap-pending"] = (cache_key, checks, out)
    elif cached is not None:  # a result this call replaces (none was there: nothing to take)
        with session.lock:
            session.ops.pop("wrap-pending", None)
    return out


#: Bound on the per-session check cache (one entry per distinct mechanism/parameter/handle set).
_CHECKED_MAX = 64


def _frozen_template(raw: list) -> tuple:
    return tuple((int(t), _frozen_template(v) if isinstance(v, list) else bytes(v)) for t, v in raw)


class _UnwrapRow(_TemplateRow):
    """An unwrap template's row (with the unwrapping key's CKA_UNWRAP_TEMPLATE, which it also
    follows from), with what the unwrap itself reads of it. `kind` is None when the template's class
    and key type name no key material: each call then asks `keyparts.key_kind` again, after the
    session checks, for its error."""

    __slots__ = ("kind", "key_type", "value_len", "token", "private", "memos")

    def __init__(self, attrs: dict[int, Any]) -> None:
        super().__init__(attrs)
        try:
            self.kind: str | None = keyparts.key_kind(attrs[Attribute.CLASS], attrs[Attribute.KEY_TYPE])
        except (PKCS11Error, KeyError):
            self.kind = None
        self.key_type = attrs.get(Attribute.KEY_TYPE)
        self.value_len = attrs.get(Attribute.VALUE_LEN)
        self.token = bool(attrs.get(Attribute.TOKEN))
        self.private = bool(attrs.get(Attribute.PRIVATE))
        #: The attribute answers (abi/answers.stage) of the objects made with these public attributes.
        self.memos: dict[tuple, dict] = {}

    def memo(self, public: dict[int, Any]) -> dict | None:
        """The answer memo of objects made from this row with `public` added: their stored
        attributes differ only in CKA_UNIQUE_ID. None for values that do not repeat (a private key's
        public components) once a few were seen."""
        try:
            key = tuple(public.items())
            memo = self.memos.get(key)
        except TypeError:
            return None
        if memo is None and len(self.memos) < _UNWRAP_MEMOS_MAX:
            memo = self.memos[key] = {}
        return memo


#: Unwrap templates already checked, by (mechanism, SO or not, the template's image from the C entry
#: point or its frozen attributes, the unwrapping key's CKA_UNWRAP_TEMPLATE). Only successes are kept.
_UNWRAP_ROWS: dict[tuple, _UnwrapRow] = {}
_UNWRAP_ROWS_MAX = 256
_UNWRAP_MEMOS_MAX = 4


def _unwrap_row(raw: Any, image: bytes | None, forced: dict[int, Any] | None, mechanism: int,
                is_so: bool) -> _UnwrapRow:
    """The row of an unwrap template. `image` (marshal.read_template_imaged) stands for `raw` when
    given: equal images are equal templates, and it costs no hashing of the attribute pairs."""
    if image is None:
        image = _raw_key(raw)
    key = (mechanism, is_so, image, repr(sorted(forced.items())) if forced else None)
    row = _UNWRAP_ROWS.get(key)
    if row is None:
        template = templates.with_key_template(codecs.decode_template(raw), forced, CKR.TEMPLATE_INCONSISTENT,
                                               "CKA_UNWRAP_TEMPLATE")
        row = _UnwrapRow(templates.new_object(template, Origin.UNWRAP, mechanism=mechanism, is_so=is_so))
        if len(_UNWRAP_ROWS) >= _UNWRAP_ROWS_MAX:
            _UNWRAP_ROWS.clear()
        _UNWRAP_ROWS[key] = row
    return row


def unwrap_key(session: Session, mechanism: int, param: Any, unwrapping_handle: int, wrapped: bytes,
               raw: Any, image: bytes | None = None) -> int:
    return unwrap_object(session, mechanism, param, unwrapping_handle, wrapped, raw, image)[0].handle


def unwrap_object(session: Session, mechanism: int, param: Any, unwrapping_handle: int, wrapped: bytes,
                  raw: Any, image: bytes | None = None) -> tuple[P11Object, dict | None]:
    """The new object, and the memo of attribute answers shared by the objects its template makes
    with the same public attributes (`_UnwrapRow.memo`; None for a token object)."""
    # No lock is held from here on: the private-key operation releases the GIL, and other sessions'
    # unwraps run beside it (the session's own state is only read; the object store locks itself).
    cache_key = ("unwrap", mechanism, unwrapping_handle)
    checks = session.checked.get(cache_key)
    spec = checks.spec if checks is not None else _spec_for(session, mechanism, MechanismFlag.UNWRAP, "unwrap")
    if checks is None or not checks.still_valid(session, param):
        spec.validate(param)
        unwrapping = session.key(unwrapping_handle, code=CKR.UNWRAPPING_KEY_HANDLE_INVALID)
        check_key_for(session, spec, unwrapping, Attribute.UNWRAP,
                      (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY),
                      type_code=CKR.UNWRAPPING_KEY_TYPE_INCONSISTENT)
        checks = _Checked(session, spec, param, (unwrapping_handle,), (unwrapping,))
        with session.lock:
            _remember(session, cache_key, checks)
    unwrapping = checks.objects[0]
    row = _unwrap_row(raw, image, unwrapping.attrs.get(_UNWRAP_TEMPLATE), mechanism, session.is_so)
    attrs = row.attrs
    session.require_rw_for(attrs)
    kind = row.kind or keyparts.key_kind(attrs[Attribute.CLASS], attrs[Attribute.KEY_TYPE])
    module = session.token.objects.module
    unwrapping_material = module.use(unwrapping.key, _ACTION_UNWRAP)
    material = spec.unwrap(unwrapping_material, param, wrapped, kind, row.value_len)
    if not keyparts.fits(material, row.key_type):
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "unwrapped key is not of the template's key type")
    keyparts.check_material_attributes(attrs, material)
    public, deferred = keyparts.split_public_attributes(material)  # as with_material_attributes
    stored = row.new_stored()
    for attr, value in public.items():
        stored.setdefault(attr, value)
    if row.token:
        return add_object(session, stored, material, row.acl, origin=Origin.UNWRAP, mechanism=mechanism,
                          deferred=deferred), None
    return (add_session_key(session, stored, material, row.acl, row.private, _ORIGIN_UNWRAP, mechanism, deferred),
            row.memo(public))


#: Derivation mechanisms whose result is a data object (CKO_DATA), not a key.
DATA_DERIVATIONS = frozenset({CKM_HKDF_DATA})


def check_derive_base(session: Session, mechanism: int, base_handle: int) -> tuple[MechanismSpec, P11Object]:
    """The mechanism row and the base key, checked before the parameter is read: a base the
    mechanism cannot take is CKR_KEY_TYPE_INCONSISTENT whatever the parameter says (a public key
    or an RSA key under CKM_XOR_BASE_AND_DATA, a secret key under CKM_ECDH1_DERIVE)."""
    spec = _spec_for(session, mechanism, MechanismFlag.DERIVE, "derive")
    base = session.key(base_handle)
    check_key_for(session, spec, base, Attribute.DERIVE, (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY))
    return spec, base


def derive_key(session: Session, mechanism: int, param: Any, base_handle: int, raw: list) -> int:
    spec, base = check_derive_base(session, mechanism, base_handle)
    spec.validate(param)
    template = codecs.decode_template(raw)
    module = session.token.objects.module

    def resolve_key(handle: int) -> Any:
        # A second key named by the parameter (CONCATENATE_BASE_AND_KEY, the HKDF salt key): the same
        # checks as for the base key, then the module's own ACL check.
        other = session.key(handle, code=CKR.KEY_HANDLE_INVALID)
        if other.attrs.get(Attribute.CLASS) != ObjectClass.SECRET_KEY:
            raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "the second key must be a secret key")
        if not other.attrs.get(Attribute.DERIVE, False):
            raise PKCS11Error(CKR.KEY_FUNCTION_NOT_PERMITTED, "the second key does not allow CKA_DERIVE")
        return module.use(other.key, Action.DERIVE)

    if template.get(Attribute.CLASS) == ObjectClass.DATA:
        # CKM_HKDF_DATA (PKCS#11 3.0 §2.43.x) makes a data object holding the bytes in CKA_VALUE; its
        # length comes from CKA_VALUE_LEN in the template, which a data object does not keep.
        if mechanism not in DATA_DERIVATIONS:
            raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "this mechanism derives keys, not data objects")
        length = template.pop(Attribute.VALUE_LEN, None)
        value = spec.derive(module.use(base.key, Action.DERIVE), param, KeyType.GENERIC_SECRET, length,
                            resolve_key).value
        attrs = templates.new_object({**template, Attribute.VALUE: value}, Origin.CREATE, is_so=session.is_so)
        return add_object(session, attrs, None).handle
    # PKCS#11 3.0 §5.18.5: the base key's CKA_DERIVE_TEMPLATE is added to every key derived from it
    # (ECDH and the secret-key derivations alike); a caller template contradicting it is
    # CKR_TEMPLATE_INCONSISTENT, as for CKA_UNWRAP_TEMPLATE.
    template = templates.with_key_template(template, base.attrs.get(Attribute.DERIVE_TEMPLATE),
                                           CKR.TEMPLATE_INCONSISTENT, "CKA_DERIVE_TEMPLATE")
    template.setdefault(Attribute.CLASS, ObjectClass.SECRET_KEY)
    template.setdefault(Attribute.KEY_TYPE, KeyType.GENERIC_SECRET)
    attrs = templates.new_object(template, Origin.DERIVE, mechanism=mechanism, is_so=session.is_so,
                                 base=base.attrs)
    session.require_rw_for(attrs)
    material = module.use(base.key, Action.DERIVE)
    derived = spec.derive(material, param, attrs[Attribute.KEY_TYPE], attrs.get(Attribute.VALUE_LEN), resolve_key)
    keyparts.check_material_attributes(attrs, derived)
    return add_object(session, with_material_attributes(attrs, derived), derived, origin=Origin.DERIVE,
                      mechanism=mechanism).handle


def seed_random(seed: bytes) -> None:
    """Mix the caller's seed into the kernel pool our RNG draws from (writing does not credit entropy)."""
    try:
        with open("/dev/urandom", "wb") as pool:
            pool.write(seed)
    except OSError:
        raise PKCS11Error(CKR.RANDOM_SEED_NOT_SUPPORTED) from None
