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
    ("C_FindObjects, 100,000 objects", "us", False, {"ours": 100.0, "softhsm": float("nan")}),
    ("gone", "us", False, {"ours": 1.0}),
)
NEW = _results(
    ("C_Sign ECDSA P-256", "ops/s", True, {"ours": 700.0, "softhsm": 810.0, "cryptography": 6500.0}),
    ("C_Initialize", "ms", False, {"ours": 200.0, "softhsm": 520.0}),
    ("unwrap AES_KEY_WRAP", "ops/s", True, {"ours": 2400.0}),
    ("C_FindObjects, 100,000 objects", "us", False, {"ours": 100.0, "softhsm": float("nan")}),
    ("new row", "ops/s", True, {"ours": 1.0}),
)


def _report(base: dict, new: dict, band: float = 25.0) -> tuple[list[str], int]:
    text, status = compare.report(compare.load(json.dumps(base)), compare.load(json.dumps(new)), band)
    return text.splitlines(), status


def test_report_names_each_move_beyond_the_band_by_its_direction() -> None:
    assert _report(BASE, NEW) == ([
        "5 rows against 5; noise band ±25 %",
        "WORSE -30 %  C_Sign ECDSA P-256 [ours]: 1,000 -> 700 ops/s; against cryptography -46 %",
        "better +30 %  C_Sign ECDSA P-256 [cryptography]: 5,000 -> 6,500 ops/s",
        "better -33 %  C_Initialize [ours]: 300 -> 200 ms; against softhsm -36 %",
        "only in the new run: new row",
        "only in the base: gone",
    ], 1)  # ours got worse beyond the band, also against the cryptography column


def test_a_move_every_column_shares_is_the_machine() -> None:
    """Ours 40 % slower, but `cryptography` in the same run 37.5 % slower too: not counted."""
    base = _results(("wrap RSA_AES", "ops/s", True, {"ours": 1000.0, "cryptography": 4000.0}))
    new = _results(("wrap RSA_AES", "ops/s", True, {"ours": 600.0, "cryptography": 2500.0}))
    assert _report(base, new) == ([
        "1 rows against 1; noise band ±25 %",
        "WORSE -40 %  wrap RSA_AES [ours]: 1,000 -> 600 ops/s; against cryptography -4 %",
        "WORSE -38 %  wrap RSA_AES [cryptography]: 4,000 -> 2,500 ops/s",
    ], 0)


def test_a_wider_band_passes_the_same_runs() -> None:
    lines, status = _report(BASE, NEW, 50.0)
    assert (lines[:2], status) == (["5 rows against 5; noise band ±50 %", "no row moved beyond the band"], 0)


def test_command_line_reads_files_and_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps(BASE))
    (tmp_path / "new.json").write_text(json.dumps(BASE))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), str(tmp_path / "new.json"),
                          str(tmp_path / "base.json")], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "5 rows against 5; noise band ±25 %\nno row moved beyond the band\n")
    missing = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), str(tmp_path / "none.json"),
                              str(tmp_path / "base.json")], capture_output=True, text=True, timeout=60)
    assert (missing.returncode, missing.stderr) == (
        1, f"bench/compare.py: {tmp_path / 'none.json'}: No such file or directory (run `make bench` first)\n")
