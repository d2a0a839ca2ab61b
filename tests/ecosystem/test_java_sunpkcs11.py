"""A Java host (SunPKCS11) loading libsoftshield-pkcs11.so: the JVM runs no Python, so the module is
embedded in it; with SOFTSHIELD_MODE=hardserver the same program is forwarded to a server the library
starts. Either way it logs in, generates an EC key pair in the token, and signs with it."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from ecoenv import KMDATA, SO, USER_PIN, run

JAVA = shutil.which("java")
PROGRAM = Path(__file__).with_name("java") / "SignWithToken.java"

pytestmark = pytest.mark.skipif(JAVA is None and not os.environ.get("CI"), reason="no Java runtime")


@pytest.mark.parametrize("mode", ["embedded", "hardserver"])
def test_java_signs_in_the_token(mode: str, token_label: str, tmp_path: Path) -> None:
    assert JAVA, "Java (openjdk-17-jdk-headless) is installed by scripts/setup.sh"
    import pkcs11

    slot = pkcs11.lib(str(SO)).get_token(token_label=token_label).slot.slot_id
    config = tmp_path / "softshield.cfg"
    config.write_text(f"name = softshield\nlibrary = {SO}\nslot = {slot}\n")
    run_dir = Path(tempfile.mkdtemp(prefix="ss-java-"))
    env = {"NFAST_KMDATA": KMDATA, "SOFTSHIELD_MODE": mode, "SOFTSHIELD_HARDSERVER": str(run_dir / "hs.sock")}
    if mode == "embedded":
        del env["SOFTSHIELD_HARDSERVER"]
    try:
        out = run(JAVA, str(PROGRAM), str(config), USER_PIN, env=env, timeout=180).stdout
        assert out.splitlines()[-1] == "verified", out
        if mode == "hardserver":
            assert "client pid" in (run_dir / "hs.log").read_text()
        else:
            assert not (run_dir / "hs.log").exists()
    finally:
        pid_file = run_dir / "hs.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        shutil.rmtree(run_dir, ignore_errors=True)

