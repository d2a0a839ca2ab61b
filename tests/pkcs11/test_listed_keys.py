"""A login files the token's keys in the find index from their sealed index rows' summaries
(key_summary.index_summary, keyindex.SUMMARY) and makes a key's Key and P11Object only when its handle
is used: the handles, the find order and the private-object rules are those of keys made at once;
rows written without a summary (an older release's index) still load and get one; an edited
index is refused, and a row of another file version is never used. Session objects are filed in
the find index when a find runs, in creation order."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from emulator import keyindex
from emulator.crypto import blobcrypt
from emulator.acl import Acl, Action
from emulator.crypto import keygen
from emulator.keys import Key
from emulator.module import Module
from pkcs11_shim import key_summary
from pkcs11_shim.attributes import codecs
from pkcs11_shim.constants import Attribute, ObjectClass
from pkcs11_shim.handles import token_handle
from pkcs11_shim.object_store import ObjectStore
from pkcs11_shim.objects import P11Object

SO_PIN, USER_PIN = b"so-listed-1", b"user-listed-1"
COUNT = 6  # keys 0, 2, 4 private (token-protected), 1, 3, 5 public (module-protected)


def _attrs(i: int) -> dict[int, object]:
    return {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True, Attribute.PRIVATE: i % 2 == 0,
            Attribute.LABEL: f"listed-{i}", Attribute.ID: bytes([i, 0xA5]), Attribute.VALUE_LEN: 32}


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, str, list[Key]]:
    """kmdata with one token of COUNT keys, listed once by another process (which wrote the index)."""
    kmdata = tmp_path / "kmdata"
    module = Module.open(kmdata)
    token = module.init_token("listed", SO_PIN).hash
    module.init_user_pin(token, module.login(token, "so", SO_PIN), USER_PIN)
    auth = module.login(token, "user", USER_PIN)
    keys = [Key(keygen.generate_secret("AES", 32), Acl.allowing((Action.ENCRYPT, Action.DESTROY)), token=token,
                protection="token" if i % 2 == 0 else "module", appdata=codecs.serialize(_attrs(i)),
                plainname=f"listed-{i}")
            for i in range(COUNT)]
    module.store_keys(keys, auth)
    first = Module.open(kmdata)
    first.load_keys(token, first.login(token, "user", USER_PIN))
    return kmdata, token, keys


def _fresh(kmdata: Path, token: str, *, login: bool = True) -> tuple[ObjectStore, object]:
    module = Module.open(kmdata)
    auth = module.login(token, "user", USER_PIN) if login else None
    store = ObjectStore(module, token)
    store.sync(auth)
    return store, auth


def _placeholders(store: ObjectStore) -> int:
    return sum(1 for obj in store._objects.values() if type(obj) is tuple)


def _load_order(keys: list[Key]) -> list[Key]:
    return sorted(keys, key=lambda k: paths_name(k))


def paths_name(key: Key) -> str:
    return f"key_{key.app}_{key.ident}"


def test_login_files_every_key_and_makes_none(world, decodes: list[str]) -> None:
    kmdata, token, keys = world
    store, _auth = _fresh(kmdata, token)
    assert decodes == [] and _placeholders(store) == COUNT
    assert store._index == {}  # filed under an attribute when a find first names it
    assert store.find({Attribute.LABEL: "listed-2"}, True) == [token_handle("pkcs11", keys[2].ident)]
    assert {attr for attr, _value in store._index} == {Attribute.LABEL}
    # A find by class answers from the summaries: every key, in the listing's (file name) order,
    # each under the handle its identity gives, and no object is made for it.
    found = store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, True)
    assert found == [token_handle("pkcs11", k.ident) for k in _load_order(keys)]
    assert _placeholders(store) == COUNT
    # A find by label names one key; using its handle makes that one object, in its slot.
    (handle,) = store.find({Attribute.LABEL: "listed-3"}, True)
    assert handle == token_handle("pkcs11", keys[3].ident)
    obj = store.get(handle)
    assert isinstance(obj, P11Object) and obj.attrs[Attribute.ID] == bytes([3, 0xA5])
    assert obj.key.material.to_bytes() == keys[3].material.to_bytes()
    assert _placeholders(store) == COUNT - 1 and list(store._objects).index(handle) == \
        [paths_name(k) for k in _load_order(keys)].index(paths_name(keys[3]))
    assert store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, True) == found  # order kept
    # A template beyond the summary makes the candidates' objects and matches their attributes.
    assert store.find({Attribute.LABEL: "listed-4", Attribute.VALUE_LEN: 32}, True) == \
        [token_handle("pkcs11", keys[4].ident)]
    assert decodes == [paths_name(keys[3])]  # material read only for the key whose material was asked


def test_private_keys_follow_the_login(world) -> None:
    kmdata, token, keys = world
    public = [token_handle("pkcs11", k.ident) for k in _load_order(keys) if k.protection == "module"]
    # Without a login the token index does not open: the private keys are not even listed.
    store, _auth = _fresh(kmdata, token, login=False)
    assert store.find({}, False) == public and len(store._objects) == 3
    store, _auth = _fresh(kmdata, token)
    assert len(store.find({}, True)) == COUNT
    assert store.find({}, False) == public  # listed, and still hidden from a session without login
    store.drop_private()
    assert store.find({}, True) == public and len(store._objects) == 3
    assert store.get(token_handle("pkcs11", keys[0].ident)) is None


def _write_format_1(module: Module, token: str, protection: str, seal: bytes, rows: dict[str, list]) -> None:
    """The index as the previous release wrote it: format 1 under its own name and authenticated
    data, the appdata base64 inside the JSON, no summary."""
    acls: list[object] = []
    stored = {}
    for name, row in rows.items():
        row = row[:keyindex.SUMMARY]
        if len(row) > keyindex.ACL:
            acls.append(row[keyindex.ACL])
            row = [*row[:keyindex.ACL], len(acls) - 1, base64.b64encode(row[keyindex.APPDATA]).decode("ascii"),
                   *row[keyindex.APPDATA + 1:]]
        stored[name] = row
    aad = f"softshield key index\x001\x00{module.world.hknso}\x00{token}\x00{protection}".encode("ascii")
    body = json.dumps({"acls": acls, "rows": stored}, separators=(",", ":")).encode("ascii")
    (module.kmdata / keyindex.INDEX_DIR / f"index-{token}-{protection}").write_bytes(blobcrypt.seal(seal, body, aad))


def test_an_index_of_the_previous_release_still_loads_and_is_rewritten(world, decodes: list[str]) -> None:
    """kmdata whose index the previous release wrote (format 1, no summaries): every row is taken
    as before (no blob opened), and the index is rewritten in format 2 with the summaries."""
    kmdata, token, keys = world
    module = Module.open(kmdata)
    auth = module.login(token, "user", USER_PIN)
    index = module._index
    seals = {"module": index.seal_key("module", None), "token": index.seal_key("token", module._tokens.blob_key(auth))}
    for protection, seal in seals.items():
        rows = index.read(token, protection, seal)
        assert any(len(row) > keyindex.SUMMARY for row in rows.values())
        _write_format_1(module, token, protection, seal, rows)
    for path in (kmdata / keyindex.INDEX_DIR).glob("index2-*"):
        path.unlink()
    assert all(len(row) <= keyindex.SUMMARY for row in index.read(token, "token", seals["token"]).values())
    old = Module.open(kmdata)  # a load_keys caller (no summaries needed) is served as before
    loaded, problems = old.load_keys(token, old.login(token, "user", USER_PIN))
    assert problems == [] and sorted(k.plainname for k in loaded) == [f"listed-{i}" for i in range(COUNT)]
    assert sorted(k.appdata for k in loaded) == sorted(k.appdata for k in keys)
    store, _auth = _fresh(kmdata, token)
    assert decodes == [] and _placeholders(store) == COUNT
    assert store.find({Attribute.ID: bytes([5, 0xA5])}, True) == [token_handle("pkcs11", keys[5].ident)]
    assert store.get(token_handle("pkcs11", keys[5].ident)).attrs[Attribute.LABEL] == "listed-5"
    assert sorted(p.name.split("-")[0] for p in (kmdata / keyindex.INDEX_DIR).iterdir()) == \
        ["index", "index", "index2", "index2"]
    rows = index.read(token, "token", seals["token"])
    assert sorted(row[keyindex.SUMMARY][5] for row in rows.values()) == ["listed-0", "listed-2", "listed-4"]


def test_an_edited_index_is_refused(world, decodes: list[str]) -> None:
    """The summary is trusted because the index is sealed: a changed byte fails its authentication,
    and every key is read from its own blob."""
    kmdata, token, keys = world
    for path in (kmdata / keyindex.INDEX_DIR).iterdir():
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    store, _auth = _fresh(kmdata, token)
    assert sorted(decodes) == sorted(paths_name(k) for k in keys) and _placeholders(store) == 0
    assert store.find({}, False) == [token_handle("pkcs11", k.ident) for k in _load_order(keys)
                                     if k.protection == "module"]


def test_a_row_of_another_file_version_is_not_used(world, decodes: list[str]) -> None:
    """A key rewritten since the index was (here made private and relabelled by another process):
    its indexed summary says public, its file says private; the file wins, so a session without
    login does not see it."""
    kmdata, token, keys = world
    writer = Module.open(kmdata)
    auth = writer.login(token, "user", USER_PIN)
    (changed,) = [k for k in writer.load_keys(token, auth)[0] if k.plainname == "listed-1"]
    attrs = codecs.deserialize(changed.appdata)
    attrs[Attribute.LABEL], attrs[Attribute.PRIVATE] = "relabelled", True
    changed.appdata = codecs.serialize(attrs)
    writer.store_key(changed)
    handle = token_handle("pkcs11", keys[1].ident)
    decodes.clear()
    store, _auth = _fresh(kmdata, token, login=False)
    assert decodes == [paths_name(keys[1])]
    assert handle not in store.find({}, False)
    assert store.find({}, False) == [token_handle("pkcs11", k.ident) for k in _load_order(keys)
                                     if k.protection == "module" and k is not keys[1]]
    store, _auth = _fresh(kmdata, token)
    assert store.find({Attribute.LABEL: "listed-1"}, True) == []
    assert store.find({Attribute.LABEL: "relabelled"}, True) == [handle]
    assert store.find({Attribute.LABEL: "relabelled"}, False) == []


def test_a_key_deleted_by_another_process_leaves_at_the_next_listing(world) -> None:
    kmdata, token, keys = world
    store, auth = _fresh(kmdata, token)
    handle = token_handle("pkcs11", keys[2].ident)
    Module.open(kmdata).delete_key(keys[2])
    store.sync(auth)
    assert store.get(handle) is None and handle not in store.find({}, True)
    assert len(store.find({}, True)) == COUNT - 1 and _placeholders(store) == COUNT - 1


def _session_key(store: ObjectStore, label: str, session: int = 7) -> P11Object:
    key = Key.trusted(None, Acl.allowing(()), app="pkcs11", ident="", protection="module", token=None, appdata=b"")
    return store.add({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: False, Attribute.LABEL: label}, key,
                     session)


def test_session_objects_are_filed_when_a_find_runs_in_creation_order(world) -> None:
    kmdata, token, keys = world
    module = Module.open(kmdata)
    store = ObjectStore(module, token)
    before = _session_key(store, "s-before")
    assert store._index == {} and list(store._pending) == [before.handle]
    store.sync(module.login(token, "user", USER_PIN))  # the load files the earlier object first
    after, gone = _session_key(store, "s-after"), _session_key(store, "s-gone")
    store.remove(gone)  # destroyed before any find: never filed, and not kept
    assert list(store._pending) == [after.handle]
    everything = store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, True)
    assert everything == [before.handle, *(token_handle("pkcs11", k.ident) for k in _load_order(keys)),
                          after.handle]
    assert store._pending == {} and store.find({Attribute.LABEL: "s-gone"}, True) == []
    store.drop_session_objects(7)
    assert store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, True) == everything[1:-1]


def test_the_summary_is_what_the_object_decodes() -> None:
    appdata = codecs.serialize({**_attrs(2), Attribute.LABEL: "ünïcode"})
    summary = key_summary.index_summary("ua00", appdata)
    assert summary[:2] == [key_summary.SUMMARY_FORMAT, token_handle("pkcs11", "ua00")]
    assert key_summary.summary_attrs(summary) == codecs.deserialize_some(appdata, key_summary.EAGER)
    assert key_summary.index_summary("ua00", b"not pkcs11 attributes") is None


def test_keys_listed_again_after_a_logout_are_filed_alone(world) -> None:
    """After a find filed the index, a logout and a login list the private keys again from their
    summaries: each joins the filed index by itself (the next find re-files nothing) and the find
    order is the listing's."""
    kmdata, token, keys = world
    store, _auth = _fresh(kmdata, token)
    before = store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, see_private=True)
    assert len(before) == COUNT and Attribute.CLASS not in store._unfiled
    store.drop_private()
    public = store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, see_private=True)
    assert len(public) == COUNT // 2
    store.sync(store.module.login(token, "user", USER_PIN))
    assert Attribute.CLASS not in store._unfiled  # filed one by one, not the whole attribute again
    after = store.find({Attribute.CLASS: ObjectClass.SECRET_KEY}, see_private=True)
    assert sorted(after) == sorted(before) and after[:COUNT // 2] == public
    assert store.find({Attribute.LABEL: "listed-0"}, see_private=True) == [token_handle("pkcs11", keys[0].ident)]
