"""One client process of the many-clients rows (bench/test_bench_hardserver.py): AES-256 KWP wraps
through python-pkcs11 for as long as it is told, started with the others on one line of stdin.

    python bench/clientprobe.py SO TOKEN_LABEL MECHANISM SECONDS

Prints "ready" once its session, keys and a warm wrap are done; after a line on stdin it wraps for
SECONDS and prints "<wraps> <seconds>". MECHANISM is the number of the KWP mechanism (SoftHSM2
calls RFC 5649 CKM_AES_KEY_WRAP_PAD)."""

from __future__ import annotations

import sys
import time

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism

USER_PIN = "1234"


def main() -> int:
    so, label, mechanism, seconds = sys.argv[1], sys.argv[2], Mechanism(int(sys.argv[3], 0)), float(sys.argv[4])
    session = pkcs11.lib(so).get_token(token_label=label).open(user_pin=USER_PIN, rw=True)
    wrapping = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
    target = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.EXTRACTABLE: True})
    assert len(wrapping.wrap_key(target, mechanism=mechanism)) == 40  # warm, and a real wrap came back
    print("ready", flush=True)
    sys.stdin.readline()
    count, start = 0, time.perf_counter()
    stop = start + seconds
    while time.perf_counter() < stop:
        wrapping.wrap_key(target, mechanism=mechanism)
        count += 1
    print(count, time.perf_counter() - start, flush=True)
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
