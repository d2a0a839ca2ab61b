"""Fixtures for tests that drive the real .so: python-pkcs11 in this process, pkcs11-tool and a C
host in subprocesses, all sharing one throw-away kmdata (see p11env)."""

from __future__ import annotations

import pytest

from p11env import KMDATA, ROOT, SO, SO_PIN, USER_PIN, init_token, pkcs11_tool, spare_slot  # noqa: F401


@pytest.fixture(scope="session")
def so_path() -> str:
    assert SO.exists(), "build the library first: make"
    return str(SO)


@pytest.fixture(scope="session")
def lib(so_path: str):
    import pkcs11

    return pkcs11.lib(so_path)


@pytest.fixture(scope="module")
def token_label(so_path: str) -> str:
    return init_token()


@pytest.fixture(scope="module")
def token(lib, token_label: str):
    return lib.get_token(token_label=token_label)


@pytest.fixture
def session(token):
    with token.open(user_pin=USER_PIN, rw=True) as s:
        yield s
