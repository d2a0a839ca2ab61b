"""The one place where Python results become CK_RV.

`bind()` attaches one handler per PKCS#11 function to its cffi `extern "Python"` declaration. Each
handler may return None (CKR_OK), a CK_RV, or raise; `PKCS11Error` carries its code, emulator errors
are mapped by `EMULATOR_CKR`, and anything unexpected becomes CKR_GENERAL_ERROR and is logged with
its traceback. Every `def_extern` also declares CKR_GENERAL_ERROR as its error value, because cffi's
default result for an escaped exception is 0, which is CKR_OK.

Start-up is part of the product (a test suite starts a tool per test): `bind()` imports only the
chapters a process calls before its first session (`START_CHAPTERS`). Every other function starts
out attached to a stand-in that imports the remaining chapters in `LATER_CHAPTERS` order until one
has registered its handler, then re-attaches the real handler (cffi replaces an `extern "Python"`
binding in place), so from the second call on there is no detour.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Callable

from emulator import errors as emu

from .. import debuglog, forks
from ..constants import CKR
from ..errors import PKCS11Error
from . import marshal
from .handlers import HANDLERS

log = logging.getLogger("softshield.abi")

#: Handler modules of this package, by the spec's chapters. `START_CHAPTERS` answer what every
#: process calls first (C_Initialize, C_GetInfo, C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo,
#: C_GetMechanismList/Info); the others load on first use, most used first (a signing tool needs
#: sessions, objects and crypto_ops, never the key management or PKCS#11 3.2 chapters).
START_CHAPTERS: tuple[str, ...] = ("general", "slots")
LATER_CHAPTERS: tuple[str, ...] = ("sessions", "objects", "crypto_ops", "keys", "messages",
                                   "vendor",  # nShield's C_LoginBegin/Next/End
                                   "pqc")  # the PKCS#11 3.2 functions
_chapters_lock = threading.Lock()

#: Emulator failures as PKCS#11 return codes (most specific class first).
EMULATOR_CKR: tuple[tuple[type[Exception], CKR], ...] = (
    (emu.AclDenied, CKR.KEY_FUNCTION_NOT_PERMITTED),
    (emu.CardLocked, CKR.PIN_LOCKED),
    (emu.AuthenticationFailed, CKR.PIN_INCORRECT),
    (emu.QuorumNotMet, CKR.PIN_INCORRECT),
    (emu.InvalidKeyMaterial, CKR.ATTRIBUTE_VALUE_INVALID),
    (emu.BlobInvalid, CKR.DEVICE_ERROR),
    (emu.KeyNotFound, CKR.OBJECT_HANDLE_INVALID),
    (emu.WorldStateError, CKR.DEVICE_ERROR),
    (emu.CryptoFailure, CKR.FUNCTION_FAILED),
    (emu.EmulatorError, CKR.FUNCTION_FAILED),
)


def rv_for(exc: BaseException) -> int:
    if isinstance(exc, PKCS11Error):
        return int(exc.rv)
    for cls, rv in EMULATOR_CKR:
        if isinstance(exc, cls):
            return int(rv)
    if isinstance(exc, MemoryError):
        return int(CKR.HOST_MEMORY)
    return int(CKR.GENERAL_ERROR)


_OK = int(CKR.OK)


def guarded(name: str, fn: Callable[..., Any]) -> Callable[..., int]:
    def call(*args: Any) -> int:
        try:
            rv = fn(*args)
        except PKCS11Error as exc:
            debuglog.trace(name, int(exc.rv), str(exc))
            return int(exc.rv)
        except emu.EmulatorError as exc:
            rv = rv_for(exc)
            debuglog.trace(name, rv, str(exc))
            return rv
        except BaseException:  # noqa: BLE001 - the C boundary: nothing may escape into C
            log.exception("unexpected error in %s", name)
            return int(CKR.GENERAL_ERROR)
        rv = _OK if rv is None else int(rv)
        debuglog.trace(name, rv)
        return rv

    call.__name__ = name
    return call


def _log_escaped(exc_type: Any, exc_value: Any, tb: Any) -> None:
    log.error("exception escaped a guarded handler", exc_info=(exc_type, exc_value, tb))


def handler_names(lib: Any) -> list[str]:
    """The C functions answered in Python: the embedded module's `extern "Python"` declarations,
    which the build generated from native/functions.txt (`py_C_X` answers `C_X`)."""
    return [name[3:] for name in dir(lib) if name.startswith("py_C_")]


def load_chapter_of(name: str) -> Callable[..., Any]:
    """The handler of `name`, importing later chapters in order until one registers it."""
    fn = HANDLERS.get(name)
    if fn is not None:
        return fn
    with _chapters_lock:
        for chapter in LATER_CHAPTERS:
            importlib.import_module(f"{__package__}.{chapter}")
            fn = HANDLERS.get(name)
            if fn is not None:
                return fn
    # The build lists a function that no chapter answers: a C call would otherwise return garbage.
    raise RuntimeError(f"no Python handler for {name}")


def load_all_chapters() -> None:
    for chapter in START_CHAPTERS + LATER_CHAPTERS:
        importlib.import_module(f"{__package__}.{chapter}")


def _attach(ffi: Any, name: str, fn: Callable[..., Any]) -> None:
    ffi.def_extern(name=f"py_{name}", error=int(CKR.GENERAL_ERROR), onerror=_log_escaped)(guarded(name, fn))


def _on_first_call(ffi: Any, name: str) -> Callable[..., Any]:
    """The stand-in for a handler whose chapter is not imported yet (see the module docstring)."""

    def first_call(*args: Any) -> Any:
        fn = load_chapter_of(name)
        _attach(ffi, name, fn)
        return fn(*args)

    return first_call


def bind(ffi: Any, lib: Any) -> None:
    """Attach the start chapters' handlers and a loading stand-in for every other function."""
    marshal.set_ffi(ffi)
    marshal.lib = lib
    # native/forks.h's counter as a memoryview: one index per entry point, no call into C.
    generation = ffi.buffer(lib.softshield_fork_generation(), ffi.sizeof("unsigned long"))
    forks.watch(memoryview(generation).cast("L"))
    debuglog.configure()
    for chapter in START_CHAPTERS:
        importlib.import_module(f"{__package__}.{chapter}")

    @ffi.def_extern(name="py_softshield_started", error=0)
    def _started() -> int:
        return 1

    for name in handler_names(lib):
        _attach(ffi, name, HANDLERS.get(name) or _on_first_call(ffi, name))
