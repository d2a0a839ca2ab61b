"""Cryptographic operation state (PKCS#11 3.0 §5.2, §5.8-5.17): one model for every kind.

An operation of a kind (encrypt, decrypt, digest, sign, verify, sign_recover, verify_recover, the 3.2
signature-first verify, the 3.0 message-based kinds, find) lives in `session.ops[kind]` from its
*Init to the call that ends it; at most one per kind and session. Its phase:

    READY           after *Init: a single-part call or the first update may come
    UPDATING        after an update (or C_DigestKey): more updates, or the final call
    PENDING_UPDATE  an update computed output the caller did not take
    FINAL           a final or single-part call computed its result the caller did not take

"Did not take": a NULL buffer (a length query, answered CKR_OK) or a buffer too small
(CKR_BUFFER_TOO_SMALL). The output is held (`Pending`) with the call and the input that made it, so
the primitive context, which has consumed that input (or been finalized), is never asked again: only
the same call with the same input collects it (§5.2), and collecting a final result ends the
operation. The rules, applied here and nowhere else:

- *Init while the kind is active: CKR_OPERATION_ACTIVE, and the active operation stays as it was.
  *Init with a NULL mechanism ends the active operation (3.0 §5.8.1 and each *Init).
- A call while output is held, other than the call that made it: CKR_OPERATION_ACTIVE (in FINAL the
  operation is in its final phase; no update, key digest or other call can follow). An update's
  empty output is the exception: there is nothing to collect, so the next call finds it taken.
- A single-part call (C_Encrypt, C_Digest, C_Sign, C_Verify, ...) after an update:
  CKR_OPERATION_ACTIVE.
- Every error but CKR_BUFFER_TOO_SMALL ends the operation the call names (§5.8 C_Encrypt and each
  function's text: "a call ... which results in an error terminates the operation"), the two
  CKR_OPERATION_ACTIVE answers above included; `guard` is that rule. A dual-function call (§5.13)
  names two operations; its error ends both.
- A verification (C_Verify, C_VerifyFinal, C_VerifySignature, C_VerifySignatureFinal) always ends.
- C_SessionCancel ends the kinds its flags name; C_GetOperationState answers CKR_STATE_UNSAVEABLE
  while a result is held (the context that made it is spent).
- Message-based operations (`abi.messages`): the operation is C_Message*Init .. C_Message*Final; a
  length query computes nothing there (the output is as long as the input), and an error ends the
  message in progress (Begin .. Next with CKF_END_OF_MESSAGE), not the operation.
- Find (`management.find_*`): C_FindObjectsInit .. C_FindObjectsFinal; C_FindObjects hands out the
  next handles and has no held output.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from emulator.acl import Action

from .constants import (CKF_FIND_OBJECTS, CKF_MESSAGE_DECRYPT, CKF_MESSAGE_ENCRYPT, CKF_MESSAGE_SIGN,
                        CKF_MESSAGE_VERIFY, CKR, Attribute, MechanismFlag, ObjectClass)
from . import mechanism_policy
from .errors import PKCS11Error
from .mechanisms.registry import REGISTRY, MechanismSpec
from .objects import P11Object
from .sessions import Session


@dataclass(frozen=True)
class OperationKind:
    name: str
    flag: int  # the CK_MECHANISM_INFO flag a mechanism must have
    usage: int | None  # the key attribute that must be TRUE
    action: Action | None  # the ACL action the module checks
    factory: str  # MechanismSpec field that makes the operation


KINDS: dict[str, OperationKind] = {
    k.name: k
    for k in (
        OperationKind("encrypt", MechanismFlag.ENCRYPT, Attribute.ENCRYPT, Action.ENCRYPT, "encrypt"),
        OperationKind("decrypt", MechanismFlag.DECRYPT, Attribute.DECRYPT, Action.DECRYPT, "decrypt"),
        OperationKind("digest", MechanismFlag.DIGEST, None, None, "digest"),
        OperationKind("sign", MechanismFlag.SIGN, Attribute.SIGN, Action.SIGN, "sign"),
        OperationKind("verify", MechanismFlag.VERIFY, Attribute.VERIFY, Action.VERIFY, "verify"),
        OperationKind("sign_recover", MechanismFlag.SIGN_RECOVER, Attribute.SIGN_RECOVER, Action.SIGN, "sign_recover"),
        OperationKind("verify_recover", MechanismFlag.VERIFY_RECOVER, Attribute.VERIFY_RECOVER, Action.VERIFY, "verify_recover"),
        # PKCS#11 3.2 C_VerifySignatureInit: a verification of its own (signature given at init).
        OperationKind("verify_signature", MechanismFlag.VERIFY, Attribute.VERIFY, Action.VERIFY, "verify"),
    )
}

#: The 3.0 message-based kinds (`abi.messages` makes them) and their CKF_MESSAGE_* flags.
MESSAGE_KINDS: dict[str, int] = {
    "message_encrypt": CKF_MESSAGE_ENCRYPT, "message_decrypt": CKF_MESSAGE_DECRYPT,
    "message_sign": CKF_MESSAGE_SIGN, "message_verify": CKF_MESSAGE_VERIFY,
}

#: CKF_* flags C_SessionCancel names, and the operation kinds they cancel (3.0 §5.6.9): the
#: mechanism flag of each kind (CKF_VERIFY also ends a C_VerifySignatureInit operation), the
#: CKF_MESSAGE_* flags and CKF_FIND_OBJECTS.
CANCEL_FLAGS: tuple[tuple[int, str], ...] = tuple(
    (k.flag, k.name) for k in KINDS.values()
) + tuple((flag, name) for name, flag in MESSAGE_KINDS.items()) + ((CKF_FIND_OBJECTS, "find"),)

#: Every key of `session.ops` that is an operation of the model (keymgmt keeps a wrap cache there too).
OPERATION_KINDS = frozenset(KINDS) | frozenset(MESSAGE_KINDS) | {"find"}

#: Key classes each kind may use (public keys encrypt and verify, private keys decrypt and sign).
ALLOWED_CLASSES: dict[str, tuple[int, ...]] = {
    "encrypt": (ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY),
    "decrypt": (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY),
    "sign": (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY),
    "verify": (ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY),
    "sign_recover": (ObjectClass.PRIVATE_KEY,),
    "verify_recover": (ObjectClass.PUBLIC_KEY,),
    "verify_signature": (ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY),
}


class Pending(NamedTuple):
    """Output a call computed that the caller has not taken yet (NULL buffer, or too small)."""

    call: str  # "oneshot", "update", "final", or a dual-function call ("update+digest", ...)
    data: bytes  # the input that call consumed
    out: bytes
    ends: bool  # delivering it ends the operation (a final or single-part result)


@dataclass(eq=False)
class ActiveOperation:
    kind: str
    spec: MechanismSpec
    op: Any
    key: P11Object | None = None
    needs_context_login: bool = False
    pending: Pending | None = None
    multipart: bool = False

    @property
    def phase(self) -> str:
        """READY, UPDATING, PENDING_UPDATE or FINAL (see the module docstring)."""
        if self.pending is not None:
            return "FINAL" if self.pending.ends else "PENDING_UPDATE"
        return "UPDATING" if self.multipart else "READY"


def check_key_for(session: Session, spec: MechanismSpec, key: P11Object, usage: int | None,
                  classes: tuple[int, ...] | None, *, type_code: int = CKR.KEY_TYPE_INCONSISTENT) -> None:
    """The PKCS#11-level checks that come before the module's own ACL check."""
    attrs = key.attrs
    if classes is not None and attrs.get(Attribute.CLASS) not in classes:
        raise PKCS11Error(type_code)
    if spec.key_types and attrs.get(Attribute.KEY_TYPE) not in spec.key_types:
        raise PKCS11Error(type_code)
    if usage is not None and not attrs.get(usage, False):
        raise PKCS11Error(CKR.KEY_FUNCTION_NOT_PERMITTED)
    allowed = attrs.get(Attribute.ALLOWED_MECHANISMS)
    if allowed is not None and spec.mechanism not in allowed:
        raise PKCS11Error(CKR.MECHANISM_INVALID, "mechanism not in CKA_ALLOWED_MECHANISMS")


