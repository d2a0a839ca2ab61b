"""p11-kit (module file, list-modules, p11-kit-proxy) and GnuTLS p11tool against our library."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ecoenv import P11_KIT_PROXY, SO, USER_PIN, run, softshield


def p11kit_run(module_dir: Path, home: Path, *argv: str) -> str:
    """Run argv with p11-kit seeing only our module file. p11-kit ignores ~/.config/pkcs11 for root,
    so as root the module directory is bind-mounted over the system one in a private mount namespace."""
    if os.getuid() != 0:
        target = home / ".config" / "pkcs11" / "modules"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(module_dir / "softshield.module", target)
        return run(*argv, env={"HOME": str(home)}).stdout
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: p11-kit would only read /etc/pkcs11/modules")
    script = f"mount --bind {module_dir} /usr/share/p11-kit/modules && exec \"$@\""
    probe = run("unshare", "-m", "--propagation", "private", "sh", "-c", "true", check=False)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.strip()}")
    return run("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv).stdout


@pytest.fixture()
def module_dir(tmp_path: Path) -> Path:
    d = tmp_path / "modules"
    softshield("p11-kit", "install", "--dir", str(d))  # names this checkout's library
    assert f"module: {SO.resolve()}" in (d / "softshield.module").read_text().splitlines()
    return d


def test_p11kit_lists_module_and_proxy_loads_it(module_dir: Path, tmp_path: Path, token_label: str):
    out = p11kit_run(module_dir, tmp_path, "p11-kit", "list-modules")
    assert f"softshield: {SO}" in out
    assert "library-manufacturer: softshield" in out
    assert f"token: {token_label}" in out
    out = p11kit_run(module_dir, tmp_path, "pkcs11-tool", "--module", str(P11_KIT_PROXY), "-L")
    assert "token label        : loadshared accelerator" in out
    assert f"token label        : {token_label}" in out


def test_p11tool_lists_generates_and_signs(token_label: str):
    env = {"GNUTLS_PIN": USER_PIN}
    tokens = run("p11tool", "--provider", str(SO), "--list-tokens", env=env).stdout
    assert f"token={token_label}" in tokens and "manufacturer=softshield" in tokens
    run("p11tool", "--provider", str(SO), "--login", "--generate-privkey", "rsa", "--bits", "2048",
        "--label", "gnutls-key", "--id", "0a", f"pkcs11:token={token_label}", env=env)
    objects = run("p11tool", "--provider", str(SO), "--login", "--list-all", f"pkcs11:token={token_label}",
                  env=env).stdout
    assert "object=gnutls-key;type=private" in objects and "id=%0A" in objects
    signed = run("p11tool", "--provider", str(SO), "--login", "--test-sign",
                 f"pkcs11:token={token_label};object=gnutls-key", env=env)
    signed = signed.stdout + signed.stderr  # p11tool reports the test on stderr
    assert "Signing using RSA-SHA256... ok" in signed
    assert "Verifying against public key in the token... ok" in signed
