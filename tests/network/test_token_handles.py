"""Token object handles derived from the key's identity (pkcs11_shim.handles.token_handle): the same
in every process and on every module that loads the same kmdata, so a load-sharing client may use a
handle found through one module on another; session objects count up per module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emulator.acl import Acl
from emulator.keys import Key
from pkcs11_shim import object_store
from pkcs11_shim.constants import Attribute
from pkcs11_shim.handles import TOKEN_HANDLE_BASE, token_handle
from pkcs11_shim.object_store import ObjectStore
from pkcs11_shim.objects import P11Object

ROOT = Path(__file__).resolve().parents[2]


def key(ident: str) -> Key:
    return Key.trusted(None, Acl.allowing(()), app="pkcs11", ident=ident, protection="module", token=None, appdata=b"")


def token_object(store: ObjectStore, ident: str) -> P11Object:
    return store.add({Attribute.TOKEN: True, Attribute.LABEL: ident}, key(ident), None)


def test_the_handle_is_the_identity_s_in_every_process() -> None:
    code = "from pkcs11_shim.handles import token_handle; print(token_handle('pkcs11', 'ua0123456789abcdef'))"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    handle = token_handle("pkcs11", "ua0123456789abcdef")
    assert int(other.stdout) == handle
    assert TOKEN_HANDLE_BASE <= handle < 2 * TOKEN_HANDLE_BASE
    assert token_object(ObjectStore(None, None), "ua0123456789abcdef").handle == handle
    # The app is part of the identity: key_simple_X and key_pkcs11_X are two keys.
    assert token_handle("simple", "ua0123456789abcdef") != handle


def test_session_objects_count_below_the_token_range() -> None:
    store = ObjectStore(None, None)
    first = store.add({Attribute.TOKEN: False}, key(""), 7)
    second = store.add({Attribute.TOKEN: False}, key(""), 7)
    assert second.handle == first.handle + 1 < TOKEN_HANDLE_BASE


def test_a_collision_takes_the_next_probe_and_nobody_is_renumbered(monkeypatch) -> None:
    real = object_store.token_handle
    # Two identities whose probe 0 collide: the one loaded second takes probe 1.
    monkeypatch.setattr(object_store, "token_handle",
                        lambda app, ident, probe=0: real(app, "same", 0) if probe == 0 else real(app, ident, probe))
    store = ObjectStore(None, None)
    first, second = token_object(store, "ua-one"), token_object(store, "ua-two")
    assert first.handle == real("pkcs11", "same", 0)
    assert second.handle == real("pkcs11", "ua-two", 1)
    store.remove(second)
    assert token_object(store, "ua-two").handle == real("pkcs11", "ua-two", 1)


def test_find_answers_in_load_order_not_handle_order(monkeypatch) -> None:
    # Hash handles in descending order of loading: the candidates stay in loading order, also after
    # a change of an attribute the index does not file them under anew.
    handles = {"ua-old": TOKEN_HANDLE_BASE + 10, "ua-new": TOKEN_HANDLE_BASE + 5}
    monkeypatch.setattr(object_store, "token_handle", lambda app, ident, probe=0: handles[ident] + probe)
    store = ObjectStore(None, None)
    old, new = token_object(store, "ua-old"), token_object(store, "ua-new")
    for obj in (old, new):
        obj.attrs[Attribute.CLASS] = 3
    store.reindex(old, {Attribute.LABEL: "ua-old"})
    store.reindex(new, {Attribute.LABEL: "ua-new"})
    assert store.find({Attribute.CLASS: 3}, see_private=True) == [old.handle, new.handle]
    before = dict(old.attrs)
    old.attrs[Attribute.LABEL] = "renamed"
    store.reindex(old, before)
    assert store.find({Attribute.CLASS: 3}, see_private=True) == [old.handle, new.handle]
    assert store.find({Attribute.LABEL: "renamed"}, see_private=True) == [old.handle]
    assert store.find({Attribute.LABEL: "ua-old"}, see_private=True) == []
