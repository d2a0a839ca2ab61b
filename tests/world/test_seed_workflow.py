"""The seed workflow, exactly as the Azure BYOK walkthrough scripts it, through the CLI and a C host:
new-world with a 2/3 ACS, generatekey simple/RSA/module, then pkcs11-tool finds the key in the
accelerator slot and signs with it; the signature verifies with `cryptography` against the public
key pkcs11-tool exports."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from worldenv import World

SEED_KEYGEN = ("simple", "type=RSA", "size=2048", "protect=module", "ident=contosokey",
               "plainname=contosokey", "nvram=no", "pubexp=")


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def sign_and_verify(world: World, label: str, tmp_path, *, slot: tuple[str, str] = ("--slot-index", "0")) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"contoso BYOK test message")
    sig, pub = tmp_path / "sig.bin", tmp_path / "pub.der"
    out = world.tool(*slot, "--sign", "--label", label, "-m", "SHA256-RSA-PKCS",
                     "-i", str(data), "-o", str(sig))
    assert "Using signature algorithm SHA256-RSA-PKCS" in out.stderr + out.stdout
    world.tool(*slot, "--read-object", "--type", "pubkey", "--label", label, "-o", str(pub))
    public = serialization.load_der_public_key(pub.read_bytes())
    # raises InvalidSignature on a wrong signature
    public.verify(sig.read_bytes(), data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(sig.read_bytes(), data.read_bytes() + b"x", padding.PKCS1v15(), hashes.SHA256())


def test_seed_workflow(world, tmp_path):
    out = world.new_world().stdout
    assert "Card writing complete." in out
    assert " Module 1: 2 cards of 3 written" in out
    hknso = out.strip().splitlines()[-1]
    assert hknso.startswith("security world generated on module #1; hknso = ")
    assert len(hknso.rsplit(" ", 1)[1]) == 40
    assert sorted(p.name for p in world.reader.glob("*.card")) == ["acs-1.card", "acs-2.card", "acs-3.card"]
    assert (world.local / "world").is_file()
    assert [p.name for p in world.local.glob("module_*")], "no module_<ESN> file"

    out = world.generatekey(*SEED_KEYGEN).stdout
    key_file = world.local / "key_simple_contosokey"
    assert key_file.is_file()
    assert " protect      Protected by                       module" in out
    assert out.rstrip().splitlines()[-2:] == ["Key successfully generated.", f"Path to key: {key_file}"]

    listing = world.tool("--slot-index", "0", "--list-objects").stdout
    assert "Private Key Object; RSA" in listing and "label:      contosokey" in listing
    slots = world.tool("--list-slots").stdout
    assert "token label        : loadshared accelerator" in slots
    sign_and_verify(world, "contosokey", tmp_path)
    # The same key by token label, as scripts that do not count slots find it.
    sign_and_verify(world, "contosokey", tmp_path, slot=("--token-label", "loadshared accelerator"))


def test_second_initialize_is_refused(world):
    world.new_world()
    again = world.cli("new-world", "--initialize", "--module=1", "--acs-quorum=1/1", "--pin-file",
                      str(world.pin_file("p", {"acs-1.card": "1111"})), check=False)
    assert again.returncode != 0
    assert "world" in again.stderr.lower() and "exist" in again.stderr.lower()


@pytest.mark.parametrize("suite,size", [("DLf3072s256mRijndael", "1024"), ("DLf3072s256mAEScSP800131Ar1", "2048")])
def test_other_cipher_suites(world, tmp_path, suite, size):
    world.new_world(suite)
    info = world.cli("nfkminfo").stdout
    assert suite in info
    world.generatekey("simple", "type=RSA", f"size={size}", "protect=module", "ident=suitekey",
                      "plainname=suitekey", "nvram=no", "pubexp=")
    assert (world.local / "key_simple_suitekey").is_file()
    sign_and_verify(world, "suitekey", tmp_path)