class _KeyChecks:
    """The checks an *Init with a key passed (mechanism row, slot profile, parameter, key class and
    type, usage attribute, CKA_ALLOWED_MECHANISMS), kept in `session.checked` and reused while the
    handle still names the same object with the same attribute dict, key and ACL and the login
    state is the same (an attribute change or a re-load from kmdata replaces one of these, never
    mutates it). The module's ACL check (`module.use`) is still made by every *Init."""

    __slots__ = ("spec", "param", "handle", "obj", "attrs", "key", "acl", "login", "factory", "needs_login",
                 "material", "op")

    def __init__(self, session: Session, spec: MechanismSpec, param: Any, handle: int, obj: P11Object,
                 factory: Callable[..., Any], needs_login: bool) -> None:
        self.spec, self.param, self.handle, self.obj = spec, param, handle, obj
        self.attrs, self.key = obj.attrs, obj.key
        self.acl, self.login = obj.key.acl, session.token.login
        self.factory, self.needs_login = factory, needs_login
        #: A REUSABLE operation object made for `material` (the one `module.use` returned).
        self.material: Any = None
        self.op: Any = None

    def operation(self, material: Any, param: Any) -> Any:
        if material is self.material and self.op is not None:
            return self.op
        op = self.factory(material, param)
        if getattr(op, "REUSABLE", False):
            self.material, self.op = material, op
        return op

    def still_valid(self, session: Session, param: Any) -> bool:
        token = session.token
        obj = self.obj
        return ((param is self.param or param == self.param) and token.login == self.login
                and token.objects.get(self.handle) is obj and obj.attrs is self.attrs and obj.key is self.key
                and obj.key.acl is self.acl)


