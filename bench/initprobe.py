"""Run in a fresh process: C_Initialize time of one library, then resident memory once the token's
objects are loaded (login + one find). Prints one JSON line."""

from __future__ import annotations

import json
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(so: str, label: str, pin: str, find_label: str) -> None:
    import pkcs11
    from pkcs11 import Attribute

    before = rss_mb()
    start = time.perf_counter()
    lib = pkcs11.lib(so)  # dlopen, C_GetFunctionList, C_Initialize(NULL)
    init = time.perf_counter() - start
    token = lib.get_token(token_label=label)
    start, cpu = time.perf_counter(), time.process_time()
    with token.open(user_pin=pin) as session:
        found = len(list(session.get_objects({Attribute.LABEL: find_label})))
    first_find, first_find_cpu = time.perf_counter() - start, time.process_time() - cpu
    # CPU seconds too: on a machine shared with other work they move less than the wall time.
    print(json.dumps({"init_s": init, "login_first_find_s": first_find, "login_first_find_cpu_s": first_find_cpu,
                      "found": found,
                      "rss_mb": rss_mb(), "rss_delta_mb": rss_mb() - before}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
