"""docs/recipes/two-modules.sh run verbatim from an empty folder, with two free loopback ports for the
two module hosts: module A makes the world and a key and is the RFS, module B joins the world through
rfs-sync and the ACS card, a client enrolled with both signs through both (pkcs11-tool, checked by
OpenSSL and here), and still signs through B once A is stopped."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from netenv import FRONT_SO, PY312, ROOT, free_port

RECIPE = ROOT / "docs" / "recipes" / "two-modules.sh"
ESN = r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}"


def _admitted(log: str, key_hash: str) -> int:
    return log.count(f"INFO network client 127.0.0.1 (client key {key_hash}) admitted (unprivileged)\n")


def _client_pids(log: str) -> set[str]:
    return set(re.findall(r"INFO client pid (\d+) connected$", log, re.M))


def test_two_modules_and_a_client_as_on_three_hosts(tmp_path: Path) -> None:
    if not PY312.is_file():
        if os.environ.get("CI"):  # CI provides it (scripts/setup.sh): missing is a failure there
            pytest.fail(f"no {PY312}: scripts/setup.sh did not make it")
        pytest.skip("no .venv312 (scripts/setup.sh makes it when python3.12 is installed)")
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NFAST_", "SOFTSHIELD_", "CKNFAST_"))}
    # Host C's Python is another version than the modules' (3.12's python-pkcs11): the key made on A
    # and pulled by B's rfs-sync is used from it, through both modules and then B alone.
    env.update({"MODULE_A": f"127.0.0.1:{port_a}", "MODULE_B": f"127.0.0.1:{port_b}", "SO": str(FRONT_SO),
                "CLIENT_PYTHON": str(PY312),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    result = subprocess.run(["bash", str(RECIPE)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    out = result.stdout.splitlines()
    a, b, c = (tmp_path / f"host-{name}" for name in "abc")

    # The front panels the operators read, and the client keys they admitted.
    panels = [re.fullmatch(rf"module [AB]: ({ESN}) ([0-9a-f]{{40}})", line) for line in out
              if line.startswith(("module A: ", "module B: "))]
    (esn_a, kneti_a), (esn_b, kneti_b) = (m.groups() for m in panels)
    assert esn_a != esn_b and kneti_a != kneti_b
    key_b = re.search(r"client key hash: ([0-9a-f]{40})", (b / "enroll.txt").read_text()).group(1)
    key_c = re.search(r"client key hash: ([0-9a-f]{40})", (c / "enroll.txt").read_text()).group(1)
    assert f"client key {key_b} permitted (priv) from 0.0.0.0" in out
    assert out.count(f"client key {key_c} permitted (unpriv) from 0.0.0.0") == 2

    # B pulled the world and the key from A's RFS, was programmed into it, and committed the world file.
    assert "rfs-sync: 4 file(s) updated, 0 deleted, 0 local change(s) to commit" in out
    assert "rfs-sync: committed 1 file(s): world" in out
    # Each module file (it holds the module key) stays on its own host; the world file names both.
    assert not (a / "kmdata" / "local" / f"module_{esn_b}").exists()
    assert not (b / "kmdata" / "local" / f"module_{esn_a}").exists()
    for name in ("world", "key_simple_sharedkey"):
        assert (a / "kmdata" / "local" / name).read_bytes() == (b / "kmdata" / "local" / name).read_bytes(), name

    # C signed with the key made on A: OpenSSL and `cryptography` accept the signature; two sessions,
    # one on each module, gave the same one, and B alone gave it again once A had stopped.
    assert [re.sub(r"^hardserver \d+ on ", "hardserver PID on ", line) for line in out[-5:]] == [
        "Verified OK",
        "softshield via hardserver: 2 sessions, 1 signature: the same as pkcs11-tool",
        f"hardserver PID on {a / 'hardserver.sock'} stopped",
        "module B alone: the same signature",
        f"hardserver PID on {b / 'hardserver.sock'} stopped"]
    public = serialization.load_der_public_key((c / "sharedkey.der").read_bytes())
    public.verify((c / "msg.sig").read_bytes(), b"signed through two modules\n", padding.PKCS1v15(), hashes.SHA256())
    assert (c / "msg-b.sig").read_bytes() == (c / "msg.sig").read_bytes()

    # Both modules' logs: C's three programs each connected to both (same client pids), B took the
    # fourth alone; A took B's commit as the RFS; both servers stopped.
    log_a, log_b = ((host / "hardserver.log").read_text() for host in (a, b))
    assert (_admitted(log_a, key_c), _admitted(log_b, key_c)) == (3, 4)
    assert len(_client_pids(log_a) & _client_pids(log_b)) == 3
    assert f"INFO rfs commit from 127.0.0.1 (client key {key_b}): world\n" in log_a
    assert f"(mutual TLS 1.3; module {esn_a}, KNETI hash {kneti_a}; RFS)\n" in log_a
    assert f"(mutual TLS 1.3; module {esn_b}, KNETI hash {kneti_b})\n" in log_b
    for log, port in ((log_a, port_a), (log_b, port_b)):
        assert re.search(r"INFO hardserver stopped \(\d+ workers\)\n$|INFO module finalized \(rv 0x0\); hardserver "
                         r"stopped\n$", log)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more

