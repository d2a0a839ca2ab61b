"""The randomness pool behind per-call temporary keys (emulator/crypto/randpool.py): each byte the
kernel gave is handed out once, across threads and across a fork the pool does not hear about."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from emulator.crypto import randpool
from emulator.crypto.randpool import RandomPool


class _Counter:
    """A stand-in for os.urandom whose every output byte is distinct per call and offset: any
    byte handed out twice shows up as a repeated 32-byte value."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        return b"".join(self.calls.to_bytes(4, "big") + i.to_bytes(4, "big") for i in range(-(-n // 8)))[:n]


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> _Counter:
    source = _Counter()
    monkeypatch.setattr(randpool.os, "urandom", source)
    return source


def test_each_byte_once_in_order(counter: _Counter) -> None:
    pool = RandomPool(64)
    taken = [pool.take(32), pool.take(32), pool.take(32)]
    first_fill = _Counter()(64)
    assert taken[0] + taken[1] == first_fill  # both halves of the first 64 bytes, then a refill
    assert counter.calls == 2
    assert taken[2] != taken[0] and taken[2] != taken[1]


def test_large_requests_come_straight_from_the_kernel(counter: _Counter) -> None:
    pool = RandomPool(64)
    assert len(pool.take(65)) == 65
    assert counter.calls == 1


def test_threads_never_share_bytes(counter: _Counter) -> None:
    pool = RandomPool(4096)
    results: list[list[bytes]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(2000):
            results[i].append(pool.take(32))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = [v for r in results for v in r]
    assert len(values) == 16000 and len(set(values)) == 16000


def test_a_forked_child_draws_its_own_bytes() -> None:
    # The real kernel source: the child must not hand out what the parent will hand out next, also
    # when no at-fork hook ran (a C host's fork()); the pool checks the process id itself.
    pool = RandomPool(4096)
    pool.take(32)  # filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, pool.take(32))
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != pool.take(32)


def test_a_refill_overwrites_what_was_handed_out(counter: _Counter) -> None:
    pool = RandomPool(64)
    first = pool.take(32) + pool.take(32)
    pool.take(32)  # refills in place
    assert first[:32] not in bytes(pool._buffer) and first[32:] not in bytes(pool._buffer)


def test_a_child_forked_while_the_pool_is_locked_draws() -> None:
    """The parent's lock is held at the fork (as by a thread refilling): the child's own is free."""
    pool = randpool._POOL
    with pool._lock:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0 if len(randpool.random_bytes(16)) == 16 else 1)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
