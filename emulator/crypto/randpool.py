"""Kernel randomness handed out from a buffer, for per-call temporary keys on hot paths.

`os.urandom` is a system call that releases the GIL: on a path that holds the GIL otherwise (an
RSA-AES wrap makes one temporary AES key per call), every release lets a waiting thread take the
GIL, and the caller then waits for it back, so two threads wrapping at once got less done than one.
A pool draws `POOL_BYTES` from the kernel at a time and hands out each byte once, under a lock that
is never held across anything that releases the GIL except the refill itself.

A forked child must never hand out bytes its parent also hands out. Python's at-fork hooks do not run
when a C host calls fork() itself, so the pool remembers the process id it was filled in and refills
when it differs (os.getpid is a system call that keeps the GIL).
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096


class RandomPool:
    def __init__(self, size: int = POOL_BYTES) -> None:
        self._size = size
        self._buffer = bytearray()
        self._used = 0
        self._pid = 0
        self._lock = threading.Lock()

    def take(self, length: int) -> bytes:
        """`length` fresh random bytes; lengths above the pool size come straight from the kernel."""
        if length > self._size:
            return os.urandom(length)
        with self._lock:
            buffer, used = self._buffer, self._used
            if self._pid != os.getpid() or used + length > len(buffer):
                buffer[:] = os.urandom(self._size)
                self._pid, used = os.getpid(), 0
            out = bytes(buffer[used:used + length])
            buffer[used:used + length] = bytes(length)  # handed out: not kept in the pool
            self._used = used + length
            return out


_POOL = RandomPool()


def random_bytes(length: int) -> bytes:
    """Fresh kernel randomness (the process-wide pool)."""
    return _POOL.take(length)
