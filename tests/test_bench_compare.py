"""bench/compare.py: which rows of a new bench run moved beyond the noise band (no timing here: the
figures are made up, the report is checked to the letter)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
compare = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = compare  # dataclasses look their module up while it loads
_SPEC.loader.exec_module(compare)


def _results(*rows: tuple[str, str, bool, dict[str, float]]) -> dict:
    return {"machine": {}, "rows": [{"op": op, "unit": unit, "higher_better": higher, "values": values,
                                     "notes": {}, "group": "", "x": None} for op, unit, higher, values in rows]}


BASE = _results(
    ("C_Sign ECDSA P-256", "ops/s", True, {"ours": 1000.0, "softhsm": 800.0, "cryptography": 5000.0}),
    ("C_Initialize", "ms", False, {"ours": 300.0, "softhsm": 500.0}),
    ("unwrap AES_KEY_WRAP", "ops/s", True, {"ours": 2000.0}),
    ("gone", "us", False, {"ours": 1.0}),
)
NEW = _results(
    ("C_Sign ECDSA P-256", "ops/s", True, {"ours": 700.0, "softhsm": 810.0, "cryptography": 6500.0}),
    ("C_Initialize", "ms", False, {"ours": 200.0, "softhsm": 520.0}),
    ("unwrap AES_KEY_WRAP", "ops/s", True, {"ours": 2400.0}),
    ("new row", "ops/s", True, {"ours": 1.0}),
)


def test_report_names_each_move_beyond_the_band_by_its_direction() -> None:
    text, status = compare.report(compare.load(json.dumps(BASE)), compare.load(json.dumps(NEW)), 25.0)
    assert text.splitlines() == [
        "4 rows against 4; noise band ±25 %",
        "WORSE -30 %  C_Sign ECDSA P-256 [ours]: 1,000 -> 700 ops/s",
        "better +30 %  C_Sign ECDSA P-256 [cryptography]: 5,000 -> 6,500 ops/s",
        "better -33 %  C_Initialize [ours]: 300 -> 200 ms",
        "only in the new run: new row",
        "only in the base: gone",
    ]
    assert status == 1  # ours got worse beyond the band


def test_a_wider_band_passes_the_same_runs() -> None:
    text, status = compare.report(compare.load(json.dumps(BASE)), compare.load(json.dumps(NEW)), 35.0)
    assert text.splitlines()[:2] == ["4 rows against 4; noise band ±35 %", "no row moved beyond the band"]
    assert status == 0


def test_command_line_reads_files_and_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps(BASE))
    (tmp_path / "new.json").write_text(json.dumps(BASE))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), str(tmp_path / "new.json"),
                          str(tmp_path / "base.json")], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "4 rows against 4; noise band ±25 %\nno row moved beyond the band\n")
    missing = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), str(tmp_path / "none.json"),
                              str(tmp_path / "base.json")], capture_output=True, text=True, timeout=60)
    assert (missing.returncode, missing.stderr) == (
        1, f"bench/compare.py: {tmp_path / 'none.json'}: No such file or directory (run `make bench` first)\n")
