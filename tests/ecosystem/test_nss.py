"""NSS (certutil/modutil from libnss3-tools) with softshield as a module in its database: certutil
generates an RSA key pair in the token and a self-signed certificate signed by it, lists both, and
OpenSSL verifies the certificate's signature; embedded, and forwarded to a hardserver the library
starts."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from ecoenv import KMDATA, SO, USER_PIN, run

CERTUTIL, MODUTIL = shutil.which("certutil"), shutil.which("modutil")

pytestmark = pytest.mark.skipif((CERTUTIL is None or MODUTIL is None) and not os.environ.get("CI"),
                                reason="libnss3-tools not installed (scripts/setup.sh installs it)")


@pytest.mark.parametrize("mode", ["embedded", "hardserver"])
def test_certutil_makes_a_key_and_certificate_in_the_token(mode: str, token_label: str, tmp_path: Path) -> None:
    assert CERTUTIL and MODUTIL, "libnss3-tools is installed by scripts/setup.sh"
    run_dir = Path(tempfile.mkdtemp(prefix="ss-nss-"))
    env = {"NFAST_KMDATA": KMDATA, "SOFTSHIELD_MODE": mode}
    if mode == "hardserver":
        env["SOFTSHIELD_HARDSERVER"] = str(run_dir / "hardserver.sock")
    db = f"sql:{tmp_path / 'nssdb'}"
    (tmp_path / "nssdb").mkdir()
    (tmp_path / "pw").write_text(USER_PIN)
    (tmp_path / "noise").write_bytes(os.urandom(64))
    nickname = f"{token_label}:nss-{mode}"
    try:
        run(CERTUTIL, "-N", "-d", db, "--empty-password", env=env)
        run(MODUTIL, "-dbdir", db, "-add", "softshield", "-libfile", str(SO), "-force", env=env, input="\n")
        listed = run(MODUTIL, "-dbdir", db, "-list", env=env).stdout
        assert f"token: {token_label}" in listed
        run(CERTUTIL, "-S", "-n", f"nss-{mode}", "-s", f"CN=nss {mode}", "-x", "-t", "C,,", "-k", "rsa",
            "-g", "2048", "-h", token_label, "-d", db, "-f", str(tmp_path / "pw"), "-z", str(tmp_path / "noise"),
            env=env, timeout=180)
        keys = run(CERTUTIL, "-K", "-d", db, "-h", token_label, "-f", str(tmp_path / "pw"), env=env).stdout
        assert "rsa      " in keys and nickname in keys
        pem = run(CERTUTIL, "-L", "-n", nickname, "-a", "-d", db, "-h", token_label, "-f", str(tmp_path / "pw"),
                  env=env).stdout
        (tmp_path / "cert.pem").write_text(pem)
        verified = run("openssl", "verify", "-CAfile", str(tmp_path / "cert.pem"), str(tmp_path / "cert.pem"))
        assert verified.stdout.strip().endswith(": OK")
        if mode == "hardserver":
            assert "client pid" in (run_dir / "hardserver.log").read_text()
    finally:
        pid_file = run_dir / "hardserver.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        shutil.rmtree(run_dir, ignore_errors=True)
