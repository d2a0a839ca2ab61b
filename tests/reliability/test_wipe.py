"""Plaintext secrets in memory are held in SecretBuffers (bytearrays zeroed when finalized) and
wiped once used: material.wipe(), decrypted blob plaintext, card shares and PIN keys, the PIN the
C boundary copied for C_Login, and a secret key's buffer once C_DestroyObject released it.
THREAT_MODEL.md "Plaintext in memory" lists what is wiped and what cannot be."""

from __future__ import annotations

import ctypes
import json
import subprocess
from pathlib import Path

import pytest

from emulator.acl import Acl, Action
from emulator.crypto import blobcrypt, keygen, material, pinkdf
from emulator.crypto.material import PrivateMaterial, SecretBuffer, SecretMaterial
from emulator.keys import Key
from emulator.module import Module
from relenv import HERE, PY, SO_PIN, USER_PIN, child_env

KEY = bytes(range(0x40, 0x60))  # 32 bytes the test can recognise


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Module:
    monkeypatch.delenv("SOFTSHIELD_READER", raising=False)
    return Module.open(tmp_path / "world")


def test_material_wipe_zeroes_its_own_buffer() -> None:
    given = bytearray(KEY)
    secret = SecretMaterial("AES", given)
    assert isinstance(secret.value, SecretBuffer) and secret.value == KEY
    assert secret.value is not given  # a private copy: wiping it never touches the caller's buffer
    address = ctypes.addressof(ctypes.c_char.from_buffer(secret.value))
    secret.wipe()
    assert secret.value == bytes(len(KEY)) and given == KEY
    # In place: the memory that held the key is what was zeroed (no new block, old one left behind).
    assert ctypes.addressof(ctypes.c_char.from_buffer(secret.value)) == address
    assert ctypes.string_at(address, len(KEY)) == bytes(len(KEY))
    private = keygen.generate_ec()
    private.wipe()
    assert private.key is None  # the OpenSSL key is freed (and cleared by OpenSSL) with its last holder


def test_secret_buffer_is_zeroed_when_finalized(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    monkeypatch.setattr(material, "on_finalize", lambda buf: seen.append(bytes(buf)))
    secret = SecretMaterial("AES", KEY)
    held = secret.value
    del secret
    assert seen == [] and held == KEY  # a holder of .value keeps it intact (no zeroing under it)
    del held
    assert seen == [bytes(len(KEY))]


def _capture(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list:
    captured: list = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        if out is not None:
            captured.append(out)
        return out

    monkeypatch.setattr(owner, name, spy)
    return captured


@pytest.mark.parametrize("kind", ["secret", "private"])
def test_decoded_blob_plaintext_is_wiped(module: Module, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    made = SecretMaterial("AES", KEY) if kind == "secret" else keygen.generate_ec()
    key = Key(made, Acl.allowing({Action.SIGN, Action.ENCRYPT}), plainname="wiped")
    module.store_key(key)
    plaintexts = _capture(monkeypatch, blobcrypt, "unseal_buffer")
    loaded = Module.open(module.kmdata).load_key_file(key.file_path)
    assert len(plaintexts) == 1 and len(plaintexts[0]) > 0
    assert plaintexts[0] == bytes(len(plaintexts[0]))  # zeroed before decode returned
    assert loaded.material.to_bytes() == made.to_bytes()  # while the key itself is intact


def test_card_shares_and_pin_keys_are_wiped(module: Module, monkeypatch: pytest.MonkeyPatch) -> None:
    cardset = module.cardsets.create("wipe", 2, 3, [b"c1", b"c2", b"c3"])
    shares = _capture(monkeypatch, blobcrypt, "try_unseal_buffer")
    pin_keys = _capture(monkeypatch, pinkdf, "derive_pin_key")
    cards = [module.reader.path(f"wipe-{n}.card") for n in (1, 2)]
    auth = module.cardsets.login(cardset.hash, list(zip(cards, [b"c1", b"c2"])))
    assert auth.token == cardset.hash
    assert len(shares) == 2 and len(pin_keys) == 2
    assert all(isinstance(b, SecretBuffer) and b == bytes(len(b)) for b in shares + pin_keys)


def test_library_pin_and_destroyed_key_are_wiped(kmdata: Path) -> None:
    result = subprocess.run([PY, str(HERE / "wipe_child.py"), SO_PIN, USER_PIN, KEY.hex()], capture_output=True,
                            text=True, env=child_env(kmdata), timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # C_Login's PIN reached the KDF as the boundary's SecretBuffer (no immutable copy) and was zeroed.
    assert report["login"] == [{"type": "SecretBuffer", "len": len(USER_PIN), "zeroed": True}]
    # The object's key value lived in one SecretBuffer, intact until C_DestroyObject, zeroed after.
    assert report["materials"] == 1 and report["buf_type"] == "SecretBuffer"
    assert report["finalized_before_destroy"] == 0
    assert report["after_destroy"] == [bytes(len(KEY)).hex()]
