"""Thread scaling of the key-wrap hot path through python-pkcs11 (one session per thread), our .so
and the same work with `cryptography` in-process, for 1, 2 and 4 threads, interleaved; each figure
is the best of `rounds` runs of `seconds`. Cases: rsa-wrap, rsa-unwrap (RSA_AES_KEY_WRAP RSA-2048,
OAEP-SHA256), kw-wrap (AES_KEY_WRAP AES-256), or all.

    .venv/bin/python bench/threadprobe.py [rounds] [seconds] [case,case...] [threads,threads...]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
import wrapcases  # noqa: E402
from test_threads import _thread_keys, throughput  # noqa: E402

CASES = {
    "rsa-wrap": lambda keys: wrapcases.rsa_aes_wrap(keys, 2048, "sha256")[0],
    "rsa-unwrap": lambda keys: wrapcases.rsa_aes_unwrap(keys, 2048, "sha256")[0],
    "kw-wrap": lambda keys: wrapcases.aes_wrap(keys, "kw")[0],
}


def main(rounds: str = "3", seconds: str = "2", cases: str = "all", counts: str = "1,2,4") -> None:
    names = list(CASES) if cases == "all" else cases.split(",")
    ns = [int(n) for n in counts.split(",")]
    token = backends.OURS.token("main")
    # The login is the application's: the other sessions share it.
    sessions = [token.open(user_pin=backends.USER_PIN, rw=True)] + [token.open(rw=True) for _ in range(max(ns) - 1)]
    base = wrapcases.make_keys("ours", sessions[0])
    raw_keys = wrapcases.make_keys("cryptography", None)
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(int(rounds)):
        for case in names:
            ours = [CASES[case](_thread_keys(base, s)) for s in sessions]
            raw = [CASES[case](raw_keys) for _ in sessions]
            for impl, fns in (("ours", ours), ("cryptography", raw)):
                for n in ns:
                    rate = throughput(fns[:n], float(seconds))
                    best[(case, impl, n)] = max(best.get((case, impl, n), 0.0), rate)
    for case in names:
        for impl in ("ours", "cryptography"):
            one = best[(case, impl, ns[0])]
            row = ", ".join(f"{n} threads {best[(case, impl, n)]:.0f}/s ({best[(case, impl, n)] / one:.2f}x)"
                            for n in ns)
            print(f"{case} {impl}: {row}")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
