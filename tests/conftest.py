"""Puts tests/ on sys.path for every folder's tests (p11ctypes, the one ctypes PKCS#11 caller, lives
here), and the fixtures tests of more than one folder use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the key blobs opened (authenticated and decrypted) while the test runs."""
    from emulator import blobs

    seen: list[str] = []
    real = blobs.decode

    def counting(raw, seal_key, what):
        seen.append(what)
        return real(raw, seal_key, what)
    monkeypatch.setattr(blobs, "decode", counting)
    return seen
