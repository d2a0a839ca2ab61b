"""Load: 4 processes x 8 threads create, use (HMAC sign, AES encrypt), find and destroy keys on one
token for a bounded time, once per way of calling C_Initialize. No error at all is expected (every
thread has its own session, so nothing the spec allows to fail under contention applies), no
handle answers for another thread's object, every key kept is there afterwards from a fresh process
and nothing destroyed comes back, and a watchdog fails the run on a stall.

SOFTSHIELD_LOAD_SECONDS (default 6) sets the time each variant runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from relenv import HERE, PY, child_env, p11cli

SECONDS = float(os.environ.get("SOFTSHIELD_LOAD_SECONDS", "6"))
PROCESSES, THREADS = 4, 8
STALL = 45.0  # seconds without progress in one thread: 32 writers share 2 cores and one lock
LABEL = "load"


@pytest.mark.parametrize("variant", ["null", "oslocking", "mutex"])
def test_processes_and_threads_on_one_token(kmdata: Path, variant: str) -> None:
    p11cli(kmdata, "mktoken", LABEL)
    start = time.monotonic()
    procs = [subprocess.Popen([PY, str(HERE / "load_worker.py"), variant, str(SECONDS), str(THREADS), LABEL,
                               str(STALL)], env=child_env(kmdata), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(PROCESSES)]
    reports = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=SECONDS + STALL + 60)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            pytest.fail(f"{variant}: a worker hung past the watchdog (deadlock outside Python?)")
        assert proc.returncode == 0, f"{variant}: worker exit {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"
        assert "Traceback" not in err, err[-4000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.monotonic() - start

    errors = [e for r in reports for e in r["errors"]]
    assert errors == []
    ops = {k: sum(r["ops"][k] for r in reports) for k in reports[0]["ops"]}
    # Every process did real work in every kind of operation.
    for report in reports:
        assert min(report["ops"].values()) >= THREADS, report["ops"]
    if variant == "mutex":
        for report in reports:
            calls = report["mutex_calls"]
            assert calls["create"] >= 1 and calls["lock"] >= 1 and calls["lock"] == calls["unlock"], calls
            assert calls["destroy"] == calls["create"], calls  # C_Finalize gave every mutex back

    kept = sorted(k for r in reports for k in r["kept"])
    inventory = p11cli(kmdata, "inventory", LABEL, timeout=120)[LABEL]
    # No key lost, none destroyed came back, and no session object leaked onto the token.
    assert sorted(inventory) == kept
    print(f"load[{variant}]: {PROCESSES}x{THREADS} for {SECONDS:.0f}s ({elapsed:.1f}s total): {ops}, "
          f"{len(kept)} kept")
