"""Results of one `make bench` run: the table on stdout, build/bench/results.json, and PNG plots.

Every figure is a row (operation) with a value per implementation (ours, softhsm, opencryptoki,
cryptography); a peer without the row (or the run without that peer) shows "-".
Ratios are "ours is this many times better": ours/theirs for rates, theirs/ours for times and memory.
"""

from __future__ import annotations

import json
import math
import sys
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
IMPLS = ("ours", "softhsm", "opencryptoki", "cryptography")
#: The peers a row is compared with: (implementation, column title).
PEERS = (("softhsm", "SoftHSM2"), ("opencryptoki", "opencryptoki"), ("cryptography", "cryptography"))


@dataclass
class Row:
    op: str
    unit: str  # "ops/s", "ms", "us", "MB"
    higher_better: bool
    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # per implementation: what was measured instead
    group: str = ""
    x: float | None = None  # threads or object count, for the plots


ROWS: dict[str, Row] = {}


def record(op: str, impl: str, value: float, *, unit: str = "ops/s", higher_better: bool = True,
           note: str = "", group: str = "", x: float | None = None) -> None:
    row = ROWS.setdefault(op, Row(op, unit, higher_better, group=group, x=x))
    row.values[impl] = value
    if note:
        row.notes[impl] = note


def _value(row: Row, impl: str) -> float | None:
    value = row.values.get(impl)
    return None if value is None or math.isnan(value) else value


def ratio(row: Row, other: str) -> float | None:
    ours, theirs = _value(row, "ours"), _value(row, other)
    if not ours or not theirs:
        return None
    return ours / theirs if row.higher_better else theirs / ours


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "?"
    try:
        softhsm = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        softhsm = "?"
    try:
        opencryptoki = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "opencryptoki"], capture_output=True,
                                      text=True).stdout.strip()
    except OSError:
        opencryptoki = ""
    import cryptography

    return {"nproc": str(os.cpu_count()), "cpu": model, "memory": memory, "python": platform.python_version(),
            "cryptography": cryptography.__version__, "softhsm2": softhsm, "opencryptoki": opencryptoki or "-", "kernel": platform.release()}


def table() -> str:
    head = ("operation", "unit", "ours", *(title for _impl, title in PEERS),
            *(f"ours/{title}" for _impl, title in PEERS))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS.values():
        values = []
        for impl, _title in PEERS:
            cell = _fmt(_value(row, impl))
            if impl in row.notes:
                cell += f" ({row.notes[impl]})"
            values.append(cell)
        ratios = [ratio(row, impl) for impl, _title in PEERS]
        lines.append("| " + " | ".join((row.op, row.unit, _fmt(_value(row, "ours")), *values,
                                          *(f"{r:.2f}x" if r else "-" for r in ratios))) + " |")
    return "\n".join(lines)


def plots(out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    for group, title, xlabel, ylabel, logx in (
        ("threads-wrap", "C_WrapKey RSA_AES_KEY_WRAP (RSA-2048, AES-256)", "threads", "wraps/s", False),
        ("threads-unwrap", "C_UnwrapKey RSA_AES_KEY_WRAP (RSA-2048, AES-256)", "threads", "unwraps/s", False),
        ("threads-kw-wrap", "C_WrapKey AES_KEY_WRAP (AES-256)", "threads", "wraps/s", False),
        ("find", "C_FindObjects by label", "token objects", "us per find (init+find+final)", True),
    ):
        rows = sorted((r for r in ROWS.values() if r.group == group and r.x is not None), key=lambda r: r.x)
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for impl, label in (("ours", "softshield"), *PEERS):
            pts = [(r.x, r.values[impl]) for r in rows if impl in r.values]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        if logx:
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            ax.set_xticks(sorted({r.x for r in rows}))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"{group}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path)
    return made


def write(out: Path = OUT, info: dict | None = None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    info = info or machine()
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "rows": [asdict(r) | {f"ratio_{impl}": ratio(r, impl) for impl, _title in PEERS}
                                   for r in ROWS.values()]}, indent=2))
    text = table()
    (out / "table.md").write_text(text + "\n")
    made = plots(out)
    summary = (f"\nmachine: {info['cpu']}, nproc {info['nproc']}, {info['memory']}; "
               f"{info['softhsm2'] and 'SoftHSM2 ' + info['softhsm2']}, "
               f"opencryptoki {info.get('opencryptoki', '-')}, cryptography {info['cryptography']}\n"
               f"{text}\nwritten: {out / 'results.json'}, {', '.join(str(p) for p in made)}\n")
    return summary


if __name__ == "__main__":
    # Re-render table and plots from a results.json: python bench/report.py build/bench/results.json
    data = json.loads(Path(sys.argv[1]).read_text())
    for r in data["rows"]:
        for impl, _title in PEERS:
            r.pop(f"ratio_{impl}", None)
        ROWS[r["op"]] = Row(**r)
    print(write(Path(sys.argv[1]).parent, data["machine"]))
