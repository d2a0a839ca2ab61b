"""A/B probe for the key-wrap hot path (issue 6): one RSA-2048 case through python-pkcs11 on our
.so and the same work in-process with `cryptography`, interleaved in batches so both see the same
machine load; prints the minimum and median per-call time of each and their ratio.

    .venv/bin/python bench/abprobe.py unwrap|wrap [batches] [per-batch] [sha1|sha256]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
import wrapcases  # noqa: E402


def _batch(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main(direction: str = "unwrap", batches: str = "15", per: str = "100", sha: str = "sha256") -> None:
    session = backends.OURS.token("main").open(user_pin=backends.USER_PIN, rw=True)
    case = wrapcases.rsa_aes_wrap if direction == "wrap" else wrapcases.rsa_aes_unwrap
    ours, _ = case(wrapcases.make_keys("ours", session), 2048, sha)
    raw, _ = case(wrapcases.make_keys("cryptography", None), 2048, sha)
    n = int(per)
    for fn in (ours, raw):
        _batch(fn, n)
    times: dict[str, list[float]] = {"ours": [], "cryptography": []}
    for _ in range(int(batches)):
        times["ours"].append(_batch(ours, n))
        times["cryptography"].append(_batch(raw, n))
    low = {k: min(v) * 1e6 for k, v in times.items()}
    mid = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    print(f"{direction} RSA-2048 {sha}: ours min {low['ours']:.1f} us (median {mid['ours']:.1f}), "
          f"cryptography min {low['cryptography']:.1f} us (median {mid['cryptography']:.1f}); "
          f"ratio {low['cryptography'] / low['ours']:.2f}x (medians {mid['cryptography'] / mid['ours']:.2f}x); "
          f"load {os.getloadavg()[0]:.1f}")
    session.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
