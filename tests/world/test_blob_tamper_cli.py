"""Editing any byte region of a key blob (header, ACL, ciphertext, tag) makes the key refuse to
load: the CLI tools say so (aclprint and kmfile-dump fail, nfkminfo marks it UNUSABLE), and the
PKCS#11 library leaves it out of the slot with the reason in its log; other keys are unaffected."""

from __future__ import annotations

import json

import pytest

from worldenv import World, python_child

REGIONS = ("prefix", "header", "acl", "ciphertext", "tag")
RSA = ("type=RSA", "size=1024", "protect=module", "nvram=no", "pubexp=")


def tamper(path, region: str) -> None:
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[5:9], "big")
    end = 9 + header_len
    if region == "prefix":
        data[0] ^= 0x01  # the magic
    elif region == "header":
        i = data.index(b'"plainname":"') + len(b'"plainname":"')
        data[i] = ord("X")  # still valid JSON: only the tag can tell
    elif region == "acl":
        i = data.index(b'"Decrypt"', 0, end) + 1
        data[i:i + 7] = b"Encrypt"  # an attempt to widen the ACL
    elif region == "ciphertext":
        data[end + 12 + (len(data) - end - 28) // 2] ^= 0x01  # after the nonce, before the tag
    else:
        data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("tamper"))
    w.new_world(quorum="1/1")
    for name in (*REGIONS, "intact"):
        w.generatekey("simple", *RSA, f"ident=t-{name}", f"plainname=t-{name}")
    for region in REGIONS:
        tamper(w.local / f"key_simple_t-{region}", region)
    return w


EXPECTED = {
    "prefix": "not a softshield key blob",
    "header": "authentication failed",
    "acl": "authentication failed",
    "ciphertext": "authentication failed",
    "tag": "authentication failed",
}


@pytest.mark.parametrize("region", REGIONS)
def test_cli_refuses_the_tampered_key(world, region):
    name = f"key_simple_t-{region}"
    acl = world.cli("aclprint", "-A", "simple", "-K", f"t-{region}", check=False)
    assert acl.returncode != 0 and EXPECTED[region] in acl.stderr
    assert "Actions:" not in acl.stdout  # nothing of the edited ACL is presented as the key's
    dump = world.cli("kmfile-dump", name, check=False)
    assert dump.returncode != 0 and EXPECTED[region] in dump.stderr
    info = world.cli("nfkminfo", "-k").stdout
    assert f"UNUSABLE: {name}: {EXPECTED[region]}" in info


def test_intact_key_still_verifies_in_the_cli(world):
    assert "verified    yes" in world.cli("kmfile-dump", "key_simple_t-intact").stdout
    assert "Actions: Decrypt, Sign" in world.cli("aclprint", "-A", "simple", "-K", "t-intact").stdout
    listing = world.cli("nfkminfo", "-k").stdout
    assert listing.count("UNUSABLE") == len(REGIONS)


def test_pkcs11_leaves_tampered_keys_out_and_logs_why(world, tmp_path):
    log = tmp_path / "cknfast.log"
    result = python_child("""
from p11child import *
c = client()
s = c.open(0)
emit({'keys': sorted(private_labels(c, s)), 'ok': sign_verifies(c, s, 't-intact')})
""", world, env={"CKNFAST_DEBUG": "3", "CKNFAST_DEBUGFILE": str(log)})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["keys"] == ["t-intact"] and doc["ok"] is True
    text = log.read_text()
    for region in REGIONS:
        assert f"key not loaded: key_simple_t-{region}: {EXPECTED[region]}" in text, text
