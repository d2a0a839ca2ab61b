from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from netenv import new_client, softshield, start_server  # noqa: E402


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="softshield-net-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def signing_server(request, workdir):
    """A module with an RSA key `netkey`, served over TLS by one process or by a dispatcher and two workers."""
    server = start_server(workdir, f"sign-{request.param}", workers=request.param)
    softshield("generatekey", "--batch", "simple", "type=RSA", "size=2048", "protect=module", "ident=netkey",
               "plainname=netkey", env=server.env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def enrolled(signing_server, workdir):
    """A client host enrolled with the signing server and permitted (unprivileged)."""
    host = new_client(workdir, signing_server, f"client-{signing_server.workers}")
    host.enroll()
    signing_server.permit(host.key_hash)
    return host
