from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from hsenv import CLIENT_SO, SERVER_SO, init_token, new_server  # noqa: E402


@pytest.fixture(scope="module")
def server():
    if not CLIENT_SO.is_file() or not SERVER_SO.is_file():
        pytest.fail(f"build the libraries first (make build): {CLIENT_SO}, {SERVER_SO}")
    srv = new_server()
    yield srv
    if srv.alive():
        srv.terminate()
    shutil.rmtree(srv.work, ignore_errors=True)


@pytest.fixture(scope="module")
def token(server) -> str:
    return init_token(server)
