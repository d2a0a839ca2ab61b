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


def test_startprobe_runs_once_per_row() -> None:
    """`make bench`'s start-up table: each row once, with a tiny world; the forwarded row's server
    is started by the library and stopped by the probe."""
    env = {k: v for k, v in os.environ.items() if k not in ("NFAST_KMDATA", "SOFTHSM2_CONF")}
    rows = [[], ["--env", "SOFTSHIELD_MODE=hardserver"], ["/usr/lib/softhsm/libsofthsm2.so"]]
    for extra in rows:
        result = subprocess.run([sys.executable, "bench/startprobe.py", *extra, "--runs", "1", "--keys", "3"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        row = result.stdout.strip().splitlines()[-1].split("|")
        assert len(row) == 10 and row[2].strip() == "3" and row[3].strip() == "1", result.stdout
