"""The cknfast environment, each variable's visible effect, each case in its own child process
(the library reads its configuration once, at C_Initialize, as cknfast does)."""

from __future__ import annotations

import json

import pytest

from worldenv import World, python_child

from pkcs11_shim.constants import CKR, SlotFlag

ACC = "loadshared accelerator"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("env"))
    w.new_world(quorum="1/1")
    w.cli("createocs", "-Q", "1/1", "-N", "ops", "--pin-file", str(w.pin_file("ops", {"ops-1.card": "1234"})))
    w.cli("ppmk", "--new", "sc1", "--pin-file", str(w.pin_file("sc", {"sc1": "softpass"})))
    w.generatekey("simple", "type=AES", "size=128", "protect=module", "ident=modkey", "plainname=modkey")
    return w


def child(world: World, body: str, env: dict | None = None) -> dict:
    result = python_child("from p11child import *\nc = client()\n" + body, world, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


LIST = """
slots = c.slots()
emit({'labels': [c.token_info(s).label.decode().rstrip() for s in slots],
      'flags': {c.token_info(s).label.decode().rstrip(): slot_flags(c, s) for s in slots}})
"""
SLOT_FLAGS = """
def slot_flags(c, s):
    info = ck.CK_SLOT_INFO()
    ck.call(c.lib, 'C_GetSlotInfo', ck.CK_ULONG(s), ck.ctypes.byref(info))
    return info.flags
"""


def listing(world: World, env: dict | None = None) -> dict:
    return child(world, SLOT_FLAGS + LIST, env)


def test_default_is_load_sharing(world):
    doc = listing(world)
    assert doc["labels"][0] == ACC
    assert {"ops", "sc1"} <= set(doc["labels"])
    assert doc["flags"]["ops"] & SlotFlag.REMOVABLE_DEVICE == 0  # a virtual, always-present slot


def test_loadsharing_off_shows_the_card_reader_only(world):
    doc = listing(world, {"CKNFAST_LOADSHARING": "0"})
    assert doc["labels"] == [ACC, "ops"]  # no softcard, no spare C_InitToken slot
    assert doc["flags"]["ops"] & SlotFlag.REMOVABLE_DEVICE  # the card in the reader
    assert listing(world, {"CKNFAST_LOADSHARING": "1"})["labels"] == listing(world)["labels"]


def test_loadsharing_off_card_removed_means_no_slot(world):
    card = world.reader / "ops-1.card"
    moved = world.root / "ops-1.card.out"
    card.rename(moved)
    try:
        assert listing(world, {"CKNFAST_LOADSHARING": "0"})["labels"] == [ACC]
        assert "ops" in listing(world)["labels"]  # load sharing keeps the set's slot (N5)
    finally:
        moved.rename(card)


def test_cardset_hash_restricts_the_slots(world):
    ocs_hash = next(world.local.glob("cards_*")).name[len("cards_"):]
    assert listing(world, {"CKNFAST_CARDSET_HASH": ocs_hash})["labels"] == [ACC, "ops"]


def test_no_accelerator_slots(world):
    doc = listing(world, {"CKNFAST_NO_ACCELERATOR_SLOTS": "1"})
    assert ACC not in doc["labels"] and "ops" in doc["labels"]


def test_fake_accelerator_login(world):
    body = "s = c.open(c.slot_by_label('loadshared accelerator'))\nemit({'rv': login_rv(c, s, b'anything')})"
    # nShield documents that C_Login always fails on the accelerator slot: no user PIN there.
    assert child(world, body)["rv"] == CKR.USER_PIN_NOT_INITIALIZED
    assert child(world, body, {"CKNFAST_FAKE_ACCELERATOR_LOGIN": "1"})["rv"] == 0


def test_nfast_kmdata_selects_the_world(world, tmp_path):
    other = World(tmp_path)
    other.new_world(quorum="1/1")
    body = "emit({'serial': c.token_info(0).serialNumber.decode().strip()})"
    esn = lambda w: next(w.local.glob("module_*")).name[len("module_"):].replace("-", "")  # noqa: E731
    assert child(world, body)["serial"] == esn(world)
    assert child(world, body, {"NFAST_KMDATA": str(other.kmdata)})["serial"] == esn(other)


def test_cknfastrc_file_and_environment_precedence(world, tmp_path):
    (tmp_path / "cknfastrc").write_text("# comment\nCKNFAST_NO_ACCELERATOR_SLOTS=1\n")
    rc = {"NFAST_HOME": str(tmp_path), "SOFTSHIELD_CKNFASTRC": ""}
    assert ACC not in listing(world, rc)["labels"]
    # the environment wins over the file (N5)
    assert ACC in listing(world, {**rc, "CKNFAST_NO_ACCELERATOR_SLOTS": "0"})["labels"]


def test_debug_and_debugfile(world, tmp_path):
    log = tmp_path / "ck.log"
    child(world, "emit({'n': len(c.slots())})", {"CKNFAST_DEBUG": "10", "CKNFAST_DEBUGFILE": str(log)})
    text = log.read_text()
    assert f"pkcs11: DEBUG C_GetSlotList -> {CKR.OK:#x}" in text
    quiet = tmp_path / "quiet.log"
    child(world, "emit({'n': len(c.slots())})", {"CKNFAST_DEBUGFILE": str(quiet)})
    assert not quiet.exists() or "C_GetSlotList" not in quiet.read_text()


WRITER = """
import subprocess, sys
s = c.open(0)
before = len(c.find(s, [(Attribute.LABEL, 'late')]))
subprocess.run([sys.executable, '-c', '''
from p11child import *
c = client(); s = c.open(0)
c.generate_key(s, Mechanism.AES_KEY_GEN, [(Attribute.TOKEN, True), (Attribute.PRIVATE, False), (Attribute.SENSITIVE, True), (Attribute.LABEL, 'late'), (Attribute.VALUE_LEN, 16)])
'''], check=True)
emit({'before': before, 'after': len(c.find(s, [(Attribute.LABEL, 'late')]))})
"""


@pytest.mark.parametrize("value,seen", [("0", 1), ("1", 0)])
def test_assume_single_process(world, value, seen):
    for path in world.local.glob("key_pkcs11_ua*"):
        path.unlink()  # each case starts without the key the writer makes
    doc = child(world, WRITER, {"CKNFAST_ASSUME_SINGLE_PROCESS": value})
    assert doc["before"] == 0 and doc["after"] == seen


SAM = """
s = c.open(0)
out = {}
def attempt(name, fn, *args):
    out[name] = error_code(fn, *args)
aes = [(Attribute.TOKEN, True), (Attribute.PRIVATE, False), (Attribute.VALUE_LEN, 16)]
attempt('readable_token', c.generate_key, s, Mechanism.AES_KEY_GEN, aes + [(Attribute.SENSITIVE, False), (Attribute.EXTRACTABLE, True)])
attempt('readable_session', c.generate_key, s, Mechanism.AES_KEY_GEN, [(Attribute.TOKEN, False), (Attribute.PRIVATE, False), (Attribute.VALUE_LEN, 16),
        (Attribute.SENSITIVE, False), (Attribute.EXTRACTABLE, True)])
# Not sensitive, but not extractable either (the default): the value stays inside, so allowed.
attempt('unextractable_token', c.generate_key, s, Mechanism.AES_KEY_GEN, aes + [(Attribute.SENSITIVE, False)])
attempt('sensitive_token', c.generate_key, s, Mechanism.AES_KEY_GEN, aes + [(Attribute.SENSITIVE, True)])
attempt('derive_and_encrypt', c.generate_key, s, Mechanism.AES_KEY_GEN, aes + [(Attribute.SENSITIVE, True),
        (Attribute.DERIVE, True), (Attribute.ENCRYPT, True)])
tmpl = ck.Template([(Attribute.CLASS, ObjectClass.SECRET_KEY), (Attribute.KEY_TYPE, KeyType.AES), (Attribute.TOKEN, True),
                    (Attribute.PRIVATE, False), (Attribute.VALUE, bytes(range(16)))])
h = ck.CK_ULONG()
out['import_token'] = ck.raw(c.lib, 'C_CreateObject', ck.CK_ULONG(s), tmpl.array, ck.CK_ULONG(tmpl.count), ck.ctypes.byref(h))
attempt('short_hmac', c.generate_key, s, Mechanism.GENERIC_SECRET_KEY_GEN, [(Attribute.TOKEN, False), (Attribute.PRIVATE, False), (Attribute.VALUE_LEN, 8)])
emit(out)
"""
TEMPLATE_INCONSISTENT, KEY_SIZE_RANGE = CKR.TEMPLATE_INCONSISTENT, CKR.KEY_SIZE_RANGE


@pytest.mark.parametrize("override,expect", [
    (None, {"readable_token": TEMPLATE_INCONSISTENT, "readable_session": 0, "sensitive_token": 0,
            "unextractable_token": 0,
            "derive_and_encrypt": TEMPLATE_INCONSISTENT, "import_token": TEMPLATE_INCONSISTENT,
            "short_hmac": KEY_SIZE_RANGE}),
    ("tokenkeys", {"readable_token": 0, "import_token": TEMPLATE_INCONSISTENT}),
    ("import;tokenkeys", {"import_token": 0}),
    ("explicitness,shortkey_hmac=64", {"derive_and_encrypt": 0, "short_hmac": 0, "readable_token": TEMPLATE_INCONSISTENT}),
    ("all", {"readable_token": 0, "derive_and_encrypt": 0, "import_token": 0, "short_hmac": 0}),
])
def test_security_assurances(world, override, expect):
    env = {"CKNFAST_OVERRIDE_SECURITY_ASSURANCES": override} if override else {}
    doc = child(world, SAM, env)
    for name, code in expect.items():
        assert doc[name] == code, (name, doc)


def test_security_assurance_refusal_is_logged(world, tmp_path):
    log = tmp_path / "sam.log"
    child(world, SAM, {"CKNFAST_DEBUG": "3", "CKNFAST_DEBUGFILE": str(log)})
    assert "CKNFAST_OVERRIDE_SECURITY_ASSURANCES=tokenkeys permits it" in log.read_text()