#: Entries of `session.checked` (shared with keymgmt's wrap/unwrap checks) before it is emptied.
_CHECKED_MAX = 64


def begin(session: Session, kind_name: str, mechanism: int, param: Any, key_handle: int | None) -> None:
    kind = KINDS[kind_name]
    with session.lock:
        if kind_name in session.ops:
            raise PKCS11Error(CKR.OPERATION_ACTIVE)
        library_module = session.token.objects.module
        if kind.action is not None:
            cache_key = (kind_name, mechanism, key_handle)
            checks = session.checked.get(cache_key)
            if checks is not None and checks.still_valid(session, param):
                op = checks.operation(library_module.use(checks.key, kind.action), param)
                session.ops[kind_name] = ActiveOperation(kind_name, checks.spec, op, checks.obj, checks.needs_login)
                return
        spec = REGISTRY.get(mechanism)
        mechanism_policy.require_allowed(session.slot_id, mechanism)
        factory = getattr(spec, kind.factory, None)
        if factory is None or not spec.flags & kind.flag:
            raise PKCS11Error(CKR.MECHANISM_INVALID)
        spec.validate(param)
        if kind.action is None:
            op = factory(param)
            session.ops[kind_name] = ActiveOperation(kind_name, spec, op)
            return
        key = session.key(key_handle)
        check_key_for(session, spec, key, kind.usage, ALLOWED_CLASSES.get(kind_name))
        material = library_module.use(key.key, kind.action)
        op = factory(material, param)
        needs_login = bool(key.attrs.get(Attribute.ALWAYS_AUTHENTICATE)) and kind_name in (
            "decrypt", "sign", "sign_recover")
        session.ops[kind_name] = ActiveOperation(kind_name, spec, op, key, needs_login)
        try:
            hash(param)
        except TypeError:
            return  # a parameter that cannot be compared cheaply is checked every time
        if len(session.checked) >= _CHECKED_MAX:
            session.checked.clear()
        checks = _KeyChecks(session, spec, param, key_handle, key, factory, needs_login)
        if getattr(op, "REUSABLE", False):
            checks.material, checks.op = material, op
        session.checked[cache_key] = checks


