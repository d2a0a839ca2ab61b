"""Compare two `make bench` results: which rows moved beyond the machine's noise.

    python bench/compare.py [NEW] [BASE] [--band PERCENT]

NEW defaults to build/bench/results.json (the run just made), BASE to the docs/bench/results.json
committed at HEAD (read through git, because `make bench` copies its own run over the working
copy). Each row of either file is compared per implementation; a row whose value moved by more than
`--band` percent (default 25: figures on this shared 2-vCPU machine move by about ±20 % between runs,
bench/NOTES.md) is printed, better or worse by the row's own direction (ops/s up is better, us/ms/MB
down is better). The SoftHSM2 and `cryptography` columns did not change with our code, so each `ours`
line also says how far ours moved against them (`cryptography` where the row has it, else SoftHSM2):
when the machine was busier in one run, every column moved and this figure did not.

Exit status 1 when an `ours` figure is worse beyond the band both as measured and against its
control column (or as measured, for a row without one), else 0. A report, never a test (the house
rule: benchmarks are never timed assertions in tests).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEW = ROOT / "build" / "bench" / "results.json"
BASE = "docs/bench/results.json"
BAND = 25.0
IMPLS = ("ours", "softhsm", "cryptography")
CONTROLS = ("cryptography", "softhsm")  # what ours is measured against, first present in both runs


@dataclass(frozen=True)
class Move:
    op: str
    impl: str
    unit: str
    base: float
    new: float
    change: float  # percent, signed as the value moved
    worse: bool
    control: str | None = None  # ours only: the column `relative` is measured against
    relative: float | None = None  # percent ours moved against `control`, signed as `change`
    band: float = BAND

    @property
    def counts(self) -> bool:
        """Ours, worse beyond the band, and not explained by its control column moving too."""
        if self.impl != "ours" or not self.worse:
            return False
        if self.relative is None:
            return True
        return (self.relative < 0) == (self.change < 0) and abs(self.relative) > self.band


def load(text: str) -> dict[str, dict[str, Any]]:
    """The rows of one results.json, by operation."""
    return {row["op"]: row for row in json.loads(text)["rows"]}


def moves(base: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], band: float) -> list[Move]:
    """Every (row, implementation) present in both whose value moved by more than `band` percent."""
    found = []
    for op, row in new.items():
        old = base.get(op)
        if old is None:
            continue
        for impl in IMPLS:
            before, after = _figure(old, impl), _figure(row, impl)
            if before is None or after is None:
                continue
            change = (after - before) / before * 100
            if abs(change) > band:
                control, relative = _against_control(old, row, impl)
                found.append(Move(op, impl, row["unit"], before, after, change,
                                  worse=(change < 0) == row["higher_better"], control=control,
                                  relative=relative, band=band))
    return found


def _figure(row: dict[str, Any], impl: str) -> float | None:
    """A measured figure: None where the implementation was not measured (absent, NaN or zero)."""
    value = row["values"].get(impl)
    return None if value is None or math.isnan(value) or value == 0 else float(value)


def _against_control(old: dict[str, Any], row: dict[str, Any], impl: str) -> tuple[str | None, float | None]:
    """How far ours moved once its control column's move is divided out: (control, percent)."""
    if impl != "ours":
        return None, None
    for control in CONTROLS:
        base_c, new_c = _figure(old, control), _figure(row, control)
        if base_c is not None and new_c is not None:
            ratio_before = old["values"]["ours"] / base_c
            ratio_after = row["values"]["ours"] / new_c
            return control, (ratio_after - ratio_before) / ratio_before * 100
    return None, None


def report(base: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], band: float) -> tuple[str, int]:
    """The printed report and the exit status."""
    found = moves(base, new, band)
    lines = [f"{len(new)} rows against {len(base)}; noise band ±{band:g} %"]
    if not found:
        lines.append("no row moved beyond the band")
    for m in found:
        against = f"; against {m.control} {m.relative:+.0f} %" if m.control is not None else ""
        lines.append(f"{'WORSE' if m.worse else 'better'} {m.change:+.0f} %  {m.op} [{m.impl}]: "
                     f"{m.base:,.4g} -> {m.new:,.4g} {m.unit}{against}")
    lines += [f"only in the new run: {op}" for op in new if op not in base]
    lines += [f"only in the base: {op}" for op in base if op not in new]
    status = 1 if any(m.counts for m in found) else 0
    return "\n".join(lines), status


def _read_base(spec: str) -> str:
    """A results.json path, or `REV:PATH` read through git (default HEAD's committed table)."""
    path = Path(spec)
    if path.is_file():
        return path.read_text()
    rev, _, name = spec.rpartition(":")
    result = subprocess.run(["git", "show", f"{rev or 'HEAD'}:{name}"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench/compare.py: no results at {spec}: {result.stderr.strip()}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new", nargs="?", default=str(NEW), help="results.json of the new run")
    parser.add_argument("base", nargs="?", default=f"HEAD:{BASE}",
                        help="results.json to compare with: a path, or REV:PATH through git (default %(default)s)")
    parser.add_argument("--band", type=float, default=BAND, help="noise band in percent (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        new_text = Path(args.new).read_text()
    except OSError as exc:
        raise SystemExit(f"bench/compare.py: {args.new}: {exc.strerror} (run `make bench` first)") from None
    text, status = report(load(_read_base(args.base)), load(new_text), args.band)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
