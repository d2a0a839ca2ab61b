"""OpenSC's pkcs11-tool against the library, the way SoftHSM2 users drive their token in CI."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives import padding as sym_padding

from p11env import SO_PIN, USER_PIN, init_token, pkcs11_tool

from pkcs11_shim.constants import CKR

ACCELERATOR_LABEL = "loadshared accelerator"
#: Mechanisms the keygen/sign tests below (and every nShield-like profile) rely on.
CORE_MECHANISMS = ["RSA-PKCS-KEY-PAIR-GEN", "RSA-PKCS", "SHA256-RSA-PKCS", "AES-KEY-GEN", "AES-ECB",
                   "AES-CBC", "AES-CBC-PAD", "SHA256"]


@dataclass
class Slot:
    slot_id: int
    description: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def uninitialized(self) -> bool:
        return self.fields.get("token state") == "uninitialized"

    @property
    def label(self) -> str | None:
        return self.fields.get("token label")


SLOT_LINE = re.compile(r"^Slot (\d+) \((0x[0-9a-fA-F]+)\):\s*(.*)$")
FIELD_LINE = re.compile(r"^\s+([a-z][a-z /]*?)\s*:\s*(.*?)\s*$")


def parse_slots(output: str) -> list[Slot]:
    slots: list[Slot] = []
    for line in output.splitlines():
        m = SLOT_LINE.match(line)
        if m:
            slots.append(Slot(int(m.group(2), 16), m.group(3)))
            continue
        m = FIELD_LINE.match(line)
        if m and slots:
            slots[-1].fields[m.group(1)] = m.group(2)
    return slots


def list_slots() -> list[Slot]:
    return parse_slots(pkcs11_tool("--list-slots").stdout)


#: pkcs11-tool warns about attributes it asks for speculatively; these answers are the spec's (§5.7.5).
BENIGN_WARNING = re.compile(
    r"^warning: PKCS11 function C_GetAttributeValue\(\w+\) failed: rv = "
    rf"CKR_ATTRIBUTE_(SENSITIVE|TYPE_INVALID) \(({CKR.ATTRIBUTE_SENSITIVE:#x}|{CKR.ATTRIBUTE_TYPE_INVALID:#x})\)$")


def assert_clean(result, what: str, *, strict: bool = False) -> None:
    """No "failed"/"ERR" lines; strict=False lets the benign attribute warnings through."""
    text = result.stdout + result.stderr
    bad = [line for line in text.splitlines()
           if ("failed" in line.lower() or "ERR" in line) and (strict or not BENIGN_WARNING.match(line))]
    assert not bad, f"{what} reported problems:\n" + "\n".join(bad) + f"\n--- full output ---\n{text}"


def login_args(label: str) -> list[str]:
    return ["--token-label", label, "--login", "--pin", USER_PIN]


def test_list_slots_and_mechanisms() -> None:
    result = pkcs11_tool("--list-slots", "--list-mechanisms")
    slots = parse_slots(result.stdout)
    assert slots, result.stdout
    accelerator = slots[0]
    assert accelerator.slot_id == 0 and accelerator.label == ACCELERATOR_LABEL, result.stdout
    assert "token initialized" in accelerator.fields.get("token flags", ""), result.stdout
    assert sum(slot.uninitialized for slot in slots) == 1, f"expected one spare slot:\n{result.stdout}"
    assert "Supported mechanisms:" in result.stdout, result.stdout
    listed = {line.strip().split(",")[0] for line in result.stdout.split("Supported mechanisms:", 1)[1].splitlines()
              if line.startswith("  ")}
    missing = [m for m in CORE_MECHANISMS if m not in listed]
    assert not missing, f"mechanisms missing from --list-mechanisms: {missing}\n{result.stdout}"
    # Every listed mechanism is one pkcs11-tool knows or an explicit vendor/unknown number.
    assert all(name for name in listed), listed


def test_init_token_makes_a_new_spare_slot() -> None:
    before = list_slots()
    spares = [slot for slot in before if slot.uninitialized]
    assert len(spares) == 1, [vars(s) for s in before]
    spare = spares[0]

    label = init_token()  # --init-token on the spare slot, then --init-pin as SO

    after = list_slots()
    by_id = {slot.slot_id: slot for slot in after}
    assert spare.slot_id in by_id, f"slot {spare.slot_id} vanished: {[vars(s) for s in after]}"
    initialised = by_id[spare.slot_id]
    assert initialised.label == label, vars(initialised)
    flags = initialised.fields.get("token flags", "")
    assert "token initialized" in flags and "PIN initialized" in flags, flags
    new_spares = [slot for slot in after if slot.uninitialized]
    assert len(new_spares) == 1, [vars(s) for s in after]
    assert new_spares[0].slot_id not in {slot.slot_id for slot in before}, "no new spare slot appeared"
    # Slot numbers of existing tokens do not move (SoftHSM2's most reported annoyance).
    for slot in before:
        if not slot.uninitialized:
            assert by_id[slot.slot_id].label == slot.label, (vars(slot), vars(by_id[slot.slot_id]))


def test_init_token_with_wrong_so_pin_is_refused(token_label: str) -> None:
    result = pkcs11_tool("--init-pin", "--token-label", token_label, "--login", "--login-type", "so",
                         "--so-pin", SO_PIN + "9", "--pin", USER_PIN, check=False)
    assert result.returncode != 0
    assert "CKR_PIN_INCORRECT" in result.stdout + result.stderr, result.stdout + result.stderr


def test_builtin_self_test_on_a_fresh_token() -> None:
    label = init_token()
    result = pkcs11_tool(*login_args(label), "--test", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result, "pkcs11-tool --test", strict=True)
    assert "No errors" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def keyed_token(token_label: str) -> str:
    """The module's fresh token with an RSA-2048 pair (id 01) and an AES-256 key (id 02)."""
    pair = pkcs11_tool(*login_args(token_label), "--keypairgen", "--key-type", "rsa:2048",
                       "--label", "tool-rsa", "--id", "01")
    assert_clean(pair, "--keypairgen")
    assert "Private Key Object; RSA" in pair.stdout and "Public Key Object; RSA 2048 bits" in pair.stdout, pair.stdout
    secret = pkcs11_tool(*login_args(token_label), "--keygen", "--key-type", "aes:32",
                         "--label", "tool-aes", "--id", "02")
    assert_clean(secret, "--keygen")
    assert "Secret Key Object; AES length 32" in secret.stdout, secret.stdout
    return token_label


