"""generatekey recovery=yes|no is real: a recovery=yes key carries a recovery blob under the world's
recovery key and survives the loss of its card set (rocs --recover with the ACS quorum moves it to
another card set, where it signs under its original public key); a recovery=no key does not, and
the recovery refuses it. kmfile-dump and nfkminfo -k say which is which."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from worldenv import ACS_PINS, SO, World, python_child

OLD = {"old-1.card": "1234"}
NEW = {"new-1.card": "5678"}


def header(path) -> dict:
    data = path.read_bytes()
    length = struct.unpack(">I", data[5:9])[0]
    return json.loads(data[9:9 + length])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("recovery"))
    w.new_world()
    w.cli("createocs", "-Q", "1/1", "-N", "old", "--pin-file", str(w.pin_file("old", OLD)))
    w.cli("createocs", "-Q", "1/1", "-N", "new", "--pin-file", str(w.pin_file("new", NEW)))
    for ident, recovery in (("keeps", "yes"), ("lost", "no")):
        w.generatekey("--batch", "simple", "type=ECDSA", "protect=token", "cardset=old", f"ident={ident}",
                      f"plainname={ident}", f"recovery={recovery}", pin_file=w.pin_file("old-use", OLD))
    w.generatekey("--batch", "simple", "type=AES", "protect=module", "ident=modkey")  # recovery=yes by default
    return w


def sign_with(world: World, token: str, pin: str, label: str) -> str:
    code = f"""
import pkcs11
from pkcs11 import Attribute as A, Mechanism, ObjectClass
token = pkcs11.lib({str(SO)!r}).get_token(token_label={token!r})
with token.open(user_pin={pin!r}) as s:
    [priv] = list(s.get_objects({{A.CLASS: ObjectClass.PRIVATE_KEY, A.LABEL: {label!r}}}))
    [pub] = list(s.get_objects({{A.CLASS: ObjectClass.PUBLIC_KEY, A.LABEL: {label!r}}}))
    sig = priv.sign(b"after the loss", mechanism=Mechanism.ECDSA_SHA256)
    print(pub.verify(b"after the loss", sig, mechanism=Mechanism.ECDSA_SHA256), bytes(pub[A.EC_POINT]).hex())
"""
    result = python_child(code, world)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_blob_says_which_key_is_recoverable(world):
    assert (world.local / "world_recovery").is_file()
    keeps, lost = header(world.local / "key_simple_keeps"), header(world.local / "key_simple_lost")
    assert len(base64.b64decode(keeps["recovery"])) > 384 and "recovery" not in lost
    assert "recovery" in header(world.local / "key_simple_modkey")
    assert "  recovery      Enabled" in world.cli("nfkminfo", "-k", "simple", "keeps").stdout.splitlines()
    assert "  recovery      Disabled" in world.cli("nfkminfo", "-k", "simple", "lost").stdout.splitlines()
    dump = world.cli("kmfile-dump", "key_simple_lost").stdout
    assert " recovery    no (no recovery blob)" in dump
    assert " recovery    yes: " in world.cli("kmfile-dump", "key_simple_keeps").stdout


def test_the_recovery_section_is_authenticated(world, tmp_path):
    """Stripping the recovery blob from a key's header fails the blob's tag: it is not optional
    metadata anyone may remove (or add)."""
    data = (world.local / "key_simple_modkey").read_bytes()
    length = struct.unpack(">I", data[5:9])[0]
    fields = json.loads(data[9:9 + length])
    del fields["recovery"]
    new_header = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    (world.local / "key_simple_modkey").write_bytes(data[:5] + struct.pack(">I", len(new_header)) + new_header
                                                    + data[9 + length:])
    try:
        r = world.cli("kmfile-dump", "key_simple_modkey", check=False)
        assert r.returncode == 1 and "verified    NO" in r.stdout
    finally:
        (world.local / "key_simple_modkey").write_bytes(data)


def test_rocs_recovers_the_recoverable_key_into_another_card_set(world):
    before = sign_with(world, "old", OLD["old-1.card"], "keeps")
    (world.reader / "old-1.card").unlink()  # the card set is lost
    quorum = world.pin_file("acs-q", {"acs-3.card": ACS_PINS["acs-3.card"], "acs-1.card": ACS_PINS["acs-1.card"]})
    r = world.cli("rocs", "--recover", "old", "--to", "new", "--pin-file", str(quorum), "--to-pin-file",
                  str(world.pin_file("new-use", NEW)), "--json", check=False)
    rows = {row["key"]: row for row in json.loads(r.stdout)}
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == ("softshield rocs: 2 of 4 keys were not recovered (made with "
                                                 "recovery=no)")
    assert rows["key_simple_keeps"]["recovered_as"] == "key_simple_keeps"
    assert rows["key_simple_lost"] == {"key": "key_simple_lost", "recovered_as": None,
                                       "reason": "no recovery blob (made with recovery=no)"}
    cardsets = json.loads(world.cli("nfkminfo", "-c", "--json").stdout)["cardsets"]
    assert header(world.local / "key_simple_keeps")["token"] == next(c["hash"] for c in cardsets if c["name"] == "new")
    after = sign_with(world, "new", NEW["new-1.card"], "keeps")
    assert after == before and after.startswith("True ")  # same public point, and it signs
    assert "  recovery      Enabled" in world.cli("nfkminfo", "-k", "simple", "keeps").stdout.splitlines()


def test_recovery_needs_the_acs_quorum(world):
    one = world.pin_file("acs-one", {"acs-2.card": ACS_PINS["acs-2.card"]})
    r = world.cli("rocs", "--recover", "old", "--to", "new", "--pin-file", str(one), "--to-pin-file",
                  str(world.pin_file("new-use2", NEW)), check=False)
    assert (r.returncode, r.stderr.splitlines()[-1]) == (1, "softshield rocs: ACS `acs' needs 2 of its 3 cards; only 1 "
                                                            "presented")
