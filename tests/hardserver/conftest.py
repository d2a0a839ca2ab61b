from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from hsenv import CLIENT_SO, SERVER_SO, init_token, new_server  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def restore_environment():
    """The client libraries read SOFTSHIELD_HARDSERVER and friends from this process's environment,
    which these tests set: put it back after each module, so that a later test that loads
    libsoftshield-pkcs11.so in this process is not sent to a server that is gone."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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


@pytest.fixture(scope="module")
def one_module_server():
    """A server with one worker, whatever the default: for the rules between clients that share one
    module (logins joined, session objects hidden, session counts). With several workers only the
    clients of one worker share a module, and the dispatcher puts two clients on two workers."""
    srv = new_server(workers=1)
    yield srv
    if srv.alive():
        srv.terminate()
    shutil.rmtree(srv.work, ignore_errors=True)
