"""Fixtures for the PKCS#11 3.2 / post-quantum tests: the real .so through python-pkcs11 in this
process (sharing tests/pkcs11's throw-away kmdata set-up, p11env)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pkcs11"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from p11env import SO, USER_PIN, init_token  # noqa: E402  (sets NFAST_KMDATA for this run)


@pytest.fixture(scope="session")
def lib():
    import pkcs11

    assert SO.exists(), "build the library first: make build"
    return pkcs11.lib(str(SO))


@pytest.fixture(scope="session")
def token_label() -> str:
    return init_token()


@pytest.fixture(scope="session")
def token(lib, token_label: str):
    return lib.get_token(token_label=token_label)


@pytest.fixture(scope="session")
def session(token):
    # One logged-in python-pkcs11 session for the run; the ctypes session (raw_session) opens after
    # it and shares the token's login state.
    with token.open(user_pin=USER_PIN, rw=True) as s:
        yield s


@pytest.fixture(scope="session")
def raw(lib):
    from p11ctypes import Raw

    return Raw(str(SO))


@pytest.fixture(scope="session")
def raw_session(raw, token, session) -> int:
    return raw.open_session(token.slot.slot_id, USER_PIN)
