"""OpenSSL through libengine-pkcs11-openssl: pkeyutl sign/verify, a self-signed certificate made
with `openssl req`, and a TLS handshake with s_server's key in our token."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ecoenv import ENGINE, SO, USER_PIN, free_port, run

pytestmark = pytest.mark.skipif(not ENGINE.is_file(), reason="libengine-pkcs11-openssl not installed")


@pytest.fixture(scope="module")
def ssl_env(tmp_path_factory) -> dict:
    conf = tmp_path_factory.mktemp("openssl") / "openssl.cnf"
    conf.write_text(f"""openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = {ENGINE}
MODULE_PATH = {SO}
PIN = {USER_PIN}
init = 0
""")
    return {"OPENSSL_CONF": str(conf)}


def test_pkeyutl_sign_verifies_with_exported_public_key(rsa_key: str, ssl_env: dict, tmp_path: Path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"\x01" * 32)  # a SHA-256-sized digest: pkeyutl signs it as given
    run("openssl", "pkeyutl", "-engine", "pkcs11", "-keyform", "engine", "-inkey", rsa_key,
        "-sign", "-in", str(data), "-out", str(tmp_path / "sig"), env=ssl_env)
    assert (tmp_path / "sig").stat().st_size == 256
    run("openssl", "pkey", "-engine", "pkcs11", "-inform", "engine", "-in",
        rsa_key.replace("type=private", "type=public"), "-pubout", "-out", str(tmp_path / "pub.pem"), env=ssl_env)
    ok = run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-in", str(data),
             "-sigfile", str(tmp_path / "sig"))
    assert "Signature Verified Successfully" in ok.stdout
    data.write_bytes(b"\x02" * 32)
    bad = run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-in", str(data),
              "-sigfile", str(tmp_path / "sig"), check=False)
    assert bad.returncode != 0


def test_tls_server_key_in_token(rsa_key: str, ssl_env: dict, tmp_path: Path):
    cert = tmp_path / "cert.pem"
    run("openssl", "req", "-engine", "pkcs11", "-keyform", "engine", "-key", rsa_key, "-new", "-x509",
        "-days", "1", "-subj", "/CN=localhost", "-out", str(cert), env=ssl_env)
    port = free_port()
    import os

    server = subprocess.Popen(
        ["openssl", "s_server", "-engine", "pkcs11", "-keyform", "engine", "-key", rsa_key, "-cert", str(cert),
         "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-www"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **ssl_env})
    try:
        deadline = time.monotonic() + 30
        client = None
        while time.monotonic() < deadline:
            client = run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cert),
                         "-verify_return_error", "-servername", "localhost", input="Q\n", timeout=30, check=False)
            if "CONNECTED" in client.stdout:
                break
            time.sleep(0.3)
        assert client is not None and client.returncode == 0, client.stdout + client.stderr
        assert "Verify return code: 0 (ok)" in client.stdout
        assert "Cipher is TLS_" in client.stdout  # a TLS 1.3 handshake: the token made an RSA-PSS signature
    finally:
        server.kill()
        server.communicate(timeout=10)
