"""The wrap hot path in client mode (through `softshield hardserver` and the C-only client library)
beside in-process mode, on the same token: the difference is the cost of the socket hop.

python-pkcs11's wrap_key makes two C_WrapKey calls (length query, then the wrap), so client mode
pays two round trips per wrap; the note on each client-mode row states the added time per wrap."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism

import backends
from conftest import measure
from report import record

CLIENT_SO = backends.ROOT / "build" / "libsoftshield-client.so"
MODES = ("in-process", "client mode")
CASES = ("wrap AES_KEY_WRAP_KWP AES-256", "wrap RSA_AES_KEY_WRAP RSA-2048 OAEP-SHA256")
SECONDS: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def client_session(sessions):
    """A session on the same "main" token through a hardserver that shares the bench's kmdata."""
    if not CLIENT_SO.is_file():
        pytest.skip("no client library: make build")
    sock = backends.WORK / "hardserver" / "hs.sock"
    log = backends.WORK / "hardserver.log"
    env = {**os.environ, "NFAST_KMDATA": str(backends.KMDATA)}
    proc = subprocess.Popen([sys.executable, "-m", "softshield_cli.main", "hardserver", "--socket", str(sock)],
                            cwd=backends.ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "listening on" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    os.environ["SOFTSHIELD_HARDSERVER"] = str(sock)  # read by the client library at C_Initialize
    lib = pkcs11.lib(str(CLIENT_SO))
    session = lib.get_token(token_label=backends.OURS.labels["main"]).open(user_pin=backends.USER_PIN, rw=True)
    yield session
    session.close()
    proc.terminate()
    proc.wait(timeout=60)


def _keys(session):
    wrapping = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
    target = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.EXTRACTABLE: True})
    public, _private = session.generate_keypair(KeyType.RSA, 2048, store=False)
    param = backends.rsa_aes_key_wrap_param("sha256")
    return {
        CASES[0]: lambda: wrapping.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_KWP),
        CASES[1]: lambda: public.wrap_key(target, mechanism=backends.CKM_RSA_AES_KEY_WRAP, mechanism_param=param),
    }


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_wrap_client_mode(benchmark, sessions, client_session, mode: str, case: str) -> None:
    benchmark.group = f"hardserver {case}"
    session = sessions["ours"] if mode == "in-process" else client_session
    fn = _keys(session)[case]
    assert len(fn()) == 40 or len(fn()) == 256 + 40  # warm, and a real wrap came back
    seconds = measure(benchmark, fn)
    SECONDS[(mode, case)] = seconds
    note = ""
    if mode == "client mode" and ("in-process", case) in SECONDS:
        hop = seconds - SECONDS[("in-process", case)]
        note = f"socket hop +{hop * 1e6:.0f} µs per wrap (2 C_WrapKey round trips)"
    record(f"{case} ({mode})", "ours", 1 / seconds, note=note, group="hardserver")
