"""Sessions and login state (PKCS#11 3.0 §5.6).

Login state belongs to the application per token: every session on a token changes state together.
Each session holds at most one active operation per kind (encrypt, decrypt, digest, sign, verify,
find, ...); `operations.py` runs them.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator import errors as emu

from .constants import (CKF_ASYNC_SESSION, CKR, CKU_CONTEXT_SPECIFIC, Attribute, ObjectClass, SessionFlag,
                        SessionState, UserType)
from .errors import PKCS11Error
from .object_store import require_object
from .objects import P11Object
from .slots import MAX_PIN_LEN, MIN_PIN_LEN, Token

if TYPE_CHECKING:
    from .library import Library

_handles = itertools.count(1)


@dataclass(eq=False)
class Session:
    handle: int
    token: Token
    rw: bool
    ops: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: Checks of repeated calls that passed (keymgmt: wrap and unwrap), each valid only while the
    #: objects it was made against are unchanged; a cache, never a source of permission.
    checked: dict[Any, Any] = field(default_factory=dict)

    @property
    def slot_id(self) -> int:
        return self.token.slot_id

    @property
    def state(self) -> SessionState:
        login = self.token.login
        if login == "so":
            return SessionState.RW_SO_FUNCTIONS
        if login == "user":
            return SessionState.RW_USER_FUNCTIONS if self.rw else SessionState.RO_USER_FUNCTIONS
        return SessionState.RW_PUBLIC_SESSION if self.rw else SessionState.RO_PUBLIC_SESSION

    @property
    def flags(self) -> int:
        return SessionFlag.SERIAL_SESSION | (SessionFlag.RW_SESSION if self.rw else 0)

    @property
    def user_logged_in(self) -> bool:
        return self.token.login == "user"

    @property
    def is_so(self) -> bool:
        return self.token.login == "so"

    # --- objects as this session sees them -------------------------------------------------------
    def sync_objects(self) -> None:
        self.token.sync(self.token.auth if self.user_logged_in else None)

    def object(self, handle: int, *, code: int = CKR.OBJECT_HANDLE_INVALID) -> P11Object:
        obj = self.token.objects.get(handle)
        if obj is None:
            self.sync_objects()
            obj = require_object(self.token.objects, handle, code=code)
        if obj.is_private and not self.user_logged_in:  # private objects only for a logged-in user
            raise PKCS11Error(code)
        return obj

    def key(self, handle: int, *, code: int = CKR.KEY_HANDLE_INVALID) -> P11Object:
        obj = self.object(handle, code=code)
        if obj.peek(Attribute.CLASS) not in (
            ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY
        ):
            raise PKCS11Error(code)
        return obj

    def require_rw_for(self, attrs: dict[int, Any]) -> None:
        """Token objects need a R/W session; private objects need the user logged in (§4.4)."""
        if attrs.get(Attribute.TOKEN) and not self.rw:
            raise PKCS11Error(CKR.SESSION_READ_ONLY)
        if attrs.get(Attribute.PRIVATE) and not self.user_logged_in:
            raise PKCS11Error(CKR.USER_NOT_LOGGED_IN)


class SessionTable:
    def __init__(self, library: "Library") -> None:
        self.library = library
        self._sessions: dict[int, Session] = {}
        self._lock = library.lock  # the application's mutexes when it gave us some (§5.4.1)

    def open(self, token: Token, flags: int) -> Session:
        if not flags & SessionFlag.SERIAL_SESSION:
            raise PKCS11Error(CKR.SESSION_PARALLEL_NOT_SUPPORTED)
        if flags & CKF_ASYNC_SESSION:
            # PKCS#11 3.2: the token is synchronous (its CK_TOKEN_INFO has no CKF_ASYNC_SESSION_SUPPORTED).
            raise PKCS11Error(CKR.SESSION_ASYNC_NOT_SUPPORTED)
        if not token.initialized:
            raise PKCS11Error(CKR.TOKEN_NOT_RECOGNIZED)
        rw = bool(flags & SessionFlag.RW_SESSION)
        with self._lock:
            if not rw and token.login == "so":
                raise PKCS11Error(CKR.SESSION_READ_WRITE_SO_EXISTS)
            session = Session(next(_handles), token, rw)
            self._sessions[session.handle] = session
            return session

    def get(self, handle: int) -> Session:
        session = self._sessions.get(handle)
        if session is None:
            raise PKCS11Error(CKR.SESSION_HANDLE_INVALID)
        return session

    def for_token(self, token: Token) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions.values() if s.token is token]

    def count_for(self, slot_id: int) -> int:
        return sum(1 for s in list(self._sessions.values()) if s.slot_id == slot_id)

    def counts(self, token: Token) -> tuple[int, int]:
        sessions = self.for_token(token)
        return len(sessions), sum(1 for s in sessions if s.rw)

    def close(self, session: Session) -> None:
        with self._lock:
            if self._sessions.pop(session.handle, None) is None:
                raise PKCS11Error(CKR.SESSION_HANDLE_INVALID)
            session.ops.clear()
            session.checked.clear()
            session.token.objects.drop_session_objects(session.handle)
            # §5.6.3: closing the last session of a token logs the application out.
            if not any(s.token is session.token for s in self._sessions.values()):
                self._logout_token(session.token)

    def close_all(self, token: Token) -> None:
        for session in self.for_token(token):
            self.close(session)

    def close_all_everywhere(self) -> None:
        for session in list(self._sessions.values()):
            try:
                self.close(session)
            except PKCS11Error:
                pass

    # --- login -----------------------------------------------------------------------------------
    def login(self, session: Session, user_type: int, pin: bytes | None) -> None:
        token = session.token
        config = self.library.config
        if user_type not in (UserType.SO, UserType.USER, CKU_CONTEXT_SPECIFIC):
            raise PKCS11Error(CKR.USER_TYPE_INVALID)
        if user_type == CKU_CONTEXT_SPECIFIC:
            self._context_login(session, pin)
            return
        with token.lock:
            wanted = "so" if user_type == UserType.SO else "user"
            if token.login == wanted:
                raise PKCS11Error(CKR.USER_ALREADY_LOGGED_IN)
            if token.login is not None:
                raise PKCS11Error(CKR.USER_ANOTHER_ALREADY_LOGGED_IN)
            if wanted == "so" and any(not s.rw for s in self.for_token(token)):
                raise PKCS11Error(CKR.SESSION_READ_ONLY_EXISTS)
            if token.is_accelerator:
                # nShield: the module slot has no login; CKNFAST_FAKE_ACCELERATOR_LOGIN pretends.
                if config.fake_accelerator_login and wanted == "user":
                    token.login = "user"
                    return
                raise PKCS11Error(CKR.USER_PIN_NOT_INITIALIZED if wanted == "user" else CKR.PIN_INCORRECT)
            preloaded = self.library.slots.preloaded.get(token.token_hash)
            if preloaded is not None and wanted == "user":
                # nShield preload: the token is already loaded, the PIN given is not checked.
                token.login, token.auth = "user", preloaded
                token.objects.sync(preloaded, force=True)
                return
            if pin is None:
                raise PKCS11Error(CKR.ARGUMENTS_BAD, "no protected authentication path")
            if not 1 <= len(pin) <= MAX_PIN_LEN:
                raise PKCS11Error(CKR.PIN_LEN_RANGE if pin else CKR.PIN_INCORRECT)
            try:
                auth = self.library.module.login(token.token_hash, wanted, pin)
            except emu.PinNotInitialized:
                raise PKCS11Error(CKR.USER_PIN_NOT_INITIALIZED) from None
            finally:
                self.library.slots.refresh_info(token)
            token.login, token.auth = wanted, auth
            if wanted == "user":
                token.objects.sync(auth, force=True)

    def _context_login(self, session: Session, pin: bytes | None) -> None:
        """CKU_CONTEXT_SPECIFIC: re-authenticate right after an *Init on a CKA_ALWAYS_AUTHENTICATE key."""
        pending = [op for op in session.ops.values() if getattr(op, "needs_context_login", False)]
        if not pending:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
        token = session.token
        if token.login != "user" or pin is None:
            raise PKCS11Error(CKR.USER_NOT_LOGGED_IN)
        try:
            self.library.module.login(token.token_hash, "user", pin)
        except emu.AuthenticationFailed:
            self.library.slots.refresh_info(token)
            raise PKCS11Error(CKR.PIN_INCORRECT) from None
        for op in pending:
            op.needs_context_login = False

    def logout(self, session: Session) -> None:
        token = session.token
        with token.lock:
            if token.login is None:
                raise PKCS11Error(CKR.USER_NOT_LOGGED_IN)
            self._logout_token(token)

    def _logout_token(self, token: Token) -> None:
        with token.lock:
            if token.login is None:
                return
            token.login, token.auth = None, None
            token.objects.drop_private()
            for session in self.for_token(token):
                # Operations on private keys cannot continue without the login (§5.6.10).
                session.ops.clear()
                session.checked.clear()

    # --- PINs ------------------------------------------------------------------------------------
    def init_pin(self, session: Session, pin: bytes | None) -> None:
        token = session.token
        if not session.is_so:
            raise PKCS11Error(CKR.USER_NOT_LOGGED_IN)
        if pin is None or not MIN_PIN_LEN <= len(pin) <= MAX_PIN_LEN:
            raise PKCS11Error(CKR.PIN_LEN_RANGE)
        self.library.module.init_user_pin(token.token_hash, token.auth, pin)
        self.library.slots.refresh_info(token)

    def set_pin(self, session: Session, old: bytes | None, new: bytes | None) -> None:
        token = session.token
        if not session.rw:
            raise PKCS11Error(CKR.SESSION_READ_ONLY)
        if token.is_accelerator:
            raise PKCS11Error(CKR.USER_PIN_NOT_INITIALIZED)
        if old is None or new is None:
            raise PKCS11Error(CKR.ARGUMENTS_BAD)
        if not MIN_PIN_LEN <= len(new) <= MAX_PIN_LEN:
            raise PKCS11Error(CKR.PIN_LEN_RANGE)
        user = "so" if token.login == "so" else "user"
        try:
            auth = self.library.module.set_pin(token.token_hash, user, old, new)
        except emu.PinNotInitialized:
            raise PKCS11Error(CKR.USER_PIN_NOT_INITIALIZED) from None
        finally:
            self.library.slots.refresh_info(token)
        if token.login == user:
            token.auth = auth
