"""Operator Card Sets and softcards through the real .so: each is its own slot (token label = its
name) beside the accelerator; its keys are invisible and unusable until the quorum / passphrase is
presented (C_LoginBegin/Next/End for K>1, C_Login otherwise); preload makes a following command's
plain C_Login succeed without the cards."""

from __future__ import annotations

import json

import pytest

from worldenv import SO, World, python_child

from pkcs11_shim.constants import CKR

OPS_PINS = {"ops-1.card": "1234", "ops-2.card": "2345", "ops-3.card": "3456"}
ONE_PINS = {"one-1.card": "4444"}
SOFT = ("sc1", "soft pass phrase")
RSA = ("type=RSA", "size=1024", "nvram=no", "pubexp=")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("ocs"))
    w.new_world()
    out = w.cli("createocs", "-m", "1", "-Q", "2/3", "-N", "ops", "--pin-file", str(w.pin_file("ops", OPS_PINS))).stdout
    assert "Card writing complete." in out and "cardset created; hkltu = " in out
    w.cli("createocs", "-Q", "1/1", "-N", "one", "--pin-file", str(w.pin_file("one", ONE_PINS)))
    out = w.cli("ppmk", "--new", SOFT[0], "--pin-file", str(w.pin_file("soft", dict([SOFT])))).stdout
    assert out.startswith("New softcard created: HKLTU ")
    two = w.pin_file("ops-use", {"ops-1.card": "1234", "ops-3.card": "3456"})
    out = w.generatekey("simple", "protect=token", "cardset=ops", "ident=opskey", "plainname=opskey", *RSA,
                        pin_file=two).stdout
    assert "Loading `ops':" in out and "Card reading complete." in out and "Key successfully generated." in out
    w.generatekey("simple", "protect=token", "cardset=one", "ident=onekey", "plainname=onekey", *RSA,
                  pin_file=w.pin_file("one-use", ONE_PINS))
    w.generatekey("simple", "protect=softcard", "softcard=sc1", "ident=sckey", "plainname=sckey", *RSA,
                  pin_file=w.pin_file("soft-use", dict([SOFT])))
    w.generatekey("simple", "protect=module", "ident=modkey", "plainname=modkey", *RSA)
    return w


def child(world: World, body: str, env: dict | None = None) -> dict:
    code = "from p11child import *\nc = client()\n" + body
    result = python_child(code, world, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_files_and_cards(world):
    names = sorted(p.name for p in world.reader.glob("*.card"))
    assert names == ["acs-1.card", "acs-2.card", "acs-3.card", "one-1.card", "ops-1.card", "ops-2.card", "ops-3.card"]
    assert len(list(world.local.glob("cards_*"))) == 2
    assert len(list(world.local.glob("softcard_*"))) == 1
    for ident in ("opskey", "onekey", "sckey", "modkey"):
        assert (world.local / f"key_simple_{ident}").is_file()


def test_each_card_set_and_softcard_is_a_slot(world):
    doc = child(world, "emit({'labels': labels(c)})")
    assert doc["labels"][0] == "loadshared accelerator"
    assert {"ops", "one", "sc1"} <= set(doc["labels"])
    # the accelerator holds the module key only: token keys are not there
    doc = child(world, "s = c.open(c.slot_by_label('loadshared accelerator'))\nemit({'keys': private_labels(c, s)})")
    assert doc["keys"] == ["modkey"]


def test_k_of_n_ocs_logs_in_with_login_begin_next_end(world):
    doc = child(world, """
s = c.open(c.slot_by_label('ops'))
before = private_labels(c, s)
plain = login_rv(c, s, b'1234')              # one card is no quorum: plain C_Login refuses
kn = login_begin(c, s)
left = [login_next(c, s, b'1234'), login_next(c, s, b'2345')]  # cards in reader order
login_end(c, s)
after = private_labels(c, s)
ok = sign_verifies(c, s, 'opskey')
ck.call(c.lib, 'C_Logout', ck.CK_ULONG(s))
emit({'before': before, 'plain': plain, 'kn': kn, 'left': left, 'after': after, 'ok': ok,
      'logged_out': private_labels(c, s)})
""")
    assert doc["before"] == [] and doc["logged_out"] == []
    assert doc["plain"] == ck_PIN_INCORRECT
    assert doc["kn"] == [2, 3] and doc["left"] == [1, 0]
    assert doc["after"] == ["opskey"] and doc["ok"] is True


ck_PIN_INCORRECT = CKR.PIN_INCORRECT


def test_login_next_with_a_wrong_pin_fails(world):
    doc = child(world, """
s = c.open(c.slot_by_label('ops'))
login_begin(c, s)
wrong = error_code(login_next, c, s, b'9999')
emit({'wrong': wrong, 'keys': private_labels(c, s)})
""")
    assert doc["wrong"] == ck_PIN_INCORRECT and doc["keys"] == []


def test_login_end_before_the_quorum_fails(world):
    doc = child(world, """
s = c.open(c.slot_by_label('ops'))
login_begin(c, s)
login_next(c, s, b'1234')
early = error_code(login_end, c, s)
emit({'early': early, 'keys': private_labels(c, s)})
""")
    # One PIN of a 2-of-N quorum is not a login: the module refuses it as a wrong PIN.
    assert doc["early"] == ck_PIN_INCORRECT and doc["keys"] == []


@pytest.mark.parametrize("label,key,pin", [("one", "onekey", b"4444"), ("sc1", "sckey", SOFT[1].encode())])
def test_one_card_ocs_and_softcard_use_plain_c_login(world, label, key, pin):
    doc = child(world, f"""
s = c.open(c.slot_by_label({label!r}))
before = private_labels(c, s)
wrong = login_rv(c, s, b'not the pin')
still = private_labels(c, s)
right = login_rv(c, s, {pin!r})
emit({{'before': before, 'wrong': wrong, 'still': still, 'right': right, 'after': private_labels(c, s),
      'ok': sign_verifies(c, s, {key!r})}})
""")
    assert doc["before"] == [] and doc["still"] == []
    assert doc["wrong"] == ck_PIN_INCORRECT and doc["right"] == 0
    assert doc["after"] == [key] and doc["ok"] is True


def test_preload_makes_the_card_set_usable_to_the_next_command(world, tmp_path):
    data = tmp_path / "d"
    data.write_bytes(b"preloaded signing")
    sign = ["pkcs11-tool", "--module", str(SO), "--token-label", "ops",
            "--login", "--pin", "anything", "--sign", "--label", "opskey", "-m", "SHA256-RSA-PKCS",
            "-i", str(data), "-o", str(tmp_path / "sig")]
    # Without preload the made-up PIN is just wrong.
    assert world.tool(*sign[3:], check=False).returncode != 0
    pins = world.pin_file("preload", {"ops-2.card": "2345", "ops-3.card": "3456"})
    out = world.cli("preload", "-c", "ops", "--pin-file", str(pins), "--", *sign)
    assert "Loading `ops':" in out.stdout and (tmp_path / "sig").stat().st_size == 128


def test_module_key_needs_no_login(world):
    doc = child(world, "s = c.open(0)\nemit({'ok': sign_verifies(c, s, 'modkey')})")
    assert doc["ok"] is True