def test_keygen_objects_are_listed(keyed_token: str) -> None:
    result = pkcs11_tool(*login_args(keyed_token), "--list-objects")
    out = result.stdout
    assert "Private Key Object; RSA" in out and "Public Key Object; RSA 2048 bits" in out, out
    assert "Secret Key Object; AES length 32" in out, out
    assert out.count("label:      tool-rsa") == 2 and out.count("label:      tool-aes") == 1, out
    # Without a login only public objects show up (private keys are CKA_PRIVATE).
    public = pkcs11_tool("--token-label", keyed_token, "--list-objects").stdout
    assert "Private Key Object" not in public, public


def test_sign_with_sha256_rsa_pkcs(keyed_token: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"signed by softshield through pkcs11-tool\n" * 10)
    sig = tmp_path / "sig"
    pub = tmp_path / "pub.der"
    result = pkcs11_tool(*login_args(keyed_token), "--sign", "-m", "SHA256-RSA-PKCS", "--id", "01",
                         "--input-file", str(data), "--output-file", str(sig))
    assert_clean(result, "--sign")
    assert len(sig.read_bytes()) == 256
    verify = pkcs11_tool(*login_args(keyed_token), "--verify", "-m", "SHA256-RSA-PKCS", "--id", "01",
                         "--input-file", str(data), "--signature-file", str(sig))
    assert "Signature is valid" in verify.stdout, verify.stdout + verify.stderr
    # And independently of the library: the exported public key verifies it with `cryptography`.
    pkcs11_tool("--token-label", keyed_token, "--read-object", "--type", "pubkey", "--id", "01",
                "--output-file", str(pub))
    public_key = serialization.load_der_public_key(pub.read_bytes())
    public_key.verify(sig.read_bytes(), data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    # A tampered signature is rejected.
    bad = tmp_path / "bad-sig"
    raw = bytearray(sig.read_bytes())
    raw[10] ^= 1
    bad.write_bytes(bytes(raw))
    rejected = pkcs11_tool(*login_args(keyed_token), "--verify", "-m", "SHA256-RSA-PKCS", "--id", "01",
                           "--input-file", str(data), "--signature-file", str(bad), check=False)
    assert "Signature is valid" not in rejected.stdout
    # pkcs11-tool prints "Invalid signature" when C_Verify answers CKR_SIGNATURE_INVALID.
    assert "Invalid signature" in rejected.stdout, rejected.stdout + rejected.stderr


def test_aes_encrypt_decrypt(keyed_token: str, tmp_path: Path) -> None:
    iv = "000102030405060708090a0b0c0d0e0f"
    plain = tmp_path / "plain"
    plain.write_bytes(bytes(range(256)) * 3 + b"tail")
    cipher = tmp_path / "cipher"
    back = tmp_path / "back"
    pkcs11_tool(*login_args(keyed_token), "--encrypt", "-m", "AES-CBC-PAD", "--iv", iv, "--id", "02",
                "--input-file", str(plain), "--output-file", str(cipher))
    assert len(cipher.read_bytes()) == (len(plain.read_bytes()) // 16 + 1) * 16
    pkcs11_tool(*login_args(keyed_token), "--decrypt", "-m", "AES-CBC-PAD", "--iv", iv, "--id", "02",
                "--input-file", str(cipher), "--output-file", str(back))
    assert back.read_bytes() == plain.read_bytes()


def test_imported_aes_key_matches_cryptography(keyed_token: str, tmp_path: Path) -> None:
    """--write-object of a known AES key, then CBC-PAD through the library equals `cryptography`."""
    key = bytes(range(16, 48))
    keyfile = tmp_path / "key.bin"
    keyfile.write_bytes(key)
    pkcs11_tool(*login_args(keyed_token), "--write-object", str(keyfile), "--type", "secrkey",
                "--key-type", "AES:32", "--label", "tool-known-aes", "--id", "03", "--usage-decrypt")
    iv = bytes(range(16))
    plain = tmp_path / "plain"
    plain.write_bytes(b"known answer " * 7)
    cipher = tmp_path / "cipher"
    pkcs11_tool(*login_args(keyed_token), "--encrypt", "-m", "AES-CBC-PAD", "--iv", iv.hex(), "--id", "03",
                "--input-file", str(plain), "--output-file", str(cipher))
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    expected = encryptor.update(padder.update(plain.read_bytes()) + padder.finalize()) + encryptor.finalize()
    assert cipher.read_bytes() == expected
