"""Cryptographic operation state: init / update / final, one active operation per kind (§5.8-5.13).

A result that the caller cannot take yet (NULL buffer, or too small) is kept with the input it
answers, so the second call of the two-call convention returns it without computing (or consuming
input) twice, and the operation stays active (§5.2). Any other failure ends the operation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from emulator.acl import Action

from .constants import Attribute, CKR, MechanismFlag, ObjectClass
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

#: CKF_* flags C_SessionCancel names, and the operation kinds they cancel (3.0 §5.6.9).
CANCEL_FLAGS: tuple[tuple[int, str], ...] = tuple(
    (k.flag, k.name) for k in KINDS.values()
) + ((0x40, "find"),)  # CKF_FIND_OBJECTS

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


@dataclass(eq=False)
class ActiveOperation:
    kind: str
    spec: MechanismSpec
    op: Any
    key: P11Object | None = None
    needs_context_login: bool = False
    pending: tuple[str, bytes, bytes] | None = None
    multipart: bool = False


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


def begin(session: Session, kind_name: str, mechanism: int, param: Any, key_handle: int | None) -> None:
    kind = KINDS[kind_name]
    with session.lock:
        if kind_name in session.ops:
            raise PKCS11Error(CKR.OPERATION_ACTIVE)
        spec = REGISTRY.get(mechanism)
        mechanism_policy.require_allowed(session.slot_id, mechanism)
        factory = getattr(spec, kind.factory, None)
        if factory is None or not spec.flags & kind.flag:
            raise PKCS11Error(CKR.MECHANISM_INVALID)
        spec.validate(param)
        library_module = session.token.objects.module
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


def end(session: Session, kind_name: str) -> None:
    """Terminate the operation of that kind, if one is active."""
    with session.lock:
        session.ops.pop(kind_name, None)


def active(session: Session, kind_name: str) -> ActiveOperation:
    op = session.ops.get(kind_name)
    if op is None:
        raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
    if op.needs_context_login:
        raise PKCS11Error(CKR.USER_NOT_LOGGED_IN, "CKA_ALWAYS_AUTHENTICATE key needs CKU_CONTEXT_SPECIFIC")
    return op


def run(session: Session, kind_name: str, step: str, data: bytes, capacity: int | None) -> bytes:
    """One call that produces output: step is "oneshot", "update" or "final"."""
    with session.lock:
        op = active(session, kind_name)
        if step == "oneshot" and op.multipart:
            raise PKCS11Error(CKR.OPERATION_ACTIVE, "single-part call after an update")
        if op.pending is not None and op.pending[0] == step and op.pending[1] == data:
            out = op.pending[2]
        elif op.pending is not None:
            # The last call's output was computed (its input is consumed by the context) but not
            # delivered; any call but that one again would need the context as it was before.
            raise PKCS11Error(CKR.OPERATION_ACTIVE, f"the output of the last {op.pending[0]} call is still "
                                                    "pending: repeat that call with a large enough buffer")
        else:
            try:
                if step == "oneshot":
                    out = op.op.oneshot(data)
                elif step == "update":
                    out = op.op.update(data)
                    op.multipart = True
                else:
                    out = op.op.final()
            except BaseException:
                session.ops.pop(kind_name, None)
                raise
            out = bytes(out or b"")
        if capacity is None or capacity < len(out):
            op.pending = (step, data, out)
            return out
        op.pending = None
        if step != "update":
            session.ops.pop(kind_name, None)
        return out


def absorb(session: Session, kind_name: str, data: bytes) -> None:
    """An update that produces no output (digest, sign, verify)."""
    with session.lock:
        op = active(session, kind_name)
        try:
            op.op.update(data)
            op.multipart = True
        except BaseException:
            session.ops.pop(kind_name, None)
            raise


def verify(session: Session, kind_name: str, step: str, data: bytes, signature: bytes) -> None:
    with session.lock:
        op = active(session, kind_name)
        if step == "oneshot" and op.multipart:
            raise PKCS11Error(CKR.OPERATION_ACTIVE, "single-part call after an update")
        try:
            if step == "oneshot":
                op.op.oneshot(data, signature)
            else:
                op.op.final(signature)
        finally:
            session.ops.pop(kind_name, None)


def digest_key(session: Session, key_handle: int) -> None:
    with session.lock:
        op = active(session, "digest")
        key = session.key(key_handle)
        if key.attrs.get(Attribute.CLASS) != ObjectClass.SECRET_KEY:
            raise PKCS11Error(CKR.KEY_INDIGESTIBLE)
        material = session.token.objects.module.use(key.key, Action.DIGEST)
        op.op.update_key(material.value)  # keyed input makes the state unsaveable
        op.multipart = True


def cancel(session: Session, flags: int) -> None:
    with session.lock:
        for flag, kind_name in CANCEL_FLAGS:
            if flags & flag:
                session.ops.pop(kind_name, None)


# --- C_GetOperationState / C_SetOperationState (digests) -------------------------------------
_STATE_MAGIC = b"SSOS1"


def get_state(session: Session) -> bytes:
    with session.lock:
        kinds = [k for k in session.ops if k != "find"]
        if not kinds:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
        if kinds != ["digest"]:
            # Only keyless digest state can leave the module: key-bearing state would expose keys.
            raise PKCS11Error(CKR.STATE_UNSAVEABLE)
        op = session.ops["digest"]
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
