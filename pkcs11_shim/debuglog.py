"""The library's debug log, switched on the way cknfast users expect.

CKNFAST_DEBUG (0-10) sets the verbosity and CKNFAST_DEBUGFILE the file, as nShield's library reads
them; SOFTSHIELD_LOG_FILE / SOFTSHIELD_LOG_LEVEL do the same under our own names. With nothing set,
only unexpected errors are logged, to stderr. PINs and key material are never passed to the log.
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger("softshield")
_tracing = False


def configure() -> None:
    global _tracing
    level_text = os.environ.get("SOFTSHIELD_LOG_LEVEL") or ""
    cknfast_level = os.environ.get("CKNFAST_DEBUG", "")
    path = os.environ.get("SOFTSHIELD_LOG_FILE") or os.environ.get("CKNFAST_DEBUGFILE")
    if level_text:
        level = getattr(logging, level_text.upper(), logging.WARNING)
    elif cknfast_level.isdigit() and int(cknfast_level) > 0:
        level = logging.DEBUG if int(cknfast_level) >= 5 else logging.INFO
    else:
        level = logging.WARNING
    if _log.handlers:
        return
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s [%(process)d]: pkcs11: %(levelname)s %(message)s")
    )
    _log.addHandler(handler)
    _log.setLevel(level)
    _log.propagate = False
    _tracing = level <= logging.DEBUG


def tracing() -> bool:
    """Whether every call is traced (native shortcuts that skip Python are then not taken)."""
    return _tracing


def trace(function: str, rv: int, detail: str = "") -> None:
    """One line per call at debug level: the function, its return code and why."""
    if _tracing:
        _log.debug("%s -> 0x%x %s", function, rv, detail)
