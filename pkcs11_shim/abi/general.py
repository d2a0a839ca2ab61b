"""General-purpose functions (PKCS#11 3.0 §5.4) and C_WaitForSlotEvent (§5.5)."""

from __future__ import annotations

import threading
import time
from typing import Any

from .. import library
from ..constants import CKF_DONT_BLOCK, CKR, InitFlag
from ..errors import PKCS11Error
from ..version import LIBRARY_DESCRIPTION, LIBRARY_VERSION, MANUFACTURER_ID
from . import marshal
from .handlers import handler

SLOT_EVENT_POLL_SECONDS = 0.25


class ApplicationMutex:
    """A lock built from the application's CK_C_INITIALIZE_ARGS callbacks (§5.4.1, case 3)."""

    def __init__(self, args: Any) -> None:
        ffi = marshal.ffi
        self._lock_fn, self._unlock_fn, self._destroy_fn = args.LockMutex, args.UnlockMutex, args.DestroyMutex
        handle = ffi.new("CK_VOID_PTR *")
        if args.CreateMutex(handle) != CKR.OK:
            raise PKCS11Error(CKR.CANT_LOCK, "the application's CreateMutex failed")
        self._mutex = handle[0]
        self._owner: int | None = None
        self._depth = 0

    # Re-entrant on top of the application's (non-recursive) mutex.
    def acquire(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return
        if self._lock_fn(self._mutex) != CKR.OK:
            raise PKCS11Error(CKR.CANT_LOCK)
        self._owner, self._depth = me, 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._unlock_fn(self._mutex)

    __enter__ = acquire

    def close(self) -> None:
        """C_Finalize: give the mutex back to the application."""
        self._destroy_fn(self._mutex)

    def __exit__(self, *exc: Any) -> None:
        self.release()


def options_from(p_init_args: Any) -> library.InitOptions:
    ffi = marshal.ffi
    if p_init_args == ffi.NULL:
        return library.InitOptions()
    args = ffi.cast("CK_C_INITIALIZE_ARGS *", p_init_args)
    if args.pReserved != ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "pReserved must be NULL")
    callbacks = [args.CreateMutex, args.DestroyMutex, args.LockMutex, args.UnlockMutex]
    given = [cb != ffi.NULL for cb in callbacks]
    if any(given) and not all(given):
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "mutex callbacks must be all or none")
    flags = int(args.flags)
    # We start no threads of our own, so CKF_LIBRARY_CANT_CREATE_OS_THREADS is satisfied as it is.
    if all(given) and not flags & InitFlag.OS_LOCKING_OK:
        return library.InitOptions(lambda: ApplicationMutex(args), application_locks=True)
    return library.InitOptions()


@handler("C_Initialize")
def c_initialize(p_init_args: Any) -> None:
    library.initialize(options_from(p_init_args))


@handler("C_Finalize")
def c_finalize(p_reserved: Any) -> None:
    if p_reserved != marshal.ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD)
    library.finalize()


#: CK_INFO.cryptokiVersion, the same through every table: the CK_INFO text says it "should match the
#: version of this specification" the library is written to (3.2), and Kryoptic (MODULE_INFO) and
#: SoftHSM2 (CRYPTOKI_VERSION_*) answer one constant too. Each table carries its own version in its
#: first member; a C_GetInfo that followed the table obtained last would read process-wide state that
#: every user of the .so in the process shares (python-pkcs11 would see 2.40 on a 3.2 library).
CRYPTOKI_VERSION = (3, 2)


@handler("C_GetInfo")
def c_get_info(p_info: Any) -> None:
    library.state()
    marshal.require(p_info)
    p_info.cryptokiVersion.major, p_info.cryptokiVersion.minor = CRYPTOKI_VERSION
    marshal.fill_text(p_info.manufacturerID, MANUFACTURER_ID)
    p_info.flags = 0
    marshal.fill_text(p_info.libraryDescription, LIBRARY_DESCRIPTION)
    p_info.libraryVersion.major, p_info.libraryVersion.minor = LIBRARY_VERSION


@handler("C_WaitForSlotEvent")
def c_wait_for_slot_event(flags: int, p_slot: Any, p_reserved: Any) -> int:
    library.state()
    marshal.require(p_slot)
    if p_reserved != marshal.ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD)
    lib = library.state()
    seen = set(lib.slots.slot_ids())
    while True:
        # A slot event here is a token appearing or going (another process ran C_InitToken).
        lib.slots.refresh()
        now = set(lib.slots.slot_ids())
        changed = sorted(now ^ seen)
        if changed:
            p_slot[0] = changed[0]
            return CKR.OK
        if flags & CKF_DONT_BLOCK:
            raise PKCS11Error(CKR.NO_EVENT)
        time.sleep(SLOT_EVENT_POLL_SECONDS)
        library.state()  # C_Finalize from another thread ends the wait (§5.5)


@handler("C_GetFunctionStatus")
def c_get_function_status(h_session: int) -> None:
    library.state().sessions.get(h_session)
    raise PKCS11Error(CKR.FUNCTION_NOT_PARALLEL)  # legacy: §5.20 says every library answers this


@handler("C_CancelFunction")
def c_cancel_function(h_session: int) -> None:
    library.state().sessions.get(h_session)
    raise PKCS11Error(CKR.FUNCTION_NOT_PARALLEL)
