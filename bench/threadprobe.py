"""Thread scaling of RSA_AES_KEY_WRAP unwrap (RSA-2048, OAEP-SHA256), issue 6: our .so through
python-pkcs11 (one session per thread) and the same work with `cryptography` in-process, 1 and 2
threads, interleaved; each figure is the best of `rounds` runs of `seconds`.

    .venv/bin/python bench/threadprobe.py [rounds] [seconds]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
import wrapcases  # noqa: E402
from test_threads import _thread_keys, throughput  # noqa: E402


def main(rounds: str = "3", seconds: str = "2") -> None:
    token = backends.OURS.token("main")
    # The login is the application's: the second session shares it.
    sessions = [token.open(user_pin=backends.USER_PIN, rw=True), token.open(rw=True)]
    base = wrapcases.make_keys("ours", sessions[0])
    ours = [wrapcases.rsa_aes_unwrap(_thread_keys(base, s), 2048, "sha256")[0] for s in sessions]
    raw_keys = wrapcases.make_keys("cryptography", None)
    raw = [wrapcases.rsa_aes_unwrap(raw_keys, 2048, "sha256")[0] for _ in range(2)]
    best: dict[tuple[str, int], float] = {}
    for _ in range(int(rounds)):
        for name, fns in (("ours", ours), ("cryptography", raw)):
            for n in (1, 2):
                rate = throughput(fns[:n], float(seconds))
                best[(name, n)] = max(best.get((name, n), 0.0), rate)
    for name in ("ours", "cryptography"):
        one, two = best[(name, 1)], best[(name, 2)]
        print(f"{name}: 1 thread {one:.0f}/s, 2 threads {two:.0f}/s ({two / one:.2f}x)")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
