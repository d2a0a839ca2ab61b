"""A hardserver serves only after bind() and open_module(): out of that order it says which step is
missing, under `python -O` as well (explicit checks, no asserts, which -O strips)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serving_out_of_order_names_the_missing_step_under_python_O(tmp_path: Path) -> None:
    sock = tmp_path / "hs.sock"
    script = textwrap.dedent(f"""
        from pkcs11_shim.hardserver.server import Hardserver
        server = Hardserver({str(sock)!r})
        for step in (server.serve_forever, lambda: server._call(None, 0, b"")):
            try:
                step()
            except RuntimeError as exc:
                print(exc)
    """)
    out = subprocess.run([sys.executable, "-O", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines() == [
        f"hardserver {sock}: not bound (bind() comes before serving)",
        f"hardserver {sock}: no module open (open_module() comes before serving)",
    ]
