"""bench/floorprobe.py keeps working: the null module builds, python-pkcs11 drives it through every
case, and the table it prints has a row per case with positive times and a bound below 1.

Tiny counts (2 batches x 20 calls) and no timing claims beyond "positive": the real figures come
from running the probe by hand. It runs in a subprocess, so that the null module is the only
PKCS#11 library that process loads (the bench fixtures load ours and SoftHSM2's).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import floorprobe

NUMBER = r"(\d+(?:\.\d+)?)"
ROW = re.compile(rf"^\| (?P<case>[^|]+?) \| {NUMBER} / {NUMBER} \| {NUMBER} / {NUMBER} \| {NUMBER} / {NUMBER} \|$")


def test_null_module_builds_and_exports_the_entry_point() -> None:
    module = floorprobe.build_module()
    assert module.stat().st_mtime >= floorprobe.SOURCE.stat().st_mtime
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(module)], capture_output=True, text=True,
                             check=True).stdout
    assert re.search(r"\bT C_GetFunctionList$", symbols, re.MULTILINE)


def test_probe_prints_a_bound_below_one_for_every_case() -> None:
    floorprobe.build_module()  # here, so that a compile error fails with cc's own message
    result = subprocess.run([sys.executable, str(Path(floorprobe.__file__)), "2", "20"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {m["case"]: [float(x) for x in m.groups()[1:]]
            for m in map(ROW.match, result.stdout.splitlines()) if m}
    assert set(rows) == {case for case, _build in floorprobe.CASES}, result.stdout
    for case, (floor_min, floor_mid, raw_min, raw_mid, bound_min, bound_mid) in rows.items():
        for value in (floor_min, floor_mid, raw_min, raw_mid, bound_min, bound_mid):
            assert math.isfinite(value) and value > 0, (case, result.stdout)
        assert floor_min <= floor_mid and raw_min <= raw_mid, (case, result.stdout)
        assert bound_min < 1 and bound_mid < 1, (case, result.stdout)
