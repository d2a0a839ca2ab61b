"""Library state: C_Initialize / C_Finalize, the locks, and fork detection (PKCS#11 3.0 §5.4).

The library always locks its shared state itself: python-pkcs11 and many C hosts pass NULL to
C_Initialize and then call from many threads. When the application supplies mutex callbacks without
CKF_OS_LOCKING_OK, the spec says the library must use them, so the state lock is then built from
them (`lock_factory`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from emulator.module import Module

from . import forks
from .constants import CKR
from .errors import PKCS11Error

LockFactory = Callable[[], Any]


@dataclass(frozen=True)
class InitOptions:
    lock_factory: LockFactory = threading.RLock
    application_locks: bool = False


class Library:
    """Everything one C_Initialize owns; gone at C_Finalize."""

    def __init__(self, options: InitOptions) -> None:
        from .config import Config
        from .sessions import SessionTable
        from .slots import SlotTable

        self.options = options
        self.lock = options.lock_factory()
        self.config = Config.load()
        self.module = Module.open(self.config.kmdata)
        self.slots = SlotTable(self)
        self.sessions = SessionTable(self)
        # Each library keeps the fork mark it was made under (forks.py): one made before
        # `forks.watch` stays valid.
        self.forks_source = forks.mark
        self.forks = forks.mark[0]

    def close(self) -> None:
        self.sessions.close_all_everywhere()
        close_lock = getattr(self.lock, "close", None)
        if close_lock is not None:
            close_lock()


_current: Library | None = None
_guard = threading.Lock()


def _free_guard_in_child() -> None:
    """A forked child has only the forking thread: another thread of the parent that was inside
    C_Initialize or C_Finalize (which read the world from disk, letting go of the interpreter's lock)
    left `_guard` held by a thread the child lacks, and the child's own C_Initialize (§5.1.2) would wait
    for it forever. os.fork runs this, and so does a C host's fork() (native/python_forks.h)."""
    global _guard
    _guard = threading.Lock()


os.register_at_fork(after_in_child=_free_guard_in_child)


def initialize(options: InitOptions) -> None:
    global _current
    with _guard:
        if _current is not None and _current.forks_source[0] == _current.forks:
            raise PKCS11Error(CKR.CRYPTOKI_ALREADY_INITIALIZED)
        # A forked child starts clean: it never inherits the parent's logged-in sessions.
        _current = Library(options)


def finalize() -> None:
    global _current
    with _guard:
        current = state()
        _current = None
    current.close()


def state() -> Library:
    """The initialised library, or CKR_CRYPTOKI_NOT_INITIALIZED (also in a forked child)."""
    current = _current
    if current is None or current.forks_source[0] != current.forks:
        raise PKCS11Error(CKR.CRYPTOKI_NOT_INITIALIZED)
    return current
