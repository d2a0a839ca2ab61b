"""The client floor (issue 6): what python-pkcs11 itself costs per wrap/unwrap call, and the best
ours/cryptography ratio that cost leaves any library.

Issue 6 wants our RSA_AES_KEY_WRAP unwrap through python-pkcs11 at >= 0.9x the speed of the same
work done with `cryptography` in-process. python-pkcs11 does work of its own on every call: its
Cython unwrap_key builds the template in Python, make_object() reads 10 attributes in two
C_GetAttributeValue calls and builds a class with type(), then .destroy() is one more call. This
probe makes the benchmark's own "ours" calls (bench/wrapcases.py, the same keys and parameters)
against bench/nullmodule/nullmodule.c, a PKCS#11 module whose every function returns at once, so
what it times is that client cost alone. A library that took no time at all would still cost
raw + floor per call where `cryptography` costs raw, so raw / (raw + floor) bounds the ratio.

    .venv/bin/python bench/floorprobe.py [batches] [calls]    (default 10 batches x 2000 calls)

Prints one markdown table; per-call times are the min and median of the batches, the case's client
and `cryptography` batches interleaved so both see the same machine load.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

sys.path.insert(0, os.path.dirname(__file__))

import pkcs11  # noqa: E402

import backends  # noqa: E402
import wrapcases  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "nullmodule" / "nullmodule.c"
HEADER = backends.ROOT / "native" / "pkcs11_types.h"
MODULE = backends.ROOT / "build" / "bench" / "libnullmodule.so"
TOKEN_LABEL = "floor"

#: (case, builder): each builder takes a wrapcases.Keys and returns (callable, note) as the benchmark does.
CASES: list[tuple[str, Callable]] = [
    ("RSA_AES_KEY_WRAP unwrap (RSA-2048, SHA-256)", lambda keys: wrapcases.rsa_aes_unwrap(keys, 2048, "sha256")),
    ("RSA_AES_KEY_WRAP wrap (RSA-2048, SHA-256)", lambda keys: wrapcases.rsa_aes_wrap(keys, 2048, "sha256")),
    ("AES_KEY_WRAP unwrap", lambda keys: wrapcases.aes_unwrap(keys, "kw")),
    ("AES_KEY_WRAP wrap", lambda keys: wrapcases.aes_wrap(keys, "kw")),
]


def build_module() -> Path:
    """build/bench/libnullmodule.so, compiled only when its source (or the header) is newer."""
    newest = max(SOURCE.stat().st_mtime, HEADER.stat().st_mtime)
    if MODULE.exists() and MODULE.stat().st_mtime >= newest:
        return MODULE
    MODULE.parent.mkdir(parents=True, exist_ok=True)
    partial = MODULE.with_name(f"{MODULE.name}.{os.getpid()}.tmp")  # a parallel build never sees half a file
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE)], check=True)
    os.replace(partial, MODULE)
    return MODULE


def _per_call(fn: Callable, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(fns: dict[str, Callable], batches: int, calls: int) -> dict[str, tuple[float, float]]:
    """{name: (min, median)} microseconds per call; the callables' batches interleaved."""
    for fn in fns.values():
        _per_call(fn, min(calls, 100))  # warm-up: first-call caches, branch predictors, allocator
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(batches):
        for name, fn in fns.items():
            times[name].append(_per_call(fn, calls) * 1e6)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def run(batches: int = 10, calls: int = 2000) -> str:
    """The markdown table (one row per case) for the given counts."""
    lib = pkcs11.lib(str(build_module()))
    session = lib.get_token(token_label=TOKEN_LABEL).open(user_pin=backends.USER_PIN, rw=True)
    try:
        client = wrapcases.make_keys("ours", session)
        raw = wrapcases.make_keys("cryptography", None)
        lines = [f"client floor: python-pkcs11 {version('python-pkcs11')} against the null module; {batches} batches x {calls} calls; load {os.getloadavg()[0]:.1f}", "",
                 "| case | client floor us (min / median) | raw cryptography us (min / median) "
                 "| best possible ours/cryptography (min / median) |",
                 "|---|---|---|---|"]
        for case, build in CASES:
            got = measure({"floor": build(client)[0], "raw": build(raw)[0]}, batches, calls)
            (floor_min, floor_mid), (raw_min, raw_mid) = got["floor"], got["raw"]
            lines.append(f"| {case} | {floor_min:.2f} / {floor_mid:.2f} | {raw_min:.2f} / {raw_mid:.2f} "
                         f"| {raw_min / (raw_min + floor_min):.3f} / {raw_mid / (raw_mid + floor_mid):.3f} |")
        return "\n".join(lines)
    finally:
        session.close()


def main(argv: list[str]) -> None:
    batches = int(argv[0]) if len(argv) > 0 else 10
    calls = int(argv[1]) if len(argv) > 1 else 2000
    print(run(batches, calls))


if __name__ == "__main__":
    main(sys.argv[1:])
