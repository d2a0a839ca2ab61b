"""Fixtures for the reliability tests: every test gets its own kmdata and drives the .so in child
processes (crash, load, fuzz), so nothing here touches the library state of the pytest process."""

from __future__ import annotations

from pathlib import Path

import pytest

from relenv import SO


@pytest.fixture
def kmdata(tmp_path: Path) -> Path:
    assert SO.exists(), "build the library first: make"
    path = tmp_path / "kmdata"
    path.mkdir(mode=0o700)
    return path
