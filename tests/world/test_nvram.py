"""generatekey nvram=yes: the key blob lives in the module's NVRAM (emulator/nvram.py), allocated with
the ACS quorum; the kmdata key file keeps the header and a reference; the key loads only on the module
whose NVRAM holds an authentic, KNSO-signed entry for exactly that key file."""

from __future__ import annotations

import base64
import json
import shutil
import stat

import pytest

from emulator import nvram
from emulator.errors import BlobInvalid
from emulator.module import Module
from test_seed_workflow import sign_and_verify
from worldenv import World

KEYGEN = ("simple", "type=RSA", "size=2048", "protect=module", "ident=nvkey", "plainname=nvkey", "nvram=yes",
          "pubexp=")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One world with an NVRAM key, made with cards 1 and 3 of the 2/3 ACS."""
    world = World(tmp_path_factory.mktemp("nvram"))
    world.new_world()
    out = world.generatekey(*KEYGEN, pin_file=world.pin_file("two", {"acs-1.card": "1111", "acs-3.card": "3333"}))
    return world, out


def esn_of(world: World) -> str:
    return Module.open(world.kmdata).esn


def entry_path(world: World, esn: str):
    return world.kmdata / "modules" / esn / "nvram" / "key_simple_nvkey"


def copy_world(world: World, tmp_path) -> World:
    other = World(tmp_path / "copy")
    shutil.copytree(world.kmdata, other.kmdata)
    return other


def test_generated_into_nvram_and_signs(made, tmp_path):
    world, out = made
    esn = esn_of(world)
    key_file = world.local / "key_simple_nvkey"
    lines = out.stdout.rstrip().splitlines()
    assert lines[-3:] == [f"Key blob stored in NVRAM of module {esn}.", "Key successfully generated.",
                          f"Path to key: {key_file}"]
    assert " nvram        Blob in NVRAM (needs ACS)          yes" in out.stdout
    # The key file names the key and the module; its sealed part is only in NVRAM.
    data = key_file.read_bytes()
    raw = nvram.blobs.parse(data, key_file.name)
    ref = nvram.reference_of(raw, key_file.name)
    assert ref is not None and ref.esn == esn
    entry = json.loads(entry_path(world, esn).read_bytes())
    sealed = base64.b64decode(entry["entry"]["sealed"])
    assert len(sealed) > 1000 and sealed not in data  # an RSA-2048 PKCS#8, sealed: not in the key file
    # Kept outside the world's shareable local directory, 0600 in 0700 folders.
    assert stat.S_IMODE(entry_path(world, esn).stat().st_mode) == 0o600
    for folder in (world.kmdata / "modules", world.kmdata / "modules" / esn, entry_path(world, esn).parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sign_and_verify(world, "nvkey", tmp_path)


def test_inspection_shows_nvram(made):
    world, _out = made
    esn = esn_of(world)
    keys = world.cli("nfkminfo", "-k", "simple").stdout.splitlines()
    at = keys.index(" AppName simple     Ident nvkey")
    assert keys[at + 1:at + 3] == ["   name `nvkey' protection module", f"   storage NVRAM of module {esn}"]
    assert "UNUSABLE" not in "\n".join(keys)
    dump = world.cli("kmfile-dump", "key_simple_nvkey").stdout
    assert f" storage     NVRAM of module {esn} (this file holds the header and a reference)" in dump
    assert " verified    yes (tag checked under the world's module key)" in dump
    acl = world.cli("aclprint", "-A", "simple", "-K", "nvkey").stdout.splitlines()
    assert acl[:2] == [f"Blob storage: NVRAM of module {esn}", "ACL of key_simple_nvkey:"]


@pytest.mark.parametrize("cards, reason", [
    (None, "no PIN file given and no terminal to ask on: use --pin-file FILE"),
    ({"acs-2.card": "2222"}, "nvram: NVRAM allocation needs 2 of the 3 cards of ACS `acs'; 1 presented (--pin-file)"),
    ({"acs-2.card": "2222", "acs-2.card ": "2222"}, "the PIN file names card acs-2.card twice"),
    ({"acs-1.card": "1111", "acs-2.card": "9999"}, "acs-2.card"),
])
def test_no_quorum_leaves_nothing(made, tmp_path, cards, reason):
    world = copy_world(made[0], tmp_path)
    esn = esn_of(world)
    pins = None
    if cards is not None:
        pins = tmp_path / "pins"
        pins.write_text("".join(f"{name.strip()} {pin}\n" for name, pin in cards.items()))
    before = sorted(p.name for p in world.local.iterdir())
    out = world.generatekey(*[p.replace("nvkey", "second") for p in KEYGEN], pin_file=pins, check=False)
    assert out.returncode != 0
    errors = out.stderr.strip().splitlines()
    assert len([line for line in errors if line.startswith("softshield generatekey: ")]) == 1
    assert reason in errors[-1]
    assert not (world.local / "key_simple_second").exists()
    assert not entry_path(world, esn).with_name("key_simple_second").exists()
    # Nothing else was written either (no public key object, no other key file).
    assert sorted(p.name for p in world.local.iterdir() if p.name.startswith("key_")) == \
        [n for n in before if n.startswith("key_")]


def test_world_without_acs_refuses(tmp_path):
    world = World(tmp_path)
    out = world.generatekey(*KEYGEN, check=False)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].startswith(
        "softshield generatekey: nvram: NVRAM allocation needs the ACS, and this Security World has none")
    assert not (world.local / "key_simple_nvkey").exists()


def test_other_module_of_the_world_refuses(made, tmp_path):
    """A second host: the same world's local directory (key file included), its own module #2."""
    world = copy_world(made[0], tmp_path)
    first = esn_of(world)
    world.cli("new-world", "--program", "--pin-file", str(world.pin_file("p", {"acs-2.card": "2222",
                                                                              "acs-3.card": "3333"})))
    (world.local / f"module_{first}").unlink()  # that module is in the other host
    shutil.rmtree(world.kmdata / "modules")
    module = Module.open(world.kmdata)
    assert module.esn != first
    with pytest.raises(BlobInvalid) as caught:
        module.load_key_file(world.local / "key_simple_nvkey")
    assert str(caught.value) == f"key_simple_nvkey: blob is in NVRAM of module {first}; not on this module ({module.esn})"
    # The accelerator slot does not offer it; nfkminfo says why.
    listing = world.tool("--slot-index", "0", "--list-objects").stdout
    assert "Private Key Object" not in listing and "Public Key Object; RSA 2048 bits" in listing
    keys = world.cli("nfkminfo", "-k", "simple").stdout
    assert f"   UNUSABLE: key_simple_nvkey: blob is in NVRAM of module {first}; not on this module" in keys


