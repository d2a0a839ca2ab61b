"""nShield's vendor entry points for K-of-N logins (exported as C symbols, in no function table).

    C_LoginBegin(hSession, userType, pulK, pulN)        how many cards the slot's card set needs
    C_LoginNext(hSession, userType, pPin, ulPinLen, pulSharesLeft)   read the next card with its PIN
    C_LoginEnd(hSession, userType)                      combine the shares: the token is logged in

Cards are read in the order they sit in the virtual reader (lowest card number first, skipping the
ones already read); a softcard answers K = N = 1 and its passphrase is the one "card".
On the accelerator slot CKU_SO logs in with the world's ACS quorum (emulator.transfer.AcsLogin),
the authority KeyTransferRemote -ModifyAcls needs to rewrite a key's ACL (management.copy_object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import library
from ..constants import CKR, UserType
from ..errors import PKCS11Error
from . import marshal
from .handlers import handler


@dataclass
class _PassphraseLogin:
    """A softcard (or C_InitToken token) through the K/N calls: one share, its passphrase."""

    module: Any
    token: str
    pin: bytes | None = None
    k: int = 1
    n: int = 1

    @property
    def left(self) -> int:
        return 0 if self.pin is not None else 1

    def next(self, pin: bytes) -> int:
        if self.pin is not None:
            raise PKCS11Error(CKR.OPERATION_ACTIVE, "the quorum is already complete")
        self.pin = pin
        return 0

    def end(self) -> Any:
        if self.pin is None:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED)
        return self.module.login(self.token, "user", self.pin)


def _token_for(h_session: int, user_type: int) -> tuple[Any, Any, Any]:
    lib = library.state()
    session = lib.sessions.get(h_session)
    token = session.token
    if user_type == UserType.SO and token.is_accelerator:
        return lib, session, token
    if user_type != UserType.USER:
        raise PKCS11Error(CKR.USER_TYPE_INVALID, "card-set logins are for CKU_USER (CKU_SO: the accelerator's ACS)")
    if token.is_accelerator or not token.initialized:
        raise PKCS11Error(CKR.USER_TYPE_INVALID, "this slot has no card set to log in to")
    return lib, session, token


@handler("C_LoginBegin")
def c_login_begin(h_session: int, user_type: int, pul_k: Any, pul_n: Any) -> None:
    lib, _session, token = _token_for(h_session, user_type)
    marshal.require(pul_k)
    marshal.require(pul_n)
    with token.lock:
        if token.login == "user":
            raise PKCS11Error(CKR.USER_ALREADY_LOGGED_IN)
        if token.login is not None:
            raise PKCS11Error(CKR.USER_ANOTHER_ALREADY_LOGGED_IN)
        module = lib.module
        if user_type == UserType.SO:
            if any(not s.rw for s in lib.sessions.for_token(token)):
                raise PKCS11Error(CKR.SESSION_READ_ONLY_EXISTS)
            from emulator.transfer import AcsLogin

            pending = AcsLogin.begin(module.kmdata)
            k, n = pending.k, pending.n
        elif module.cardsets.exists(token.token_hash):
            pending: Any = module.cardsets.begin(token.token_hash)
            k, n = pending.cardset.k, pending.cardset.n
        else:
            pending = _PassphraseLogin(module, token.token_hash)
            k, n = 1, 1
        token.pending_quorum = pending
    pul_k[0] = k
    pul_n[0] = n


@handler("C_LoginNext")
def c_login_next(h_session: int, user_type: int, p_pin: Any, ul_pin_len: int, pul_shares_left: Any) -> None:
    _lib, _session, token = _token_for(h_session, user_type)
    marshal.require(pul_shares_left)
    pin = marshal.read_optional_bytes(p_pin, ul_pin_len)
    if pin is None:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "no protected authentication path")
    with token.lock:
        pending = getattr(token, "pending_quorum", None)
        if pending is None:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED, "C_LoginBegin first")
        left = pending.next(pin)
    pul_shares_left[0] = left


@handler("C_LoginEnd")
def c_login_end(h_session: int, user_type: int) -> None:
    lib, _session, token = _token_for(h_session, user_type)
    with token.lock:
        pending = getattr(token, "pending_quorum", None)
        if pending is None:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED, "C_LoginBegin first")
        token.pending_quorum = None
        try:
            auth = pending.end()
        finally:
            lib.slots.refresh_info(token)
        if user_type == UserType.SO:
            token.login = "so"  # the ACS authority is the login; accelerator objects need no token key
            return
        token.login, token.auth = "user", auth
        token.objects.sync(auth, force=True)
