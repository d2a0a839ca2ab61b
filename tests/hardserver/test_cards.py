"""K-of-N logins through the hardserver (nShield's C_LoginBegin/Next/End): a 2/3 OCS logs in card by
card, and the accelerator's SO login reads the ACS cards the *client* put in the slot
(SOFTSHIELD_CARD_SLOT in the client's environment, sent with the call), not the server's."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hsenv import ROOT, Server
from test_logins import Client
from pkcs11_shim.constants import CKR, SessionState, UserType

ACS_PINS = {"acs-1.card": "1111", "acs-2.card": "2222", "acs-3.card": "3333"}
OPS_PINS = {"ops-1.card": "1234", "ops-2.card": "2345", "ops-3.card": "3456"}
SLOT_ENV = "SOFTSHIELD_CARD_SLOT"
ulong = ctypes.c_ulong


@pytest.fixture(scope="module")
def card_server():
    """A world with a 2/3 ACS and a 2/3 OCS `ops` holding one key, served by a hardserver."""
    work = Path(tempfile.mkdtemp(prefix="softshield-hs-cards-"))
    server = Server(work)
    env = {k: v for k, v in server.env.items() if not k.startswith(("CKNFAST_", "SOFTSHIELD_"))}
    env.update(NFAST_KMDATA=str(server.kmdata), SOFTSHIELD_CKNFASTRC=str(work / "none"),
               SOFTSHIELD_CONFIG=str(work / "none.toml"))

    def cli(*args: str, pins: dict[str, str] | None = None) -> None:
        extra = []
        if pins:
            (work / "pins").write_text("".join(f"{card} {pin}\n" for card, pin in pins.items()))
            extra = ["--pin-file", str(work / "pins")]
        done = subprocess.run([sys.executable, "-m", "softshield_cli.main", *args, *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"

    cli("new-world", "--initialize", "--cipher-suite=DLf1024s160mRijndael", "--module=1", "--acs-quorum=2/3",
        pins=ACS_PINS)
    cli("createocs", "-m", "1", "-Q", "2/3", "-N", "ops", pins=OPS_PINS)
    cli("generatekey", "--generate", "simple", "protect=token", "cardset=ops", "ident=opskey", "plainname=opskey",
        "type=RSA", "size=1024", "nvram=no", "pubexp=", pins={"ops-1.card": "1234", "ops-3.card": "3456"})
    server.start()
    yield server
    if server.alive():
        server.terminate()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def client(card_server):
    c = Client()
    for name, args in (("C_LoginBegin", [ulong, ulong, ctypes.POINTER(ulong), ctypes.POINTER(ulong)]),
                       ("C_LoginNext", [ulong, ulong, ctypes.c_char_p, ulong, ctypes.POINTER(ulong)]),
                       ("C_LoginEnd", [ulong, ulong])):
        getattr(c.lib, name).argtypes, getattr(c.lib, name).restype = args, ulong
    assert c.initialize(card_server) == CKR.OK
    yield c
    os.environ.pop(SLOT_ENV, None)
    c.finalize()


def quorum(c: Client, session: int, user: int, pins: list[bytes]) -> tuple[tuple[int, int], list[int]]:
    k, n, left = ulong(), ulong(), ulong()
    assert c.lib.C_LoginBegin(session, user, ctypes.byref(k), ctypes.byref(n)) == CKR.OK
    lefts = []
    for pin in pins:
        rv = c.lib.C_LoginNext(session, user, pin, len(pin), ctypes.byref(left))
        lefts.append(left.value if rv == CKR.OK else -rv)
    return (k.value, n.value), lefts


def test_2_of_3_ocs_logs_in_card_by_card(client) -> None:
    rv, session = client.open_session(client.slot_of("ops"))
    assert rv == CKR.OK
    before = client.find_all(session)
    assert quorum(client, session, UserType.USER, [b"1234", b"2345"]) == ((2, 3), [1, 0])  # reader order
    assert client.lib.C_LoginEnd(session, UserType.USER) == CKR.OK
    assert client.state(session) == SessionState.RW_USER_FUNCTIONS
    private = [h for h in client.find_all(session) if client.private(session, h) == (CKR.OK, True)]
    assert private and not set(private) & set(before)  # the OCS key is there only now
    assert client.logout(session) == CKR.OK
    assert client.state(session) == SessionState.RW_PUBLIC_SESSION


def test_acs_login_reads_the_cards_the_client_put_in_the_slot(client) -> None:
    """acs-1 then acs-3: with the client's SOFTSHIELD_CARD_SLOT the second card read is acs-3; without
    it (reader order) the second card is acs-2, and acs-3's PIN is wrong for it."""
    rv, session = client.open_session(client.slot_of("loadshared accelerator"))
    assert rv == CKR.OK
    os.environ[SLOT_ENV] = os.pathsep.join(["acs-1.card", "acs-3.card"])  # read by the client library per call
    assert quorum(client, session, UserType.SO, [b"1111", b"3333"]) == ((2, 3), [1, 0])
    assert client.lib.C_LoginEnd(session, UserType.SO) == CKR.OK
    assert client.state(session) == SessionState.RW_SO_FUNCTIONS
    assert client.logout(session) == CKR.OK

    del os.environ[SLOT_ENV]  # the server's environment did not keep the last client's slot
    assert quorum(client, session, UserType.SO, [b"1111", b"3333"]) == ((2, 3), [1, -CKR.PIN_INCORRECT])
