"""Blobs round-trip every kind of material, and any edit, rename or move makes them fail to load."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from emulator import blobs
from emulator.acl import Acl, Action
from emulator.crypto import keygen
from emulator.crypto.material import PrivateMaterial, PublicMaterial, SecretMaterial
from emulator.errors import BlobInvalid
from emulator.keys import Key
from emulator.module import Module


def _material(kind: str):
    return {
        "rsa": lambda: keygen.generate_rsa(2048),
        "ec": lambda: keygen.generate_ec("P-384"),
        "ed25519": lambda: keygen.generate_eddsa("Ed25519"),
        "ec-public": lambda: keygen.generate_ec("P-256").public(),
        "aes": lambda: keygen.generate_secret("AES", 32),
        "hmac": lambda: keygen.generate_secret("HMAC", 48),
        "none": lambda: None,
    }[kind]()


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519", "ec-public", "aes", "hmac", "none"])
def test_round_trip(module: Module, kmdata: Path, everyday_acl: Acl, kind: str) -> None:
    material = _material(kind)
    key = Key(material, everyday_acl, appdata=b"\x00attrs\xff" * 10, plainname="my key")
    module.store_key(key)
    loaded = Module.open(kmdata).load_key_file(key.file_path)
    assert loaded.ident == key.ident and loaded.app == "pkcs11" and loaded.token is None
    assert loaded.appdata == key.appdata and loaded.plainname == "my key"
    assert loaded.acl == everyday_acl
    assert loaded.kind == key.kind
    assert loaded.key_hash == key.key_hash
    if material is None:
        assert loaded.material is None
    else:
        assert type(loaded.material) is type(material)
        assert loaded.material.to_bytes() == material.to_bytes()


def test_private_key_works_after_load(module: Module, kmdata: Path, everyday_acl: Acl) -> None:
    key = Key(keygen.generate_rsa(2048), everyday_acl)
    module.store_key(key)
    loaded = Module.open(kmdata).load_key_file(key.file_path)
    assert isinstance(loaded.material, PrivateMaterial)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    signature = loaded.material.key.sign(b"msg", padding.PKCS1v15(), hashes.SHA256())
    key.material.key.public_key().verify(signature, b"msg", padding.PKCS1v15(), hashes.SHA256())


def test_material_is_not_in_the_clear(module: Module, everyday_acl: Acl) -> None:
    secret = SecretMaterial("AES", b"K" * 32)
    key = Key(secret, everyday_acl)
    module.store_key(key)
    assert b"K" * 16 not in key.file_path.read_bytes()


def _regions(data: bytes) -> dict[str, int]:
    """Offset of one byte inside each region of a blob."""
    (length,) = struct.unpack_from(">I", data, 5)
    header_start, header_end = 9, 9 + length
    header = data[header_start:header_end]
    return {
        "magic": 0,
        "version": 4,
        "header-ident": header_start + header.index(b'"ident":"') + len(b'"ident":"') + 5,
        "header-plainname": header_start + header.index(b'"plainname":"') + len(b'"plainname":"'),
        "acl": header_start + header.index(b'"Sign"') + 2,
        "appdata": header_start + header.index(b'"appdata":"') + len(b'"appdata":"') + 1,
        "nonce": header_end + 3,
        "ciphertext": header_end + 12 + 5,
        "tag": len(data) - 3,
    }


REASONS = {
    "magic": "bad magic",
    "version": "format version",
    "header-ident": "renamed",
    "header-plainname": "authentication failed",
    "acl": "authentication failed",
    "appdata": "authentication failed",
    "nonce": "authentication failed",
    "ciphertext": "authentication failed",
    "tag": "authentication failed",
}


@pytest.mark.parametrize("region", sorted(REASONS))
def test_tampering_any_region_fails(module: Module, kmdata: Path, everyday_acl: Acl, region: str) -> None:
    victim = Key(keygen.generate_secret("AES", 16), everyday_acl, appdata=b"appdata!", plainname="v")
    bystander = Key(keygen.generate_ec("P-256"), everyday_acl)
    module.store_key(victim)
    module.store_key(bystander)
    data = bytearray(victim.file_path.read_bytes())
    offset = _regions(bytes(data))[region]
    # Replace with another character of the same class so JSON stays JSON where it was.
    data[offset] = ord("3") if data[offset] != ord("3") else ord("4")
    victim.file_path.write_bytes(bytes(data))

    fresh = Module.open(kmdata)
    with pytest.raises(BlobInvalid, match=REASONS[region]):
        fresh.load_key_file(victim.file_path)
    keys, problems = fresh.load_keys(None)
    assert [k.ident for k in keys] == [bystander.ident]
    assert len(problems) == 1 and victim.file_path.name in problems[0] and REASONS[region] in problems[0]


@pytest.mark.parametrize("keep", [0, 5, 9, 40, -16, -1])
def test_truncation_fails(module: Module, kmdata: Path, everyday_acl: Acl, keep: int) -> None:
    key = Key(keygen.generate_secret("AES", 32), everyday_acl)
    module.store_key(key)
    data = key.file_path.read_bytes()
    key.file_path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(BlobInvalid, match="truncated|authentication failed|not valid JSON"):
        Module.open(kmdata).load_key_file(key.file_path)


def test_edited_acl_with_valid_json_fails(module: Module, kmdata: Path) -> None:
    """Widening the ACL by rewriting the header (valid JSON, right length fields) is caught by the tag."""
    key = Key(keygen.generate_secret("AES", 32), Acl.allowing([Action.ENCRYPT]))
    module.store_key(key)
    data = key.file_path.read_bytes()
    (length,) = struct.unpack_from(">I", data, 5)
    header = data[9:9 + length].replace(b'"Encrypt"', b'"Encrypt","ExportAsPlain"')
    forged = data[:5] + struct.pack(">I", len(header)) + header + data[9 + length:]
    key.file_path.write_bytes(forged)
    with pytest.raises(BlobInvalid, match="authentication failed"):
        Module.open(kmdata).load_key_file(key.file_path)


def test_renamed_blob_refused(module: Module, kmdata: Path, everyday_acl: Acl) -> None:
    key = Key(keygen.generate_secret("AES", 32), everyday_acl)
    module.store_key(key)
    renamed = key.file_path.with_name("key_pkcs11_ua" + "0" * 40)
    os.rename(key.file_path, renamed)
    with pytest.raises(BlobInvalid, match="renamed"):
        Module.open(kmdata).load_key_file(renamed)
    keys, problems = Module.open(kmdata).load_keys(None)
    assert keys == [] and "renamed" in problems[0]


def test_blob_moved_to_another_owner_refused(module: Module, kmdata: Path, everyday_acl: Acl, token: str) -> None:
    key = Key(keygen.generate_secret("AES", 32), everyday_acl)
    module.store_key(key)
    ident = f"uc{token}-" + key.ident[2:]
    moved = key.file_path.with_name(f"key_pkcs11_{ident}")
    shutil.copy(key.file_path, moved)
    keys, problems = module.load_keys(token)
    assert keys == [] and "renamed" in problems[0]


def test_blob_from_another_world_refused(tmp_path: Path, everyday_acl: Acl) -> None:
    first = Module.open(tmp_path / "a")
    second = Module.open(tmp_path / "b")
    key = Key(keygen.generate_secret("AES", 32), everyday_acl)
    first.store_key(key)
    copied = second.local / key.file_path.name
    shutil.copy(key.file_path, copied)
    with pytest.raises(BlobInvalid, match="belongs to world"):
        second.load_key_file(copied)
    # Forging the world field to this world's hknso is caught by the tag.
    data = copied.read_bytes().replace(first.world.hknso.encode(), second.world.hknso.encode())
    copied.write_bytes(data)
    with pytest.raises(BlobInvalid, match="authentication failed"):
        second.load_key_file(copied)


def test_not_a_key_file_name(module: Module, tmp_path: Path) -> None:
    stray = tmp_path / "notes.txt"
    stray.write_bytes(b"hello")
    with pytest.raises(BlobInvalid, match="not a key file name"):
        module.load_key_file(stray)


def test_parse_rejects_garbage() -> None:
    with pytest.raises(BlobInvalid, match="bad magic"):
        blobs.parse(b"XXXX" + b"\x01" + b"\x00" * 20, "f")
    with pytest.raises(BlobInvalid, match="not valid JSON"):
        blobs.parse(b"SSKB\x01" + struct.pack(">I", 3) + b"{{{" + b"\x00" * 28, "f")


def test_public_material_kind_checked() -> None:
    public = PublicMaterial(keygen.generate_ec().key.public_key())
    assert Key(public, Acl(())).kind == "public:EC"
