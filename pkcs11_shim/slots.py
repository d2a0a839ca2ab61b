"""Slots and tokens, laid out as nShield's cknfast does in load-sharing mode.

Slot 0 is the module ("accelerator") slot: module-protected keys, no login, never removable.
Each logical token made by C_InitToken (a softcard-like token of the emulator) gets the next slot
number, in creation order, so slot numbers do not jump when a token is initialised; and one more
slot always offers an uninitialised token, as SoftHSM2 does, so test suites can run
`--init-token --slot N` and then find a fresh spare slot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator import errors as emu

from .constants import CKR, SlotFlag, TokenFlag
from .errors import PKCS11Error
from .object_store import ObjectStore

if TYPE_CHECKING:
    from .library import Library

ACCELERATOR_SLOT = 0
ACCELERATOR_LABEL = "loadshared accelerator"
MANUFACTURER = "softshield"
MODEL = "nShield emulator"
MAX_PIN_LEN = 256  # what cknfast reports as CK_TOKEN_INFO.ulMaxPinLen
MIN_PIN_LEN = 4


@dataclass
class Token:
    """What one slot holds, and this application's login state on it (§5.6.8: per token)."""

    slot_id: int
    token_hash: str | None  # None: the accelerator; "" : the spare uninitialised token
    label: str
    serial: str
    objects: ObjectStore
    login: str | None = None  # "so" | "user"
    auth: Any = None  # the emulator's TokenAuth while logged in
    info: Any = None  # the emulator's TokenInfo, refreshed on demand
    lock: threading.RLock = field(default_factory=threading.RLock)
    removable: bool = False  # a card-reader slot (CKNFAST_LOADSHARING=0): CKF_REMOVABLE_DEVICE
    #: CKNFAST_ASSUME_SINGLE_PROCESS=1: token objects are read once (public, then private at login)
    #: and other processes' later writes are not looked for, as cknfast does by default.
    single_process: bool = False
    _synced: set = field(default_factory=set)

    def sync(self, auth: Any) -> None:
        """Bring this slot's objects up to date with kmdata (see `single_process`)."""
        with_private = auth is not None
        if self.single_process and with_private in self._synced:
            return
        self.objects.sync(auth)
        self._synced.add(with_private)

    @property
    def is_accelerator(self) -> bool:
        return self.token_hash is None

    @property
    def initialized(self) -> bool:
        return self.token_hash != ""

    def flags(self) -> int:
        flags = TokenFlag.RNG | TokenFlag.DUAL_CRYPTO_OPERATIONS
        if not self.initialized:
            return flags
        flags |= TokenFlag.TOKEN_INITIALIZED
        if self.is_accelerator:
            return flags
        flags |= TokenFlag.LOGIN_REQUIRED
        info = self.info
        if info is not None:
            if info.user_pin_set:
                flags |= TokenFlag.USER_PIN_INITIALIZED
            flags |= _counter_flags(info.user_failures, info.user_locked, user=True)
            flags |= _counter_flags(info.so_failures, info.so_locked, user=False)
        return flags


def _counter_flags(failures: int, locked: bool, *, user: bool) -> int:
    from emulator.tokens import MAX_PIN_FAILURES

    names = ("USER_PIN_COUNT_LOW", "USER_PIN_FINAL_TRY", "USER_PIN_LOCKED") if user else (
        "SO_PIN_COUNT_LOW", "SO_PIN_FINAL_TRY", "SO_PIN_LOCKED")
    if locked:
        return TokenFlag[names[2]]
    if failures and failures == MAX_PIN_FAILURES - 1:
        return TokenFlag[names[1]] | TokenFlag[names[0]]
    if failures:
        return TokenFlag[names[0]]
    return 0


