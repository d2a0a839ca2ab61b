"""Throughput of RSA_AES_KEY_WRAP (RSA-2048, OAEP-SHA256, AES-256 target) wrap and unwrap and of
AES_KEY_WRAP wrap (AES-256 under AES-256) with 1, 2 and 4 threads, one session each. SoftHSM2 runs
its composite for RSA-AES (see wrapcases); `cryptography` the same work."""

from __future__ import annotations

import os
import threading
import time

import pkcs11
import pytest
from pkcs11 import ObjectClass

import wrapcases
from backends import SMOKE
from report import record

IMPLS = ("ours", "softhsm", "cryptography")
DURATION = 0.05 if SMOKE else float(os.environ.get("SOFTSHIELD_BENCH_THREAD_SECONDS", "2"))




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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("direction", list(CASES))
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_thread_throughput(sessions, lib_sessions, impl: str, direction: str, threads: int) -> None:
    name, case = CASES[direction]
    if impl == "softhsm" and threads > 1:
        # python-pkcs11 calls C_Initialize(NULL): SoftHSM2 then takes no locks, and several threads
        # making and destroying session objects break its session state (CKR_GENERAL_ERROR from
        # then on, for every later call). Not measured.
        record(f"{name}, {threads} threads", impl, float("nan"),
               note="not thread-safe with NULL C_Initialize args", group=f"threads-{direction}", x=threads)
        return
    base = wrapcases.keys_for(impl, sessions)
    fns, note = [], ""
    for _ in range(threads):
        keys = base if impl == "cryptography" else _thread_keys(base, lib_sessions(impl))
        fn, note = case(keys)
        fn()
        fns.append(fn)
    try:
        rate = throughput(fns, DURATION)
    except pkcs11.PKCS11Error as exc:
        if impl != "softhsm":
            raise
        # SoftHSM2 initialised with NULL arguments (python-pkcs11's way) is not safe for several
        # threads making and destroying session objects at once.
        rate, note = float("nan"), f"fails: {type(exc).__name__}"
    record(f"{name}, {threads} thread{'s' if threads > 1 else ''}", impl, rate,
           note=note, group=f"threads-{direction}", x=threads)