def end(session: Session, *kind_names: str) -> None:
    """Terminate the operations of those kinds, where one is active."""
    with session.lock:
        for kind_name in kind_names:
            session.ops.pop(kind_name, None)


class guard:
    """§5.2: a call that fails with anything but CKR_BUFFER_TOO_SMALL ends the operations it names
    (bad arguments included); an unexpected exception ends them too before the boundary logs it.
    A class rather than a generator context manager: every C_Sign / C_Encrypt enters two."""

    __slots__ = ("session", "kind_names")

    def __init__(self, session: Session, *kind_names: str) -> None:
        self.session, self.kind_names = session, kind_names

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc_type is not None and not (isinstance(exc, PKCS11Error) and exc.rv == CKR.BUFFER_TOO_SMALL):
            end(self.session, *self.kind_names)
        return False


def active(session: Session, kind_name: str) -> ActiveOperation:
    op = session.ops.get(kind_name)
    if op is None:
        raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
    if op.needs_context_login:
        raise PKCS11Error(CKR.USER_NOT_LOGGED_IN, "CKA_ALWAYS_AUTHENTICATE key needs CKU_CONTEXT_SPECIFIC")
    return op


def _refuse_held(op: ActiveOperation) -> None:
    """A call that would feed or finish the context while output is held for another call."""
    if op.pending is not None and not op.pending.ends and not op.pending.out:
        # An update whose output is empty left nothing to collect: a caller told "0 bytes" may go
        # on without repeating it (its input is consumed; only the repeat must not feed it twice).
        op.pending = None
    if op.pending is not None:
        raise PKCS11Error(CKR.OPERATION_ACTIVE, f"{op.phase}: the output of {op.pending.call} is held for the "
                                                "caller; repeat that call with a large enough buffer")


def _refuse_after_update(op: ActiveOperation, step: str) -> None:
    if step == "oneshot" and op.multipart:
        raise PKCS11Error(CKR.OPERATION_ACTIVE, "single-part call after an update")


def _produce(op: ActiveOperation, call: str, data: bytes, compute: Callable[[], Any]) -> bytes:
    """The held output if this is the call that made it, else compute (refused while output is held)."""
    held = op.pending
    if held is not None and held.call == call and held.data == data:
        return held.out
    _refuse_held(op)
    return bytes(compute() or b"")


def _deliver(session: Session, op: ActiveOperation, call: str, data: bytes, out: bytes, capacity: int | None,
             ends: bool) -> bytes:
    """Hold `out` when the caller cannot take it; else clear the hold and end the operation if `ends`."""
    if capacity is None or capacity < len(out):
        op.pending = Pending(call, data, out, ends)
    else:
        op.pending = None
        if ends:
            session.ops.pop(op.kind, None)
    return out


def _compute(op: ActiveOperation, step: str, data: bytes) -> Any:
    if step == "oneshot":
        _refuse_after_update(op, step)
        return op.op.oneshot(data)
    if step == "update":
        out = op.op.update(data)
        op.multipart = True
        return out
    return op.op.final()


def run(session: Session, kind_name: str, step: str, data: bytes, capacity: int | None) -> bytes:
    """One call that produces output: step is "oneshot", "update" or "final"; capacity None is a
    length query. Returns the output; the caller delivers it by the two-call convention."""
    with session.lock, guard(session, kind_name):
        op = active(session, kind_name)
        # _produce, inlined: every C_Sign / C_Encrypt pair comes here twice.
        held = op.pending
        if held is not None and held.call == step and held.data == data:
            out = held.out
        else:
            _refuse_held(op)
            out = bytes(_compute(op, step, data) or b"")
        return _deliver(session, op, step, data, out, capacity, ends=step != "update")


def absorb(session: Session, kind_name: str, data: bytes) -> None:
    """An update that produces no output (digest, sign, verify, signature-first verify)."""
    with session.lock, guard(session, kind_name):
        op = active(session, kind_name)
        _refuse_held(op)
        op.op.update(data)
        op.multipart = True


