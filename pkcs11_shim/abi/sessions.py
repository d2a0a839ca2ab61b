"""Session management (PKCS#11 3.0 §5.6)."""

from __future__ import annotations

from typing import Any

from .. import library, operations
from ..constants import CKR
from ..errors import PKCS11Error
from . import marshal
from .handlers import handler


@handler("C_OpenSession")
def c_open_session(slot_id: int, flags: int, p_application: Any, notify: Any, ph_session: Any) -> None:
    lib = library.state()
    token = lib.slots.get(slot_id)
    marshal.require(ph_session)
    ph_session[0] = lib.sessions.open(token, flags).handle


@handler("C_CloseSession")
def c_close_session(h_session: int) -> None:
    lib = library.state()
    lib.sessions.close(lib.sessions.get(h_session))


@handler("C_CloseAllSessions")
def c_close_all_sessions(slot_id: int) -> None:
    lib = library.state()
    lib.sessions.close_all(lib.slots.get(slot_id))


@handler("C_GetSessionInfo")
def c_get_session_info(h_session: int, p_info: Any) -> None:
    session = library.state().sessions.get(h_session)
    marshal.require(p_info)
    p_info.slotID = session.slot_id
    p_info.state = session.state
    p_info.flags = session.flags
    p_info.ulDeviceError = 0


@handler("C_GetOperationState")
def c_get_operation_state(h_session: int, p_state: Any, pul_len: Any) -> int:
    session = library.state().sessions.get(h_session)
    marshal.require(pul_len)
    return marshal.deliver(p_state, pul_len, operations.get_state(session))


@handler("C_SetOperationState")
def c_set_operation_state(h_session: int, p_state: Any, ul_len: int, h_enc_key: int, h_auth_key: int) -> None:
    session = library.state().sessions.get(h_session)
    marshal.require(p_state)  # §5.6: pOperationState is the state to restore; NULL is no state
    if h_enc_key or h_auth_key:
        raise PKCS11Error(CKR.KEY_NOT_NEEDED)  # digest state carries no key
    operations.set_state(session, marshal.read_bytes(p_state, ul_len, code=CKR.SAVED_STATE_INVALID))


@handler("C_Login")
def c_login(h_session: int, user_type: int, p_pin: Any, ul_pin_len: int) -> None:
    lib = library.state()
    session = lib.sessions.get(h_session)
    lib.sessions.login(session, user_type, marshal.read_optional_bytes(p_pin, ul_pin_len))


@handler("C_LoginUser")
def c_login_user(h_session: int, user_type: int, p_pin: Any, ul_pin_len: int, p_username: Any,
                 ul_username_len: int) -> None:
    lib = library.state()
    session = lib.sessions.get(h_session)
    # Tokens have one user each; a user name, when given, must name the token's user (its label).
    username = marshal.read_bytes(p_username, ul_username_len)
    if username and username.decode("utf-8", "replace") not in ("", session.token.label):
        raise PKCS11Error(CKR.PIN_INCORRECT, "unknown user name")
    lib.sessions.login(session, user_type, marshal.read_optional_bytes(p_pin, ul_pin_len))


@handler("C_Logout")
def c_logout(h_session: int) -> None:
    lib = library.state()
    lib.sessions.logout(lib.sessions.get(h_session))


@handler("C_SessionCancel")
def c_session_cancel(h_session: int, flags: int) -> None:
    session = library.state().sessions.get(h_session)
    operations.cancel(session, flags)
