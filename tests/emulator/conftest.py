"""Fixtures for the module emulator's unit tests: every test gets its own kmdata under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.acl import Acl, Action
from emulator.module import Module

# test_tokens.py uses the same two PINs.
SO_PIN = b"so-secret-1"
USER_PIN = b"user-1234"

#: What most test keys may do: enough to store, use and delete them.
EVERYDAY = (Action.SIGN, Action.VERIFY, Action.ENCRYPT, Action.DECRYPT, Action.DESTROY,
            Action.REDUCE_ACL, Action.GET_APPDATA)


@pytest.fixture
def kmdata(tmp_path: Path) -> Path:
    return tmp_path / "kmdata"


@pytest.fixture
def module(kmdata: Path) -> Module:
    return Module.open(kmdata)


@pytest.fixture
def everyday_acl() -> Acl:
    return Acl.allowing(EVERYDAY)


@pytest.fixture
def token(module: Module) -> str:
    """A token with both PINs set; returns its hash."""
    info = module.init_token("test token", SO_PIN)
    so = module.login(info.hash, "so", SO_PIN)
    module.init_user_pin(info.hash, so, USER_PIN)
    return info.hash
