"""The per-owner key index (emulator/keyindex.py): a listing in a fresh process takes unchanged
blobs from the sealed index without opening them, opens each one when its key is first used, and
never trusts the index over the file or the version ledger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator import keyindex
from emulator.acl import Acl, Action
from emulator.crypto import keygen
from emulator.errors import BlobInvalid
from emulator.keys import IndexedKey, Key
from emulator.module import Module


SO_PIN, USER_PIN = b"so-index-1", b"user-index-1"
EVERYDAY = (Action.SIGN, Action.VERIFY, Action.ENCRYPT, Action.DECRYPT, Action.DESTROY, Action.REDUCE_ACL)


def _token(module: Module) -> str:
    info = module.init_token("indexed", SO_PIN)
    module.init_user_pin(info.hash, module.login(info.hash, "so", SO_PIN), USER_PIN)
    return info.hash


def _keys(module: Module, count: int, token: str | None = None, auth=None, prefix: str = "k") -> list[Key]:
    keys = [Key(keygen.generate_secret("AES", 32), Acl.allowing(EVERYDAY), plainname=f"{prefix}{i}",
                token=token, protection="token" if token else "module", appdata=f"data-{i}".encode())
            for i in range(count)]
    module.store_keys(keys, auth)
    return keys


def test_second_process_lists_from_the_index(module: Module, decodes: list[str]) -> None:
    made = _keys(module, 5)
    Module.open(module.kmdata).load_keys(None)  # reads the blobs, writes the index
    assert len(decodes) == 5
    decodes.clear()
    fresh = Module.open(module.kmdata)
    keys, problems = fresh.load_keys(None)
    assert problems == [] and decodes == []
    assert all(isinstance(k, IndexedKey) for k in keys)
    assert sorted((k.plainname, k.appdata) for k in keys) == sorted((k.plainname, k.appdata) for k in made)
    by_name = {k.plainname: k for k in keys}
    material = fresh.use(by_name["k3"], Action.ENCRYPT)  # opened on first use, only that one
    assert decodes == [made[3].file_path.name]
    assert material.to_bytes() == made[3].material.to_bytes()
    assert fresh.key_hash(by_name["k1"]) == module.key_hash(made[1])


def test_token_keys_need_the_login_and_are_skipped_unread_without_it(module: Module, decodes: list[str]) -> None:
    token = _token(module)
    auth = module.login(token, "user", USER_PIN)
    _keys(module, 3, token, auth, prefix="private")
    public = Key(keygen.generate_secret("AES", 32), Acl.allowing(EVERYDAY), plainname="public", token=token)
    module.store_key(public)
    first = Module.open(module.kmdata)
    first.load_keys(token, first.login(token, "user", USER_PIN))
    first.load_keys(token)
    decodes.clear()
    fresh = Module.open(module.kmdata)
    keys, _ = fresh.load_keys(token)  # no login: the public key only, and no blob opened
    assert [k.plainname for k in keys] == ["public"] and decodes == []
    keys, _ = fresh.load_keys(token, fresh.login(token, "user", USER_PIN))
    assert sorted(k.plainname for k in keys) == ["private0", "private1", "private2", "public"] and decodes == []
    # The module-level index holds no header field of a token-protected key, only stamp and digest.
    rows = fresh._index.read(token, "module", fresh._index.seal_key("module", None))
    assert sorted(len(r) for r in rows.values()) == [5, 5, 5, 9]
    # Without the token's logical key the token index does not open.
    assert fresh._index.read(token, "token", fresh._index.seal_key("token", os.urandom(32))) == {}


def test_blob_replaced_in_place_with_the_same_stamp_is_refused_at_use(module: Module) -> None:
    victim, other = _keys(module, 2)
    Module.open(module.kmdata).load_keys(None)
    st = os.stat(victim.file_path)
    data = other.file_path.read_bytes()
    assert len(data) == st.st_size
    with open(victim.file_path, "r+b") as handle:  # same inode, same size
        handle.write(data)
    os.utime(victim.file_path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    fresh = Module.open(module.kmdata)
    keys, _ = fresh.load_keys(None)
    listed = next(k for k in keys if k.ident == victim.ident)
    with pytest.raises(BlobInvalid, match="replaced on disk since it was listed"):
        fresh.use(listed, Action.ENCRYPT)


def test_rolled_back_blob_is_refused_even_with_its_indexed_stamp(module: Module) -> None:
    """The index says what a file held; the ledger says whether that is still current."""
    (key,) = _keys(module, 1)
    Module.open(module.kmdata).load_keys(None)  # index row: the first version
    path = key.file_path
    first, st = path.read_bytes(), os.stat(path)
    module.reduce_acl(key, [Action.VERIFY, Action.DESTROY])
    module.store_key(key)
    # Put the first version back under its old inode number, size and mtime: the indexed stamp.
    os.unlink(path)
    with open(path, "wb") as handle:
        handle.write(first)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fresh = Module.open(module.kmdata)
    rows = fresh._index.read(None, "module", fresh._index.seal_key("module", None))
    rows[path.name][:3] = list(keyindex.FileStamp.of(os.stat(path)))  # as if inode reused
    fresh._index.write(None, "module", fresh._index.seal_key("module", None), rows)
    keys, problems = fresh.load_keys(None)
    assert keys == [] and len(problems) == 1 and "rollback refused" in problems[0]


@pytest.mark.parametrize("damage", ["garbage", "truncate", "delete"])
def test_damaged_index_is_only_slower(module: Module, damage: str, decodes: list[str]) -> None:
    _keys(module, 3)
    Module.open(module.kmdata).load_keys(None)
    (index,) = (Path(module.kmdata) / keyindex.INDEX_DIR).iterdir()
    if damage == "delete":
        index.unlink()
    else:
        data = index.read_bytes()
        index.write_bytes(b"\x00" * len(data) if damage == "garbage" else data[: len(data) // 2])
    decodes.clear()
    keys, problems = Module.open(module.kmdata).load_keys(None)
    assert len(keys) == 3 and problems == [] and len(decodes) == 3
    assert index.exists()  # rewritten


def test_index_follows_writes_and_deletes(module: Module) -> None:
    keys = _keys(module, 4)
    Module.open(module.kmdata).load_keys(None)
    module.delete_key(keys[0])
    keys[1].appdata = b"changed"
    module.store_key(keys[1])
    _keys(module, 1, prefix="new")
    listed, problems = Module.open(module.kmdata).load_keys(None)
    assert problems == []
    assert sorted((k.plainname, k.appdata) for k in listed) == [
        ("k1", b"changed"), ("k2", b"data-2"), ("k3", b"data-3"), ("new0", b"data-0")]


def test_one_new_blob_among_many_does_not_rewrite_the_index(module: Module, decodes: list[str]) -> None:
    _keys(module, 300)
    Module.open(module.kmdata).load_keys(None)
    (index,) = (Path(module.kmdata) / keyindex.INDEX_DIR).iterdir()
    before = index.stat().st_mtime_ns, index.stat().st_ino
    _keys(module, 1, prefix="late")
    decodes.clear()
    keys, _ = Module.open(module.kmdata).load_keys(None)
    assert len(keys) == 301 and len(decodes) == 1  # only the new blob is read
    assert (index.stat().st_mtime_ns, index.stat().st_ino) == before


def test_rows_read_back_as_written_at_the_edges_of_a_stamp(tmp_path: Path) -> None:
    """The index is read with orjson and written with json: a 64-bit inode, the largest mtime_ns,
    newlines and non-ASCII text in a name and the appdata come back exactly as written."""
    index = keyindex.KeyIndex(tmp_path, "world", bytes(32))
    acl = {"groups": [{"actions": ["wrap"], "limit": 2**40}]}
    rows = {
        "key_pkcs11_a": keyindex.make_row(keyindex.FileStamp(2**63 - 1, 2**40, 2**64 - 1), "ab" * 32, "module", "aes",
                                          acl, b"\x00\n\xff", "cl\u00e9\nnom", [2, 2**31 + 5, "label\n\u00e9", True]),
        "key_pkcs11_b": keyindex.make_row(keyindex.FileStamp(0, 0, 0), "cd" * 32, "module", "aes", acl, b"", "b"),
    }
    seal_key = index.seal_key("module", None)
    index.write(None, "module", seal_key, rows)
    assert index.read(None, "module", seal_key) == rows
    # A name holding a lone surrogate (Python text that is not UTF-8): json escapes it, orjson refuses
    # that escape, and the index still reads.
    rows["key_pkcs11_c"] = keyindex.make_row(keyindex.FileStamp(1, 2, 3), "ef" * 32, "module", "aes", acl, b"x",
                                             "half \udc80 pair")
    index.write(None, "module", seal_key, rows)
    assert index.read(None, "module", seal_key) == rows