class SlotTable:
    def __init__(self, library: "Library") -> None:
        self.library = library
        self.module = library.module
        self._tokens: dict[int, Token] = {}
        self._by_hash: dict[str, Token] = {}
        self._spare: Token | None = None
        self._lock = library.lock  # the application's mutexes when it gave us some (§5.4.1)
        from . import preload_state

        self.preloaded = preload_state.read(self.module, library.config)  # softshield preload
        self.refresh()

    def _visible(self, infos: list) -> list:
        """The tokens this process shows as slots (nShield's load-sharing mode, and CKNFAST_CARDSET_HASH).

        CKNFAST_LOADSHARING (our default 1, as under preload): every card set and softcard is a
        virtual slot. CKNFAST_LOADSHARING=0: the module's card reader only, i.e. card sets whose
        cards sit in the virtual reader, as removable slots; softcards and C_InitToken tokens
        need load sharing and are not shown."""
        config = self.library.config
        wanted = (config.get("CKNFAST_CARDSET_HASH") or "").strip().lower()
        if wanted:
            infos = [i for i in infos if i.hash == wanted]
        if self.load_sharing:
            return infos
        return [i for i in infos if self.module.cardsets.exists(i.hash)
                and self.module.cardsets.reader.cards_of(i.hash)]

    @property
    def load_sharing(self) -> bool:
        value = self.library.config.get("CKNFAST_LOADSHARING")
        return value is None or value.strip() == "" or self.library.config.flag("CKNFAST_LOADSHARING")

    def refresh(self) -> None:
        """Re-read the module's token list: tokens made by other processes appear here."""
        with self._lock:
            infos = self._visible(sorted(self.module.list_tokens(), key=lambda t: (t.created, t.hash)))
            if not self.library.config.no_accelerator_slots and ACCELERATOR_SLOT not in self._tokens:
                self._tokens[ACCELERATOR_SLOT] = Token(
                    ACCELERATOR_SLOT, None, ACCELERATOR_LABEL, self.module.esn.replace("-", ""),
                    ObjectStore(self.module, None), single_process=self.library.config.assume_single_process,
                )
            next_slot = ACCELERATOR_SLOT + 1
            for info in infos:
                token = self._by_hash.get(info.hash)
                if token is None:
                    if self._spare is not None and self._spare.slot_id == next_slot:
                        self._spare = None  # another process initialised a token into our spare's number
                    token = Token(next_slot, info.hash, info.label, info.serial,
                                  ObjectStore(self.module, info.hash), removable=not self.load_sharing,
                                  single_process=self.library.config.assume_single_process)
                    self._by_hash[info.hash] = token
                    self._tokens[next_slot] = token
                token.info = info
                token.label = info.label
                next_slot = max(next_slot, token.slot_id + 1)
            if not self.load_sharing or self.library.config.get("CKNFAST_CARDSET_HASH"):
                # C_InitToken makes softcard-like tokens: a load-sharing feature in nShield's PKCS#11; and a
                # CKNFAST_CARDSET_HASH process sees that one set only.
                return
            if self._spare is None or self._spare.slot_id < next_slot:
                if self._spare is not None:
                    self._tokens.pop(self._spare.slot_id, None)
                self._spare = Token(next_slot, "", "", "", ObjectStore(self.module, ""))
                self._tokens[next_slot] = self._spare

    def slot_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._tokens)

    def get(self, slot_id: int) -> Token:
        token = self._tokens.get(slot_id)
        if token is None:
            raise PKCS11Error(CKR.SLOT_ID_INVALID)
        return token

    def slot_flags(self, token: Token) -> int:
        flags = SlotFlag.TOKEN_PRESENT
        if token.is_accelerator:
            flags |= SlotFlag.HW_SLOT
        if token.removable:
            flags |= SlotFlag.REMOVABLE_DEVICE | SlotFlag.HW_SLOT
        return flags

    def init_token(self, slot_id: int, so_pin: bytes, label: str) -> None:
        """C_InitToken: the spare becomes a token; an existing token is re-initialised."""
        with self._lock:
            token = self.get(slot_id)
            if token.is_accelerator:
                # The module slot is the world's; nShield refuses to initialise it too.
                raise PKCS11Error(CKR.TOKEN_WRITE_PROTECTED, "the accelerator slot cannot be initialised")
            if self.library.sessions.count_for(slot_id):
                raise PKCS11Error(CKR.SESSION_EXISTS)
            if not MIN_PIN_LEN <= len(so_pin) <= MAX_PIN_LEN:
                raise PKCS11Error(CKR.PIN_LEN_RANGE)
            if token.initialized:
                info = self.module.init_token(label, so_pin, token.token_hash)
                token.objects.forget_all()
                token.login, token.auth = None, None
            else:
                info = self.module.init_token(label, so_pin, None)
                token.token_hash = info.hash
                token.serial = info.serial
                token.objects = ObjectStore(self.module, info.hash)
                self._by_hash[info.hash] = token
                self._spare = None
            token.info = info
            token.label = info.label
            self.refresh()

    def refresh_info(self, token: Token) -> None:
        """The token's record read again (PIN flags and counters after a login or PIN change): that
        one file, not every token and card set of the world (two reads of a kmdata directory that
        may hold thousands of key files). A record that is gone or fails to verify leaves the last
        info in place, as a listing that skips it would."""
        if token.token_hash:
            try:
                info = self.module.token_info(token.token_hash)
            except (emu.TokenNotFound, emu.BlobInvalid):
                return
            token.info = info
            token.label = info.label