def test_other_world_refuses(made, tmp_path):
    other = Module.open(tmp_path / "other")  # a default world of its own
    shutil.copy(made[0].local / "key_simple_nvkey", other.local / "key_simple_nvkey")
    with pytest.raises(BlobInvalid, match="blob belongs to world .* not this world"):
        other.load_key_file(other.local / "key_simple_nvkey")


def test_freed_entry_refuses(made, tmp_path):
    world = copy_world(made[0], tmp_path)
    esn = esn_of(world)
    entry_path(world, esn).unlink()
    with pytest.raises(BlobInvalid) as caught:
        Module.open(world.kmdata).load_key_file(world.local / "key_simple_nvkey")
    assert str(caught.value) == (f"key_simple_nvkey: blob is in NVRAM of module {esn}, but its NVRAM entry is gone "
                                 "(freed or erased): the key cannot load")


def _edit_entry(doc: dict, how: str) -> None:
    entry = doc["entry"]
    if how == "sealed":
        sealed = bytearray(base64.b64decode(entry["sealed"]))
        sealed[40] ^= 1
        entry["sealed"] = base64.b64encode(bytes(sealed)).decode()
    elif how == "name":
        entry["name"] = "key_simple_other"
    elif how == "mac":
        doc["mac"] = ("0" if doc["mac"][0] != "0" else "1") + doc["mac"][1:]
    elif how == "signature":
        sig = bytearray(base64.b64decode(doc["knso_sig"]))
        sig[-1] ^= 1
        doc["knso_sig"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize("how, reason", [
    ("sealed", "NVRAM entry failed authentication"),
    ("name", "NVRAM entry failed authentication"),
    ("mac", "NVRAM entry failed authentication"),
    ("signature", "NVRAM entry has no valid ACS (KNSO) allocation signature"),
    ("garbage", "NVRAM entry is unreadable (edited)"),
])
def test_tampered_entry_refused(made, tmp_path, how, reason):
    world = copy_world(made[0], tmp_path)
    path = entry_path(world, esn_of(world))
    if how == "garbage":
        path.write_bytes(path.read_bytes()[:-9])
    else:
        doc = json.loads(path.read_bytes())
        _edit_entry(doc, how)
        path.write_bytes(json.dumps(doc).encode())
    with pytest.raises(BlobInvalid, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Module.open(world.kmdata).load_key_file(world.local / "key_simple_nvkey")


def test_entry_without_quorum_is_refused(made, tmp_path):
    """An entry the module's own key MACs but no ACS signed (allocation bypassing the quorum)."""
    world = copy_world(made[0], tmp_path)
    module = Module.open(world.kmdata)
    path = entry_path(world, module.esn)
    doc = json.loads(path.read_bytes())
    doc["entry"]["allocated"] = "2026-01-01T00:00:00Z"
    doc["mac"] = nvram.blobcrypt.mac(module.nvram._mac_key, nvram.canonical_json(doc["entry"])).hex()
    path.write_bytes(json.dumps(doc).encode())
    with pytest.raises(BlobInvalid, match=r"no valid ACS \(KNSO\) allocation signature"):
        module.load_key_file(world.local / "key_simple_nvkey")


@pytest.mark.parametrize("region", ["header", "reference"])  # the ACL in the header; the digest in the reference
def test_tampered_key_file_refused(made, tmp_path, region):
    world = copy_world(made[0], tmp_path)
    path = world.local / "key_simple_nvkey"
    data = bytearray(path.read_bytes())
    if region == "header":
        at = bytes(data).index(b'"Sign"')
        data[at + 1:at + 5] = b"Sigm"
    else:
        at = bytes(data).index(b'"sealed_digest":"') + len('"sealed_digest":"')
        data[at] = ord("0") if data[at] != ord("0") else ord("1")
    path.write_bytes(bytes(data))
    with pytest.raises(BlobInvalid, match="key_simple_nvkey: NVRAM entry does not match the key file "
                                          r"\(header or reference edited\)"):
        Module.open(world.kmdata).load_key_file(path)


def test_pkcs11_app_key_in_nvram(made, tmp_path):
    """A pkcs11-app key (ident ua..., listed through the sealed key index) loads from NVRAM too."""
    world = copy_world(made[0], tmp_path)
    out = world.generatekey("pkcs11", "type=RSA", "size=2048", "protect=module", "plainname=p11nv", "nvram=yes",
                            pin_file=world.pin_file("two", {"acs-2.card": "2222", "acs-3.card": "3333"}))
    path = out.stdout.rstrip().splitlines()[-1].removeprefix("Path to key: ")
    assert nvram.storage_of(open(path, "rb").read(), "key") == f"NVRAM of module {esn_of(world)}"
    for _attempt in range(2):  # the second process finds it through the key index
        sign_and_verify(world, "p11nv", tmp_path)
