"""Fixtures for the ecosystem tests (helpers in ecoenv)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ecoenv import SO, USER_PIN, init_token, pkcs11_tool  # noqa: E402


@pytest.fixture(scope="module")
def token_label() -> str:
    assert SO.exists(), "build the library first: make"
    return init_token()


@pytest.fixture(scope="module")
def rsa_key(token_label: str) -> str:
    """An RSA-2048 pair labelled `eco-rsa`, id 01, made with pkcs11-tool; returns its private key URI."""
    pkcs11_tool("--token-label", token_label, "--login", "--pin", USER_PIN, "--keypairgen",
                "--key-type", "rsa:2048", "--label", "eco-rsa", "--id", "01")
    return f"pkcs11:token={token_label};object=eco-rsa;type=private"
