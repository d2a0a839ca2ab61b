"""The PKCS#11 3.2 functions (CK_FUNCTION_LIST_3_2 beyond 3.0): key encapsulation, signature
verification with the signature given first, session validation flags, the asynchronous-operation
calls, and authenticated key wrapping (the 3.2 parameter readers are in `mechanism_params`).

Decisions, each from the 3.2 text:
- C_VerifySignature*: the existing verify rows and operation objects, under an operation kind of its
  own ("verify_signature"), so it can run beside a C_VerifyInit operation; the signature given to
  C_VerifySignatureInit is held by the operation and checked at C_VerifySignature /
  C_VerifySignatureFinal. Every mechanism with CKF_VERIFY works.
- C_GetSessionValidationFlags: CKS_LAST_VALIDATION_OK is the only type; this token claims no
  validation (it has no CKO_VALIDATION objects), so the flags are 0.
- C_AsyncComplete / C_AsyncGetID / C_AsyncJoin: this token never opens asynchronous sessions
  (CKF_ASYNC_SESSION is refused) and never returns CKR_PENDING, so no asynchronous operation can
  exist: after the session and arguments are checked they answer CKR_SESSION_ASYNC_NOT_SUPPORTED.
- C_WrapKeyAuthenticated / C_UnwrapKeyAuthenticated: the AEAD wrap rows (CKM_AES_GCM) with the
  associated data as the AEAD's AAD. The mechanism parameter's own AAD field must then be empty,
  so that the data authenticated is the data the caller named.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import keymgmt, kem, library, operations
from ..constants import CKR, CKS_LAST_VALIDATION_OK
from ..errors import PKCS11Error
from . import marshal
from .handlers import handler
from .keys import make_key, wrap_into


def _session(h_session: int) -> Any:
    return library.state().sessions.get(h_session)


# --- C_EncapsulateKey / C_DecapsulateKey (3.2 §5.18) ----------------------------------------------

@handler("C_EncapsulateKey")
def c_encapsulate_key(h_session: int, p_mechanism: Any, h_public: int, p_template: Any, ul_count: int,
                      p_ciphertext: Any, pul_ciphertext: Any, ph_key: Any) -> int:
    session = _session(h_session)
    mechanism, param = marshal.read_mechanism(p_mechanism)
    raw = marshal.read_template(p_template, ul_count)
    capacity = marshal.output_capacity(p_ciphertext, pul_ciphertext)
    marshal.require(ph_key)
    ciphertext, handle = kem.encapsulate_key(session, mechanism, param, h_public, raw, capacity)
    if handle is None:  # length query or short buffer: nothing was made
        pul_ciphertext[0] = ciphertext
        return CKR.OK if capacity is None else CKR.BUFFER_TOO_SMALL
    ph_key[0] = handle
    return marshal.deliver(p_ciphertext, pul_ciphertext, ciphertext)


@handler("C_DecapsulateKey")
def c_decapsulate_key(h_session: int, p_mechanism: Any, h_private: int, p_template: Any, ul_count: int,
                      p_ciphertext: Any, ul_ciphertext: int, ph_key: Any) -> None:
    ciphertext = marshal.read_bytes(p_ciphertext, ul_ciphertext)
    make_key(h_session, p_mechanism, p_template, ul_count, ph_key, lambda session, mechanism, param, raw:
             kem.decapsulate_key(session, mechanism, param, h_private, raw, ciphertext))


# --- C_VerifySignature* (3.2 §5.15) ---------------------------------------------------------------

KIND = "verify_signature"


class SignatureFirstVerify:
    """A verify operation whose signature came at init: the VerifyOp calls take it from here."""

    def __init__(self, op: Any, signature: bytes) -> None:
        self._op, self._signature = op, signature

    def update(self, data: bytes) -> None:
        self._op.update(data)

    def oneshot(self, data: bytes, _signature: bytes) -> None:
        self._op.oneshot(data, self._signature)

    def final(self, _signature: bytes) -> None:
        self._op.final(self._signature)


@handler("C_VerifySignatureInit")
def c_verify_signature_init(h_session: int, p_mechanism: Any, h_key: int, p_signature: Any,
                            ul_signature: int) -> None:
    session = _session(h_session)
    if p_mechanism == marshal.ffi.NULL:
        operations.end(session, KIND)  # as every *Init: a NULL mechanism ends the operation
        return
    mechanism, param = marshal.read_mechanism(p_mechanism)
    signature = marshal.read_bytes(p_signature, ul_signature)
    with session.lock:
        operations.begin(session, KIND, mechanism, param, h_key)
        active = session.ops[KIND]
        active.op = SignatureFirstVerify(active.op, signature)


@handler("C_VerifySignature")
def c_verify_signature(h_session: int, p_data: Any, ul_data: int) -> None:
    session = _session(h_session)
    with operations.guard(session, KIND):
        operations.verify(session, KIND, "oneshot", marshal.read_bytes(p_data, ul_data), b"")


@handler("C_VerifySignatureUpdate")
def c_verify_signature_update(h_session: int, p_part: Any, ul_part: int) -> None:
    session = _session(h_session)
    with operations.guard(session, KIND):
        operations.absorb(session, KIND, marshal.read_bytes(p_part, ul_part))


@handler("C_VerifySignatureFinal")
def c_verify_signature_final(h_session: int) -> None:
    operations.verify(_session(h_session), KIND, "final", b"", b"")


# --- C_GetSessionValidationFlags (3.2 §5.6) -------------------------------------------------------

@handler("C_GetSessionValidationFlags")
def c_get_session_validation_flags(h_session: int, flags_type: int, p_flags: Any) -> None:
    _session(h_session)
    marshal.require(p_flags)
    if flags_type != CKS_LAST_VALIDATION_OK:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, f"validation flags type 0x{flags_type:x}")
    p_flags[0] = 0  # no validated operation: this token holds no CKO_VALIDATION objects


# --- asynchronous operations (3.2 §5.21) ----------------------------------------------------------

def _no_async(h_session: int, p_function_name: Any, *required: Any) -> None:
    _session(h_session)
    marshal.require(p_function_name)
    for ptr in required:
        marshal.require(ptr)
    raise PKCS11Error(CKR.SESSION_ASYNC_NOT_SUPPORTED)


@handler("C_AsyncComplete")
def c_async_complete(h_session: int, p_function_name: Any, p_result: Any) -> None:
    _no_async(h_session, p_function_name, p_result)


@handler("C_AsyncGetID")
def c_async_get_id(h_session: int, p_function_name: Any, pul_id: Any) -> None:
    _no_async(h_session, p_function_name, pul_id)


@handler("C_AsyncJoin")
def c_async_join(h_session: int, p_function_name: Any, ul_id: int, p_data: Any, ul_data: int) -> None:
    marshal.read_bytes(p_data, ul_data)
    _no_async(h_session, p_function_name)


# --- C_WrapKeyAuthenticated / C_UnwrapKeyAuthenticated (3.2 §5.18) --------------------------------

def _with_associated_data(param: Any, associated: bytes) -> Any:
    if not dataclasses.is_dataclass(param) or not hasattr(param, "aad"):
        raise PKCS11Error(CKR.MECHANISM_INVALID, "authenticated wrapping needs an AEAD mechanism (CKM_AES_GCM)")
    if param.aad:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID,
                          "give the associated data as the function's argument, not in the parameter")
    return dataclasses.replace(param, aad=associated)


@handler("C_WrapKeyAuthenticated")
def c_wrap_key_authenticated(h_session: int, p_mechanism: Any, h_wrapping: int, h_key: int, p_ad: Any,
                             ul_ad: int, p_wrapped: Any, pul_wrapped: Any) -> int:
    session = _session(h_session)
    mechanism, param = marshal.read_mechanism(p_mechanism)
    param = _with_associated_data(param, marshal.read_bytes(p_ad, ul_ad))
    return wrap_into(session, mechanism, param, h_wrapping, h_key, p_wrapped, pul_wrapped)


@handler("C_UnwrapKeyAuthenticated")
def c_unwrap_key_authenticated(h_session: int, p_mechanism: Any, h_unwrapping: int, p_wrapped: Any,
                               ul_wrapped: int, p_template: Any, ul_count: int, p_ad: Any, ul_ad: int,
                               ph_key: Any) -> None:
    associated = marshal.read_bytes(p_ad, ul_ad)
    wrapped = marshal.read_bytes(p_wrapped, ul_wrapped)
    make_key(h_session, p_mechanism, p_template, ul_count, ph_key, lambda session, mechanism, param, raw:
             keymgmt.unwrap_key(session, mechanism, _with_associated_data(param, associated), h_unwrapping,
                                wrapped, raw))
