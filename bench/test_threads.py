"""Throughput of RSA_AES_KEY_WRAP (RSA-2048, OAEP-SHA256, AES-256 target) wrap and unwrap and of
AES_KEY_WRAP wrap (AES-256 under AES-256) with 1, 2 and 4 threads, one session each. SoftHSM2 runs
its composite for RSA-AES (see wrapcases); `cryptography` the same work.

The thread counts take turns for ROUNDS rounds and each figure is the median: a ratio of two
single windows of a few seconds moves by 20 % between runs on a shared 2-core machine, more than
the differences these rows are read for. The rows "N threads / 1 thread" give the median of the
rounds' ratios."""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest
from pkcs11 import ObjectClass

import wrapcases
from backends import SMOKE
from report import record

IMPLS = ("ours", "softhsm", "cryptography")
DURATION = 0.05 if SMOKE else float(os.environ.get("SOFTSHIELD_BENCH_THREAD_SECONDS", "2"))
ROUNDS = 1 if SMOKE else int(os.environ.get("SOFTSHIELD_BENCH_THREAD_ROUNDS", "3"))
THREADS = (1, 2, 4)


def _thread_keys(base: wrapcases.Keys, session) -> wrapcases.Keys:
    """The same key objects seen through this thread's own session (handles are per application)."""
    if base.impl == "cryptography":
        return base
    # A python-pkcs11 key carries its session: find the same session objects through this one.
    rebound = wrapcases.Keys(base.impl, session, {})
    for bits in base.rsa:
        rebound.rsa[bits] = (session.get_key(ObjectClass.PUBLIC_KEY, label=f"rsa{bits}"),
                             session.get_key(ObjectClass.PRIVATE_KEY, label=f"rsa{bits}"))
    rebound.aes_target = session.get_key(ObjectClass.SECRET_KEY, label="target")
    rebound.aes_wrapping = session.get_key(ObjectClass.SECRET_KEY, label="kek")
    return rebound


def throughput(fn_per_thread: list, duration: float) -> float:
    counts = [0] * len(fn_per_thread)
    errors: list[BaseException] = []
    start_line = threading.Barrier(len(fn_per_thread) + 1)
    stop = [0.0]

    def worker(i: int, fn) -> None:
        try:
            start_line.wait()
            while time.perf_counter() < stop[0]:
                fn()
                counts[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, fn)) for i, fn in enumerate(fn_per_thread)]
    for t in threads:
        t.start()
    begin = time.perf_counter()
    stop[0] = begin + duration
    start_line.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


#: direction -> (row name, the case's callable and note for one thread's keys); the plot group is
#: "threads-<direction>".
CASES = {
    "wrap": ("wrap RSA_AES_KEY_WRAP RSA-2048", lambda keys: wrapcases.rsa_aes_wrap(keys, 2048, "sha256")),
    "unwrap": ("unwrap RSA_AES_KEY_WRAP RSA-2048", lambda keys: wrapcases.rsa_aes_unwrap(keys, 2048, "sha256")),
    "kw-wrap": ("wrap AES_KEY_WRAP AES-256", lambda keys: wrapcases.aes_wrap(keys, "kw")),
}


def _row(name: str, threads: int) -> str:
    return f"{name}, {threads} thread{'s' if threads > 1 else ''}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("direction", list(CASES))
def test_thread_throughput(sessions, lib_sessions, impl: str, direction: str) -> None:
    name, case = CASES[direction]
    group = f"threads-{direction}"
    counts = THREADS
    if impl == "softhsm":
        # python-pkcs11 calls C_Initialize(NULL): SoftHSM2 then takes no locks, and several threads
        # making and destroying session objects break its session state (CKR_GENERAL_ERROR from
        # then on, for every later call). Not measured.
        counts = (1,)
        for threads in THREADS[1:]:
            record(_row(name, threads), impl, float("nan"), note="not thread-safe with NULL C_Initialize args",
                   group=group, x=threads)
    base = wrapcases.keys_for(impl, sessions)
    fns, note = [], ""
    for _ in range(max(counts)):
        keys = base if impl == "cryptography" else _thread_keys(base, lib_sessions(impl))
        fn, note = case(keys)
        fn()
        fns.append(fn)
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for _round in range(ROUNDS):
        for threads in counts:
            rates[threads].append(throughput(fns[:threads], DURATION))
    for threads in counts:
        record(_row(name, threads), impl, statistics.median(rates[threads]), note=note, group=group, x=threads)
    if impl == "ours":
        for threads in counts[1:]:
            scale = statistics.median(n / one for n, one in zip(rates[threads], rates[1]))
            record(f"{name}: {threads} threads / 1 thread", impl, scale, unit="x", group=f"{group}-scale",
                   note=f"median of {ROUNDS} interleaved rounds")