def verify(session: Session, kind_name: str, step: str, data: bytes, signature: bytes) -> None:
    """C_Verify / C_VerifyFinal (and the signature-first forms): the operation ends either way."""
    with session.lock, guard(session, kind_name):
        op = active(session, kind_name)
        _refuse_held(op)
        _refuse_after_update(op, step)
        try:
            if step == "oneshot":
                op.op.oneshot(data, signature)
            else:
                op.op.final(signature)
        finally:
            session.ops.pop(kind_name, None)


def dual(session: Session, first: str, second: str, data: bytes, capacity: int | None, *,
         feed_output: bool) -> bytes:
    """A dual-function update (§5.13): `first` (encrypt or decrypt) makes the output; once it is
    delivered, `second` (digest, sign or verify) absorbs the caller's input, or the output when
    `feed_output` (decrypt-then-digest/verify). Held output is held on `first`, under a call name
    of its own, so only the same dual call collects it."""
    call = f"update+{second}"
    with session.lock, guard(session, first, second):
        a, b = active(session, first), active(session, second)
        _refuse_held(b)
        out = _produce(a, call, data, lambda: _compute(a, "update", data))
        _deliver(session, a, call, data, out, capacity, ends=False)
        if a.pending is None:
            b.op.update(out if feed_output else data)
            b.multipart = True
        return out


def digest_key(session: Session, key_handle: int) -> None:
    """C_DigestKey: an update whose input is a secret key's value."""
    with session.lock, guard(session, "digest"):
        op = active(session, "digest")
        _refuse_held(op)
        key = session.key(key_handle)
        if key.attrs.get(Attribute.CLASS) != ObjectClass.SECRET_KEY:
            raise PKCS11Error(CKR.KEY_INDIGESTIBLE)
        material = session.token.objects.module.use(key.key, Action.DIGEST)
        op.op.update_key(material.value)  # keyed input makes the state unsaveable
        op.multipart = True


def cancel(session: Session, flags: int) -> None:
    with session.lock:
        end(session, *(kind_name for flag, kind_name in CANCEL_FLAGS if flags & flag))


# --- C_GetOperationState / C_SetOperationState (digests) -------------------------------------
_STATE_MAGIC = b"SSOS1"


def get_state(session: Session) -> bytes:
    with session.lock:
        kinds = [k for k in session.ops if k in OPERATION_KINDS and k != "find"]
        if not kinds:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
        if kinds != ["digest"]:
            # Only keyless digest state can leave the module: key-bearing state would expose keys.
            raise PKCS11Error(CKR.STATE_UNSAVEABLE)
        op = session.ops["digest"]
        if op.phase == "FINAL":
            raise PKCS11Error(CKR.STATE_UNSAVEABLE, "a digest result is held: the context that made it is spent")
        return _STATE_MAGIC + struct.pack("<QB", op.spec.mechanism, op.multipart) + op.op.state()


def set_state(session: Session, blob: bytes) -> None:
    if not blob.startswith(_STATE_MAGIC) or len(blob) < len(_STATE_MAGIC) + 9:
        raise PKCS11Error(CKR.SAVED_STATE_INVALID)
    mechanism, multipart = struct.unpack_from("<QB", blob, len(_STATE_MAGIC))
    try:
        spec = REGISTRY.get(mechanism)
    except PKCS11Error:
        raise PKCS11Error(CKR.SAVED_STATE_INVALID) from None
    if spec.digest is None:
        raise PKCS11Error(CKR.SAVED_STATE_INVALID)
    op = spec.digest(None)
    try:
        op.restore(blob[len(_STATE_MAGIC) + 9:])
    except PKCS11Error:
        raise
    except Exception:
        raise PKCS11Error(CKR.SAVED_STATE_INVALID) from None
    with session.lock:
        session.ops["digest"] = ActiveOperation("digest", spec, op, multipart=bool(multipart))
