"""Copy the tables of the latest `make bench` (docs/bench/) into docs/benchmarks.md, between its
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->` markers, so the page a reader opens is the run's own.

    python bench/splice_docs.py [--docs docs]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table_lines(text: str) -> str:
    """The markdown table rows of `text` (a file may open with a line saying how it was made)."""
    return "\n".join(line for line in text.splitlines() if line.startswith("|"))


def machine_line(results: dict) -> str:
    m = results.get("machine", {})
    peers = ", ".join(f"{name} {m[key]}" for key, name in (("softhsm2", "SoftHSM2"), ("opencryptoki", "opencryptoki"))
                      if m.get(key))
    return (f"Machine: {m.get('cpu', '?')}, `nproc` {m.get('nproc', '?')}, {m.get('memory', '?')}, "
            f"Python {m.get('python', '?')}, cryptography {m.get('cryptography', '?')}; {peers}.")


def splice(page: str, name: str, content: str) -> str:
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
    if not pattern.search(page):
        raise SystemExit(f"splice_docs: docs/benchmarks.md has no <!-- bench:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(2), page, count=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    bench = args.docs / "bench"
    page_path = args.docs / "benchmarks.md"
    try:
        results = json.loads((bench / "results.json").read_text())
        page = page_path.read_text()
        blocks = {
            "startup": table_lines((bench / "startup.md").read_text()),
            "table": machine_line(results) + "\n\n" + table_lines((bench / "table.md").read_text()),
            "floor": table_lines((bench / "floor.md").read_text()),
        }
    except (OSError, ValueError) as exc:
        print(f"splice_docs: {exc}", file=sys.stderr)
        return 1
    for name, content in blocks.items():
        page = splice(page, name, content)
    page_path.write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
