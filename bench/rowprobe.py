"""A/B probe for the rows where a C peer is the reference: one case through python-pkcs11 on our
.so and on SoftHSM2, in the same process, interleaved in batches so that both see the same machine
load; prints the minimum and median per-call time of each, their ratio (SoftHSM2 time / ours, so
above 1.0 is faster than SoftHSM2), the same for the thread's CPU time (which other processes on a
busy machine disturb less than the wall time) and the load average.

    .venv/bin/python bench/rowprobe.py sign-ec|keypair-ec|genkey|random|unwrap-kw|unwrap-kwp [batches] [per-batch]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
from profile_hotpath import make_case  # noqa: E402


def _batch(fn, n: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n, (time.thread_time() - cpu) / n


def main(name: str = "sign-ec", batches: str = "15", per: str = "200") -> None:
    fns = {}
    for impl, backend in (("ours", backends.OURS), ("softhsm", backends.SOFTHSM)):
        session = backend.token("main").open(user_pin=backends.USER_PIN, rw=True)
        fns[impl] = make_case(name, session, "sha256", impl)
    n = int(per)
    for fn in fns.values():
        _batch(fn, n)
    times: dict[str, list[float]] = {impl: [] for impl in fns}
    cpu: dict[str, list[float]] = {impl: [] for impl in fns}
    load = os.getloadavg()[0]
    for _ in range(int(batches)):
        for impl, fn in fns.items():
            wall, used = _batch(fn, n)
            times[impl].append(wall)
            cpu[impl].append(used)
    low = {k: min(v) * 1e6 for k, v in times.items()}
    mid = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    low_cpu = {k: min(v) * 1e6 for k, v in cpu.items()}
    print(f"{name}: ours min {low['ours']:.1f} us (median {mid['ours']:.1f}), SoftHSM2 min {low['softhsm']:.1f} us "
          f"(median {mid['softhsm']:.1f}); ratio {low['softhsm'] / low['ours']:.2f}x "
          f"(medians {mid['softhsm'] / mid['ours']:.2f}x); CPU us ours {low_cpu['ours']:.1f} SoftHSM2 "
          f"{low_cpu['softhsm']:.1f} ratio {low_cpu['softhsm'] / low_cpu['ours']:.2f}x; "
          f"load {load:.2f}-{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
