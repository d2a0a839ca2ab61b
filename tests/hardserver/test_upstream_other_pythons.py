"""python-pkcs11's own test suite under Python 3.12 and 3.13, loading build/libsoftshield-pkcs11.so
(the one library every host loads): those processes run another Python, so the library forwards to
a hardserver it starts itself. Every upstream test must end as it does under the module's own
Python 3.11, where the same library embeds the module."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from hsenv import ROOT, venv_python

sys.path.insert(0, str(ROOT / "tests" / "pkcs11"))
from p11env import SO, init_token  # noqa: E402
from test_upstream_python_pkcs11 import UPSTREAM, run_suite  # noqa: E402


def _fresh_token(work: Path) -> dict[str, str]:
    kmdata = work / "kmdata"
    kmdata.mkdir(parents=True)
    env = {"NFAST_KMDATA": str(kmdata)}
    init_token("upstream", env=env)  # pkcs11-tool: a C host, the module embedded
    return env


@pytest.mark.skipif(not UPSTREAM.exists(), reason="run scripts/fetch_upstream_tests.sh")
def test_upstream_suite_under_other_pythons_matches_the_module_python(tmp_path: Path) -> None:
    own = run_suite(SO, "upstream", tmp_path / "own.xml", _fresh_token(tmp_path / "own"))
    passed = sum(1 for o in own.values() if o == "passed")
    assert passed > 50, f"the in-process run did not work: {own}"
    for version in ("3.12", "3.13"):
        run = Path(tempfile.mkdtemp(prefix="ss-up-"))  # sun_path is short: not under tmp_path
        socket_path = run / "run" / "hardserver.sock"
        env = {**_fresh_token(tmp_path / version), "SOFTSHIELD_HARDSERVER": str(socket_path),
               "SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT": "30"}
        try:
            theirs = run_suite(SO, "upstream", tmp_path / f"{version}.xml", env, python=venv_python(version))
            log = (run / "run" / "hardserver.log").read_text()
        finally:
            pid_file = run / "run" / "hardserver.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            shutil.rmtree(run, ignore_errors=True)
        assert log.count("hardserver listening on") == 1, log  # started once, by the first test's process
        differ = sorted(t for t in own.keys() | theirs.keys() if own.get(t) != theirs.get(t))
        assert not differ, f"Python {version} through the hardserver differs from in-process 3.11:\n" + "\n".join(
            f"{t}: in-process {own.get(t)}, {version} forwarded {theirs.get(t)}" for t in differ)
