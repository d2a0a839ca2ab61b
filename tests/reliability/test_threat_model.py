"""docs/THREAT_MODEL.md points at tests: every `file::test` it names must exist."""

from __future__ import annotations

import re

from relenv import ROOT


def test_every_cited_test_exists() -> None:
    text = (ROOT / "docs" / "THREAT_MODEL.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(cited) > 30
    missing = []
    for path, name in cited:
        source = ROOT / path
        if not source.exists() or (name and not re.search(rf"^def {name}\(", source.read_text(), re.M)):
            missing.append(f"{path}::{name}")
    assert missing == []
