"""Compare two `make bench` results: which rows moved beyond the machine's noise.

    python bench/compare.py [NEW] [BASE] [--band PERCENT]

NEW defaults to build/bench/results.json (the run just made), BASE to the docs/bench/results.json
committed at HEAD (read through git, because `make bench` copies its own run over the working
copy). Each row of either file is compared per implementation; a row whose value moved by more than
`--band` percent (default 25: figures on this shared 2-vCPU machine move by about ±20 % between runs,
bench/NOTES.md) is printed, better or worse by the row's own direction (ops/s up is better, us/ms/MB
down is better). The SoftHSM2 and `cryptography` columns did not change with our code: when they
moved as far as ours, the machine moved, not the code.

Exit status 1 when an `ours` figure is worse beyond the band, else 0; a report, never a test (the
house rule: benchmarks are never timed assertions in tests).
"""

from __future__ import annotations

import argparse
import json
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


@dataclass(frozen=True)
class Move:
    op: str
    impl: str
    unit: str
    base: float
    new: float
    change: float  # percent, signed as the value moved
    worse: bool


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
            before, after = old["values"].get(impl), row["values"].get(impl)
            if not before or after is None:
                continue
            change = (after - before) / before * 100
            if abs(change) > band:
                found.append(Move(op, impl, row["unit"], before, after, change,
                                  worse=(change < 0) == row["higher_better"]))
    return found


def report(base: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], band: float) -> tuple[str, int]:
    """The printed report and the exit status."""
    found = moves(base, new, band)
    lines = [f"{len(new)} rows against {len(base)}; noise band ±{band:g} %"]
    if not found:
        lines.append("no row moved beyond the band")
    for m in found:
        lines.append(f"{'WORSE' if m.worse else 'better'} {m.change:+.0f} %  {m.op} [{m.impl}]: "
                     f"{m.base:,.4g} -> {m.new:,.4g} {m.unit}")
    lines += [f"only in the new run: {op}" for op in new if op not in base]
    lines += [f"only in the base: {op}" for op in base if op not in new]
    status = 1 if any(m.worse and m.impl == "ours" for m in found) else 0
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
