"""OpenSSH with the library: the accelerator slot hidden by CKNFAST_NO_ACCELERATOR_SLOTS, and the
The OpenSSH recipe (docs/recipes/openssh.sh, shown in docs/tools.md) run verbatim against a throw-away sshd on
127.0.0.1 (its own port, host key and config in a temp folder; `sshd -D`, stopped by the test).

ssh, ssh-keygen -D and ssh-agent's ssh-pkcs11-helper are C hosts: each loads the library in process.
Each test has its own kmdata with one token, so no other test's tokens make OpenSSH ask for a PIN."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecoenv import ROOT, SO, USER_PIN, free_port, init_token, pkcs11_tool, run
from pkcs11_shim.constants import CKR

RECIPE = ROOT / "docs" / "recipes" / "openssh.sh"
ACCELERATOR = "loadshared accelerator"


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if path is None:
        package = "openssh-server" if name == "sshd" else "openssh-client"
        pytest.fail(f"{name} is missing: Debian's {package} package provides it (scripts/setup.sh installs it)")
    return path


def fresh_world(folder: Path, label: str) -> dict[str, str]:
    """A kmdata holding the accelerator slot, one token `label` and the spare slot."""
    kmdata = folder / "kmdata"
    kmdata.mkdir()
    env = {"NFAST_KMDATA": str(kmdata)}
    init_token(label, env=env)
    return env


def logging_askpass(folder: Path, pin: str) -> tuple[dict[str, str], Path]:
    """SSH_ASKPASS that answers `pin` and records each prompt OpenSSH shows (one per line)."""
    log = folder / "prompts"
    script = folder / "askpass-log"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{log}"\necho "{pin}"\n')
    script.chmod(0o700)
    return {"SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force", "SSH_AUTH_SOCK": ""}, log


def prompts(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def stop_agents(output: str) -> None:
    """Agents a failed or timed-out run left behind (ssh-agent detaches from our process group)."""
    for pid in re.findall(r"Agent pid (\d+)", output):
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


SLOTS = """
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
import p11ctypes as ck
lib = ck.load()
c = ck.Client(lib)
c.initialize()
def slot_list(present):
    count = ck.CK_ULONG(0)
    ck.call(lib, "C_GetSlotList", ctypes.c_ubyte(present), None, ctypes.byref(count))
    array = (ck.CK_ULONG * count.value)()
    ck.call(lib, "C_GetSlotList", ctypes.c_ubyte(present), array, ctypes.byref(count))
    return list(array[:count.value])
info = ctypes.create_string_buffer(256)  # larger than CK_SLOT_INFO
session = ck.CK_ULONG(0)
print(json.dumps({
    "all": slot_list(0), "present": slot_list(1),
    "labels": [c.token_info(s).label.decode().rstrip() for s in slot_list(1)],
    "slot_info_0": ck.raw(lib, "C_GetSlotInfo", ck.CK_ULONG(0), info),
    "open_session_0": ck.raw(lib, "C_OpenSession", ck.CK_ULONG(0), ck.CK_ULONG(4), None, None,
                             ctypes.byref(session)),
}))
"""


def test_slot_list_with_and_without_no_accelerator_slots(tmp_path: Path):
    env = fresh_world(tmp_path, "slots-token")

    def slots(extra: dict[str, str]) -> dict:
        inherited = {k: v for k, v in os.environ.items() if k != "CKNFAST_NO_ACCELERATOR_SLOTS"}
        result = subprocess.run([sys.executable, "-c", SLOTS, str(ROOT / "tests")],
                                capture_output=True, text=True, timeout=60, env={**inherited, **env, **extra})
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    shown = slots({})  # the variable unset
    assert shown["all"] == shown["present"] == [0, 1, 2]
    assert shown["labels"] == [ACCELERATOR, "slots-token", ""]
    assert shown["slot_info_0"] == shown["open_session_0"] == 0
    hidden = slots({"CKNFAST_NO_ACCELERATOR_SLOTS": "1"})
    # The token keeps its slot number: hiding the accelerator renumbers nothing.
    assert hidden["all"] == hidden["present"] == [1, 2]
    assert hidden["labels"] == ["slots-token", ""]
    assert hidden["slot_info_0"] == hidden["open_session_0"] == CKR.SLOT_ID_INVALID


def test_openssh_asks_for_the_accelerator_pin_unless_it_is_hidden(tmp_path: Path):
    env = fresh_world(tmp_path, "ssh-prompts")
    pkcs11_tool("--token-label", "ssh-prompts", "--login", "--pin", USER_PIN, "--keypairgen",
                "--key-type", "EC:prime256v1", "--label", "prompt-key", "--id", "31", env=env)
    askpass, log = logging_askpass(tmp_path, USER_PIN)
    keygen = tool("ssh-keygen")

    shown = run(keygen, "-D", str(SO), env={**env, **askpass, "CKNFAST_NO_ACCELERATOR_SLOTS": "0"})
    # OpenSSH found no key in the accelerator slot, asked for its PIN, and C_Login failed there
    # (CKR_USER_PIN_NOT_INITIALIZED, which OpenSSH prints in decimal).
    assert prompts(log) == [f"Enter PIN for '{ACCELERATOR}': "]
    assert f"PKCS#11 login failed: error {int(CKR.USER_PIN_NOT_INITIALIZED)}" in shown.stderr
    assert "login failed" in shown.stderr
    key = shown.stdout
    assert key.startswith("ecdsa-sha2-nistp256 ") and key.endswith(" prompt-key\n") and key.count("\n") == 1

    log.unlink()
    hidden = run(keygen, "-D", str(SO), env={**env, **askpass, "CKNFAST_NO_ACCELERATOR_SLOTS": "1"})
    assert prompts(log) == []
    assert hidden.stdout == key and "login failed" not in hidden.stderr


def test_agent_refuses_the_library_outside_its_allow_list(tmp_path: Path):
    env = fresh_world(tmp_path, "ssh-allow")
    askpass, log = logging_askpass(tmp_path, USER_PIN)
    started = run(tool("ssh-agent"), "-s", env=env).stdout  # the default list: /usr/lib*/*,/usr/local/lib*/*
    try:
        sock = re.search(r"SSH_AUTH_SOCK=([^;]+);", started).group(1)
        refused = run(tool("ssh-add"), "-s", str(SO), env={**env, **askpass, "SSH_AUTH_SOCK": sock}, check=False)
        assert refused.returncode == 1
        assert refused.stderr == f"Could not add card \"{SO}\": agent refused operation\n"
        assert prompts(log) == ["Enter passphrase for PKCS#11: "]
    finally:
        stop_agents(started)


@dataclass
class Sshd:
    port: int
    log: Path
    known_hosts_line: str


SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {folder}/host_ed25519
PidFile none
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel VERBOSE
"""


