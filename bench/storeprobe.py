"""Cost of one durable key write (`Module.store_key`) with N keys already in the world, through the
emulator API (no .so): what the version ledger adds as the world grows. Prints one JSON line.

    .venv/bin/python bench/storeprobe.py [N ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.acl import Acl, Action  # noqa: E402
from emulator.crypto import keygen  # noqa: E402
from emulator.keys import Key  # noqa: E402
from emulator.module import Module  # noqa: E402

ACTIONS = (Action.ENCRYPT, Action.DECRYPT, Action.DESTROY)


def _key(i: int) -> Key:
    return Key(keygen.generate_secret("AES", 32), Acl.allowing(ACTIONS), plainname=f"k{i}")


def probe(n: int, writes: int = 40) -> dict:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        module = Module.open(Path(tmp) / "kmdata")
        module.store_keys([_key(i) for i in range(n)])
        times = []
        for i in range(writes):
            key = _key(n + i)
            start = time.perf_counter()
            module.store_key(key)
            times.append(time.perf_counter() - start)
        times.sort()
        return {"keys": n, "store_key_ms_min": times[0] * 1e3, "store_key_ms_median": times[len(times) // 2] * 1e3}


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["0", "3000", "10000"]:
        print(json.dumps(probe(int(arg))))
