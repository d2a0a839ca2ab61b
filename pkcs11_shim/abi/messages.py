"""Message-based encryption and signing (PKCS#11 3.0 §5.9, §5.11, §5.14, §5.16).

A message operation is started by C_Message*Init with a mechanism whose registry row offers a
`message_<kind>` factory (and the matching CKF_MESSAGE_* flag); the per-message parameter (for
AES-GCM the IV and tag buffers) is handed to the operation as the C pointer it is, because some of
its fields are outputs (the tag) that must be written back into the caller's structure.

State (the model of `operations`): the operation lives from C_Message*Init to C_Message*Final (or
C_SessionCancel with its CKF_MESSAGE_* flag). C_Message*Init takes no parameter for AES-GCM/CCM (3.0
§2.14.x: "Call C_MessageEncryptInit() for CKM_AES_GCM mechanism key K"; NSS and Kryoptic alike);
C_*Message, C_*MessageBegin and every C_*MessageNext take the message's parameter and refuse a NULL
one (CKR_MECHANISM_PARAM_INVALID). A length query computes nothing; an error in C_*MessageNext ends
the message begun, not the operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emulator.acl import Action

from .. import library, operations
from ..constants import (
    CKF_MESSAGE_DECRYPT,
    CKF_MESSAGE_ENCRYPT,
    CKF_MESSAGE_SIGN,
    CKF_MESSAGE_VERIFY,
    CKR,
)
from .. import mechanism_policy
from ..errors import PKCS11Error
from ..mechanisms.registry import REGISTRY
from ..operations import check_key_for
from . import marshal, mechanism_params
from .handlers import handler

#: kind -> (mechanism flag, key usage attribute, module action)
MESSAGE_KINDS = {
    "message_encrypt": (CKF_MESSAGE_ENCRYPT, 0x104, Action.ENCRYPT),  # CKA_ENCRYPT
    "message_decrypt": (CKF_MESSAGE_DECRYPT, 0x105, Action.DECRYPT),  # CKA_DECRYPT
    "message_sign": (CKF_MESSAGE_SIGN, 0x108, Action.SIGN),  # CKA_SIGN
    "message_verify": (CKF_MESSAGE_VERIFY, 0x10A, Action.VERIFY),  # CKA_VERIFY
}


def _session(h_session: int) -> Any:
    return library.state().sessions.get(h_session)


def _message_init(kind: str) -> Any:
    flag, usage, action = MESSAGE_KINDS[kind]

    def init(h_session: int, p_mechanism: Any, h_key: int) -> None:
        session = _session(h_session)
        # The AEAD rows take no parameter at C_Message*Init (each message brings its own), while
        # their C_EncryptInit parameter reader would refuse NULL: read it only when one is given.
        if p_mechanism != marshal.ffi.NULL and int(p_mechanism.ulParameterLen) == 0:
            mechanism, param = int(p_mechanism.mechanism), None
        else:
            mechanism, param = marshal.read_mechanism(p_mechanism)
        with session.lock:
            if kind in session.ops:
                raise PKCS11Error(CKR.OPERATION_ACTIVE)
            spec = REGISTRY.get(mechanism)
            mechanism_policy.require_allowed(session.slot_id, mechanism)
            factory = getattr(spec, kind, None)
            if factory is None or not spec.flags & flag:
                raise PKCS11Error(CKR.MECHANISM_INVALID)
            key = session.key(h_key)
            check_key_for(session, spec, key, usage, None)
            material = session.token.objects.module.use(key.key, action)
            session.ops[kind] = operations.ActiveOperation(kind, spec, factory(material, param), key)

    return init


def _op(session: Any, kind: str) -> Any:
    return operations.active(session, kind).op


@contextmanager
def _ends_message(op: Any) -> Iterator[None]:
    """An error in C_*MessageNext ends the message in progress, not the operation (see
    `operations`); CKR_BUFFER_TOO_SMALL keeps it, as everywhere."""
    try:
        yield
    except PKCS11Error as exc:
        if exc.rv != CKR.BUFFER_TOO_SMALL:
            op.abandon()
        raise


def _final(kind: str) -> Any:
    def final(h_session: int) -> None:
        session = _session(h_session)
        with session.lock:
            _op(session, kind)
            session.ops.pop(kind, None)

    return final


def _message_param(p_param: Any, ul_param: int) -> mechanism_params.CMessageParam:
    return mechanism_params.CMessageParam(marshal.ffi, p_param, ul_param)


def _one_message(kind: str) -> Any:
    """C_EncryptMessage / C_DecryptMessage: one whole message with its parameter and AAD."""

    def call(h_session: int, p_param: Any, ul_param: int, p_aad: Any, ul_aad: int, p_in: Any, ul_in: int,
             p_out: Any, pul_out: Any) -> int:
        session = _session(h_session)
        with session.lock:
            op = _op(session, kind)
            capacity = marshal.output_capacity(p_out, pul_out)
            aad = marshal.read_bytes(p_aad, ul_aad)
            data = marshal.read_bytes(p_in, ul_in)
            out = op.message(_message_param(p_param, ul_param), aad, data, capacity)
            return marshal.deliver(p_out, pul_out, out)

    return call


def _begin(kind: str) -> Any:
    def call(h_session: int, p_param: Any, ul_param: int, p_aad: Any, ul_aad: int) -> None:
        session = _session(h_session)
        with session.lock:
            _op(session, kind).begin(_message_param(p_param, ul_param), marshal.read_bytes(p_aad, ul_aad))

    return call


def _next(kind: str) -> Any:
    def call(h_session: int, p_param: Any, ul_param: int, p_in: Any, ul_in: int, p_out: Any, pul_out: Any,
             flags: int) -> int:
        session = _session(h_session)
        with session.lock:
            op = _op(session, kind)
            with _ends_message(op):
                capacity = marshal.output_capacity(p_out, pul_out)
                out = op.next(_message_param(p_param, ul_param), marshal.read_bytes(p_in, ul_in), capacity, flags)
                return marshal.deliver(p_out, pul_out, out)

    return call


def _sign_message(h_session: int, p_param: Any, ul_param: int, p_data: Any, ul_data: int, p_sig: Any,
                  pul_sig: Any) -> int:
    session = _session(h_session)
    with session.lock:
        op = _op(session, "message_sign")
        capacity = marshal.output_capacity(p_sig, pul_sig)
        out = op.message(_message_param(p_param, ul_param), b"", marshal.read_bytes(p_data, ul_data), capacity)
        return marshal.deliver(p_sig, pul_sig, out)


def _sign_begin(kind: str) -> Any:
    def call(h_session: int, p_param: Any, ul_param: int) -> None:
        session = _session(h_session)
        with session.lock:
            _op(session, kind).begin(_message_param(p_param, ul_param), b"")

    return call


def _sign_next(h_session: int, p_param: Any, ul_param: int, p_data: Any, ul_data: int, p_sig: Any,
               pul_sig: Any) -> int:
    session = _session(h_session)
    with session.lock:
        op = _op(session, "message_sign")
        last = pul_sig != marshal.ffi.NULL
        capacity = marshal.output_capacity(p_sig, pul_sig) if last else None
        out = op.next(_message_param(p_param, ul_param), marshal.read_bytes(p_data, ul_data), capacity, int(last))
        return marshal.deliver(p_sig, pul_sig, out) if last else CKR.OK


def _verify_message(h_session: int, p_param: Any, ul_param: int, p_data: Any, ul_data: int, p_sig: Any,
                    ul_sig: int) -> None:
    session = _session(h_session)
    with session.lock:
        _op(session, "message_verify").verify(
            _message_param(p_param, ul_param), marshal.read_bytes(p_data, ul_data), marshal.read_bytes(p_sig, ul_sig))


def _verify_next(h_session: int, p_param: Any, ul_param: int, p_data: Any, ul_data: int, p_sig: Any,
                 ul_sig: int) -> None:
    session = _session(h_session)
    with session.lock:
        signature = marshal.read_bytes(p_sig, ul_sig) if p_sig != marshal.ffi.NULL else None
        _op(session, "message_verify").verify_next(
            _message_param(p_param, ul_param), marshal.read_bytes(p_data, ul_data), signature)


for _name, _fn in {
    "C_MessageEncryptInit": _message_init("message_encrypt"),
    "C_EncryptMessage": _one_message("message_encrypt"),
    "C_EncryptMessageBegin": _begin("message_encrypt"),
    "C_EncryptMessageNext": _next("message_encrypt"),
    "C_MessageEncryptFinal": _final("message_encrypt"),
    "C_MessageDecryptInit": _message_init("message_decrypt"),
    "C_DecryptMessage": _one_message("message_decrypt"),
    "C_DecryptMessageBegin": _begin("message_decrypt"),
    "C_DecryptMessageNext": _next("message_decrypt"),
    "C_MessageDecryptFinal": _final("message_decrypt"),
    "C_MessageSignInit": _message_init("message_sign"),
    "C_SignMessage": _sign_message,
    "C_SignMessageBegin": _sign_begin("message_sign"),
    "C_SignMessageNext": _sign_next,
    "C_MessageSignFinal": _final("message_sign"),
    "C_MessageVerifyInit": _message_init("message_verify"),
    "C_VerifyMessage": _verify_message,
    "C_VerifyMessageBegin": _sign_begin("message_verify"),
    "C_VerifyMessageNext": _verify_next,
    "C_MessageVerifyFinal": _final("message_verify"),
}.items():
    handler(_name)(_fn)
