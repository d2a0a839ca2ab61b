"""The benchmarks keep working: bench/ run once with tiny sizes and no timing (CI).

`make bench` runs the real thing; here every benchmark runs once (pytest-benchmark disabled), with
SOFTSHIELD_BENCH_SMOKE=1 (100 objects, 50 ms thread runs), in a subprocess so that its libraries,
tokens and kmdata stay apart from the other tests'. No figure is checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_run_once() -> None:
    env = {**os.environ, "SOFTSHIELD_BENCH_SMOKE": "1"}
    env.pop("NFAST_KMDATA", None)
    env.pop("SOFTHSM2_CONF", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-q", "-x", "--benchmark-disable", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert (ROOT / "build" / "bench" / "smoke" / "results.json").exists()
