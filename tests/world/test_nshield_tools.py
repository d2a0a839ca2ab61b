"""The nShield tools as people script them: console scripts with nShield's names, NFAST_KMLOCAL,
nfkminfo's forms (-v, -k APP IDENT, --json), read-only tools that never create state, keys named by
pkcs11: URIs (aclprint, kmfile-dump, preload), new-world --program --module=N, and the refusal of
card-set keys in a key transfer."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from worldenv import ACS_PINS, ROOT, SO, World

BIN = Path(sys.executable).parent
ONE_PINS = {"one-1.card": "4444"}
KEY_URI = "pkcs11:token=loadshared%20accelerator;object=modkey;type=private"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("tools"))
    w.new_world()
    w.cli("createocs", "-Q", "1/1", "-N", "one", "--pin-file", str(w.pin_file("one", ONE_PINS)))
    w.generatekey("--batch", "simple", "protect=token", "cardset=one", "ident=onekey", "plainname=onekey",
                  "type=RSA", "size=2048", pin_file=w.pin_file("one-use", ONE_PINS))
    w.generatekey("--batch", "simple", "protect=module", "ident=modkey", "plainname=modkey", "type=RSA", "size=2048")
    return w


def script(world: World, name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=300,
                          env={**world.env, "SOFTSHIELD_PKCS11_LIB": str(SO), **(env or {})})


# --- console scripts --------------------------------------------------------------------------------
def test_every_nshield_tool_is_a_console_script_of_the_same_command():
    from softshield_cli.main import COMMANDS, build_parser
    from softshield_cli.tools import TOOLS

    build_parser()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {name: target for name, target in scripts.items() if name != "softshield"} == {
        name: f"softshield_cli.tools:{'key_transfer_remote' if name == 'KeyTransferRemote' else name.replace('-', '_')}"
        for name in TOOLS}
    assert set(TOOLS.values()) <= set(COMMANDS)
    for name in TOOLS:
        assert (BIN / name).is_file(), f"{name} is not installed: pip install -e ."


@pytest.mark.parametrize("argv", [["nfkminfo", "--json"], ["nfkminfo", "-k", "simple", "modkey"], ["rocs", "--json"],
                                  ["aclprint", "-A", "simple", "-K", "modkey"]])
def test_console_script_prints_what_softshield_prints(world, argv):
    via_script = script(world, argv[0], *argv[1:])
    via_cli = world.cli(*argv)
    assert (via_script.returncode, via_script.stdout) == (0, via_cli.stdout)


def test_key_transfer_remote_is_keytransfer(world):
    r = script(world, "KeyTransferRemote", "-ModifyAcls")
    assert r.returncode == 2 and "-KeyIdentifier" in r.stderr


# --- NFAST_KMLOCAL -----------------------------------------------------------------------------------
def test_nfast_kmlocal_names_the_folder_every_tool_and_the_library_use(tmp_path):
    w = World(tmp_path)
    kmlocal = tmp_path / "elsewhere" / "kmlocal"
    env = {"NFAST_KMLOCAL": str(kmlocal)}
    w.env.pop("NFAST_KMDATA")
    w.cli("new-world", "--initialize", "-Q", "1/1", "--pin-file", str(w.pin_file("p", {"acs-1.card": "1111"})), env=env)
    assert (kmlocal / "world").is_file() and not (tmp_path / "kmdata").exists()
    w.cli("generatekey", "--batch", "simple", "type=ECDSA", "protect=module", "ident=here", env=env)
    assert (kmlocal / "key_simple_here").is_file()
    info = json.loads(w.cli("nfkminfo", "-w", "-k", "simple", "--json", env=env).stdout)
    assert [k["file"] for k in info["keys"]] == ["key_simple_here"] and info["world"]["local"] == str(kmlocal)


# --- nfkminfo ----------------------------------------------------------------------------------------
def test_nfkminfo_k_app_ident_prints_the_keys_detail(world):
    from emulator.module import Module

    key_hash = Module.open(world.kmdata).load_key_file(world.local / "key_simple_modkey").key_hash
    lines = world.cli("nfkminfo", "-k", "simple", "modkey").stdout.splitlines()
    assert lines[:5] == ["Key AppName simple Ident modkey", "  name          `modkey'", "  type          private:RSA",
                         f"  hash          {key_hash}", "  protection    module"]
    assert f"  file          {world.local / 'key_simple_modkey'}" in lines and "  acl" in lines
    missing = world.cli("nfkminfo", "-k", "simple", "nokey", check=False)
    assert (missing.returncode, missing.stderr) == (1, "softshield nfkminfo: no key simple nokey in this world "
                                                       "(key_simple_nokey)\n")


def test_nfkminfo_v_details_every_listed_key(world):
    out = world.cli("nfkminfo", "-v", "-k", "simple").stdout
    assert "Key AppName simple Ident modkey" in out and "Key AppName simple Ident onekey" in out
    assert "  protection    cardset " in out


def test_nfkminfo_json_forms(world):
    from emulator.module import Module

    module = Module.open(world.kmdata)
    doc = json.loads(world.cli("nfkminfo", "--json").stdout)
    assert list(doc) == ["world"] and doc["world"]["hknso"] == module.world.hknso
    assert doc["world"]["acs"]["k"] == 2 and doc["world"]["acs"]["n"] == 3
    keys = json.loads(world.cli("nfkminfo", "-k", "simple", "--json").stdout)["keys"]
    assert sorted((k["ident"], k["protection"]) for k in keys) == [("modkey", "module"), ("onekey", "cardset")]
    detail = json.loads(world.cli("nfkminfo", "-k", "simple", "modkey", "--json").stdout)["key"]
    assert detail["hash"] == module.load_key_file(world.local / "key_simple_modkey").key_hash
    both = json.loads(world.cli("nfkminfo", "-c", "-s", "--json").stdout)
    assert [c["name"] for c in both["cardsets"]] == ["one"] and both["softcards"] == []
    rocs = json.loads(world.cli("rocs", "--json").stdout)
    assert [(r["name"], r["kind"], r["keys"], r["k"], r["n"]) for r in rocs] == [("one", "cardset", 1, 1, 1)]


# --- read-only tools create nothing -------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["nfkminfo"], ["nfkminfo", "-k"], ["rocs"], ["kmfile-dump", "world"],
                                  ["aclprint", "-A", "simple", "-K", "x"]])
def test_read_only_tool_on_an_empty_kmdata_says_so_and_creates_nothing(tmp_path, argv):
    w = World(tmp_path)
    r = w.cli(*argv, check=False)
    assert (r.returncode, r.stderr) == (1, f"softshield {argv[0]}: there is no Security World in {w.local} (create "
                                           "one with `softshield new-world`, or set NFAST_KMDATA)\n")
    assert not w.kmdata.exists()


def test_doctor_on_an_empty_kmdata_creates_no_world(tmp_path):
    w = World(tmp_path)
    out = w.cli("doctor", "--json", check=False).stdout
    row = next(r for r in json.loads(out) if r["check"] == "security world")
    assert row["found"].startswith("no Security World yet")
    assert not (w.local / "world").exists()


def test_verifykeypackage_without_a_root_store_creates_none(tmp_path):
    w = World(tmp_path)
    store = tmp_path / "root-store"
    r = w.cli("verifykeypackage", "-k", "a", "-w", "b", check=False, env={"SOFTSHIELD_ROOT_STORE": str(store)})
    assert (r.returncode, r.stderr) == (1, f"softshield verifykeypackage: no pinned vendor root: {store} holds no "
                                           "root_hash (give --root-hash HASH, or SOFTSHIELD_ROOT_HASH, as the tool's "
                                           "published root)\n")
    assert not store.exists() and not w.kmdata.exists()


# --- new-world --program --module=N --------------------------------------------------------------------
def test_program_honours_the_next_module_number_and_refuses_another(tmp_path):
    w = World(tmp_path)
    w.new_world()
    quorum = str(w.pin_file("q", {"acs-1.card": ACS_PINS["acs-1.card"], "acs-2.card": ACS_PINS["acs-2.card"]}))
    before = sorted(p.name for p in w.local.iterdir())
    r = w.cli("new-world", "--program", "--module=8", "--pin-file", quorum, check=False)
    assert (r.returncode, r.stderr) == (1, "softshield new-world: --module=8: the module --program adds is #2 "
                                           "(modules #1..#1 are programmed; --recover --module=N re-initialises one "
                                           "of them)\n")
    assert sorted(p.name for p in w.local.iterdir()) == before
    out = w.cli("new-world", "--program", "--module=2", "--pin-file", quorum).stdout
    assert "security world loaded on module #2; hknso = " in out


# --- keys named by pkcs11: URIs --------------------------------------------------------------------------
def test_aclprint_and_kmfile_dump_take_a_uri(world):
    by_name = world.cli("aclprint", "-A", "simple", "-K", "modkey").stdout
    assert world.cli("aclprint", KEY_URI).stdout == by_name
    assert world.cli("aclprint", "-K", KEY_URI).stdout == by_name
    assert world.cli("kmfile-dump", KEY_URI).stdout == world.cli("kmfile-dump", "key_simple_modkey").stdout
    assert world.cli("nfkminfo", "-k", KEY_URI).stdout == world.cli("nfkminfo", "-k", "simple", "modkey").stdout
    r = world.cli("aclprint", "pkcs11:token=loadshared%20accelerator;object=nothing", check=False)
    assert (r.returncode, r.stderr) == (1, "softshield aclprint: pkcs11:token=loadshared%20accelerator;object=nothing: "
                                           "no key matches this URI (a card-set or softcard key is visible only with "
                                           "pin-value or pin-source)\n")


def test_a_card_set_key_uri_with_its_pin(world):
    uri = "pkcs11:token=one;object=onekey;type=private?pin-value=4444"
    out = world.cli("aclprint", uri).stdout
    assert out.startswith("(token-protected: ACL shown from the header") and "ACL of key_simple_onekey:" in out


def test_preload_takes_a_key_uri(world):
    out = world.cli("preload", "--key", "pkcs11:token=one;object=onekey;type=private", "--pin-file",
                    str(world.pin_file("one-pre", ONE_PINS)), "--", sys.executable, "-m", "softshield_cli.main",
                    "aclprint", env={"PYTHONPATH": str(ROOT)}).stdout
    assert "Loading complete; executing" in out and "ACL of key_simple_onekey:" in out
    module = world.cli("preload", "--key", KEY_URI, "--", sys.executable, "-m", "softshield_cli.main", "aclprint",
                       env={"PYTHONPATH": str(ROOT)}).stdout
    assert "ACL of key_simple_modkey:" in module


@pytest.mark.parametrize("argv, message", [
    ([KEY_URI], f"{KEY_URI} is a key, not a command: give it with --key URI, then -- COMMAND"),
    (["--", "no-such-tool-here"], "cannot run no-such-tool-here: No such file or directory"),
])
def test_preload_refuses_cleanly(world, argv, message):
    r = world.cli("preload", *argv, check=False)
    assert (r.returncode, r.stderr) == (1, f"softshield preload: {message}\n")


# --- transfer of a card-set key ---------------------------------------------------------------------------
def test_keytransfer_refuses_a_card_set_key_as_nshield_does(world, tmp_path):
    kek = tmp_path / "kek.pem"
    kek.write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    quorum = str(world.pin_file("q2", {"acs-1.card": ACS_PINS["acs-1.card"], "acs-3.card": ACS_PINS["acs-3.card"]}))
    r = world.cli("keytransfer", "-ModifyAcls", "-KeyIdentifier", "onekey", "-KekFile", str(kek), "-KekKid", "kek-1",
                  "--pin-file", quorum, check=False)
    assert (r.returncode, r.stderr) == (1, "softshield keytransfer: key_simple_onekey is protected by an Operator Card "
                                           "Set: only module-protected keys can be transferred (generate it with "
                                           "protect=module)\n")
    assert not (world.local / "key_xferacld_onekey").exists()
