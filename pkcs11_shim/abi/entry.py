"""The one place where Python results become CK_RV.

`bind()` attaches one handler per PKCS#11 function to its cffi `extern "Python"` declaration. Each
handler may return None (CKR_OK), a CK_RV, or raise; `PKCS11Error` carries its code, emulator errors
are mapped by `EMULATOR_CKR`, and anything unexpected becomes CKR_GENERAL_ERROR and is logged with
its traceback. Every `def_extern` also declares CKR_GENERAL_ERROR as its error value, because cffi's
default result for an escaped exception is 0, which is CKR_OK.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from emulator import errors as emu

from .. import debuglog
from ..build import python_handlers, read_functions
from ..constants import CKR
from ..errors import PKCS11Error
from . import marshal

log = logging.getLogger("softshield.abi")

HANDLERS: dict[str, Callable[..., Any]] = {}

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


def handler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the Python side of the C function `name`."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for {name}")
        HANDLERS[name] = fn
        return fn

    return register


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


def bind(ffi: Any, lib: Any) -> None:
    """Attach every handler; refuse to start if one is missing (a C call would return garbage)."""
    marshal.set_ffi(ffi)
    debuglog.configure()
    from . import crypto_ops, general, keys, messages, objects, sessions, slots  # noqa: F401
    from . import vendor  # noqa: F401  - nShield's C_LoginBegin/Next/End
    from . import pqc  # noqa: F401  - the PKCS#11 3.2 functions

    @ffi.def_extern(name="py_softshield_started", error=0)
    def _started() -> int:
        return 1

    missing = []
    for function in python_handlers(read_functions()):
        fn = HANDLERS.get(function.name)
        if fn is None:
            missing.append(function.name)
            continue
        ffi.def_extern(
            name=f"py_{function.name}", error=int(CKR.GENERAL_ERROR), onerror=_log_escaped
        )(guarded(function.name, fn))
    if missing:
        raise RuntimeError(f"no Python handler for {', '.join(missing)}")