@pytest.fixture()
def sshd(tmp_path: Path) -> Iterator[tuple[Sshd, Path]]:
    """An sshd on 127.0.0.1 that accepts the keys in <workdir>/authorized_keys; yields it and workdir."""
    binary = tool("sshd")  # sshd re-executes itself: it needs its absolute path
    folder, workdir = tmp_path / "sshd", tmp_path / "work"
    folder.mkdir()
    workdir.mkdir()
    run(tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_ed25519"))
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, folder=folder, authorized_keys=workdir / "authorized_keys"))
    if os.geteuid() == 0:
        # Run as root, sshd wants its privilege-separation folder; the service makes it at boot, a
        # container without an init system has none.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    run(binary, "-t", "-f", str(config))
    log = folder / "sshd.log"
    with log.open("w") as out:
        server = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while "Server listening on 127.0.0.1" not in log.read_text():
            assert server.poll() is None, f"sshd exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"sshd did not start: {log.read_text()}"
            time.sleep(0.05)
        host_key = " ".join((folder / "host_ed25519.pub").read_text().split()[:2])
        (workdir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
        yield Sshd(port, log, host_key), workdir
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_openssh_recipe(sshd: tuple[Sshd, Path], tmp_path: Path):
    server, workdir = sshd
    user = getpass.getuser()
    env = {**fresh_world(tmp_path, "ssh-token"), "SO": str(SO), "TOKEN": "ssh-token", "PIN": USER_PIN,
           "SSH_HOST": "127.0.0.1", "SSH_PORT": str(server.port), "SSH_USER": user,
           "SSH_AUTH_SOCK": "", "SSH_AGENT_PID": ""}  # the caller's agent, if any, stays out
    # What the recipe sets itself comes from the recipe, not from the caller's environment.
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("CKNFAST_NO_ACCELERATOR_SLOTS", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY")}
    try:
        result = subprocess.run(["sh", "-e", str(RECIPE)], capture_output=True, text=True, timeout=180,
                                env={**inherited, **env}, cwd=workdir)
    except subprocess.TimeoutExpired as exc:
        stop_agents(exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or "")
        raise
    stop_agents(result.stdout)  # the recipe's trap has stopped it already when it ran to the end
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{server.log.read_text()}"

    # ssh-keygen -D saw the token's key only: no accelerator slot, no PIN asked for it.
    keys = (workdir / "authorized_keys").read_text().splitlines()
    assert len(keys) == 1 and keys[0].startswith("ecdsa-sha2-nistp256 ") and keys[0].endswith(" recipe-ssh")
    assert "login failed" not in result.stderr and ACCELERATOR not in result.stderr
    assert "signed in with the token key\n" in result.stdout
    assert f"{keys[0]}\n" in result.stdout  # ssh-add -L: the agent holds the token's key
    assert "signed in through the agent\n" in result.stdout
    # Both logins were the token's key, as the server saw them.
    fingerprint = run(tool("ssh-keygen"), "-lf", str(workdir / "authorized_keys")).stdout.split()[1]
    accepted = re.findall(rf"Accepted publickey for {re.escape(user)} from 127\.0\.0\.1 port \d+ ssh2: (.+)",
                          server.log.read_text())
    assert accepted == [f"ECDSA {fingerprint}"] * 2
