"""Kernel randomness handed out from a buffer, for per-call temporary keys on hot paths.

`os.urandom` is a system call that releases the GIL: on a path that holds the GIL otherwise (an
RSA-AES wrap makes one temporary AES key per call), every release lets a waiting thread take the
GIL, and the caller then waits to get it back (the convoy that makes two wrapping threads slower
than one).
A pool draws `POOL_BYTES` from the kernel at a time and hands out each byte once, under a lock that
is never held across anything that releases the GIL except the refill itself. Alone, a take costs
about 0.6 us more CPU than a 32-byte os.urandom; with another thread waiting for the GIL, each
release costs the releasing thread a wake-up system call and often the GIL itself.

A forked child must never hand out bytes its parent also hands out. Python's at-fork hooks do not run
when a C host calls fork() itself, so the pool remembers the process id it was filled in and refills
when it differs (os.getpid is a system call that keeps the GIL). A fork while another thread
refills (the lock held, the GIL released) would leave the child's lock held by a thread it does not
have: the child gets a fresh lock (os.fork runs the hook, and the library's pthread_atfork handlers
run it for a C host's fork()).
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096


class RandomPool:
    def __init__(self, size: int = POOL_BYTES) -> None:
        self._size = size
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)
        self._used = size  # empty: the first take fills it
        self._pid = 0
        self._lock = threading.Lock()

    def take(self, length: int) -> bytes:
        """`length` fresh random bytes; lengths above the pool size come straight from the kernel.
        Bytes handed out stay in the buffer until the next refill overwrites them in place (at
        most `size` bytes, as a temporary key's own copies stay until they are collected)."""
        if length > self._size:
            return os.urandom(length)
        pid = os.getpid()
        with self._lock:
            used = self._used
            if self._pid != pid or used + length > self._size:
                self._buffer[:] = os.urandom(self._size)
                self._pid, used = pid, 0
            self._used = end = used + length
            return self._view[used:end].tobytes()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._used = self._size


_POOL = RandomPool()
os.register_at_fork(after_in_child=_POOL._after_fork_in_child)


def random_bytes(length: int) -> bytes:
    """Fresh kernel randomness (the process-wide pool)."""
    return _POOL.take(length)
