"""Profile the key-wrap hot path of our .so through python-pkcs11 (issue 6): a loop of one case
under cProfile, sorted by own time, plus the plain per-call time without the profiler.

    .venv/bin/python bench/profile_hotpath.py wrap|unwrap [count] [sha1|sha256]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
import wrapcases  # noqa: E402


def main(direction: str = "wrap", count: str = "2000", sha: str = "sha256") -> None:
    session = backends.OURS.token("main").open(user_pin=backends.USER_PIN, rw=True)
    keys = wrapcases.make_keys("ours", session)
    case = wrapcases.rsa_aes_wrap if direction == "wrap" else wrapcases.rsa_aes_unwrap
    fn, _note = case(keys, 2048, sha)
    n = int(count)
    for _ in range(50):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    plain = (time.perf_counter() - start) / n
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        fn()
    profile.disable()
    print(f"{direction} RSA-2048 {sha}: {plain * 1e6:.1f} us per call without the profiler")
    pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    session.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
