"""Module.open, the ACL check, key storage across Module instances, the change counter, the cache."""

from __future__ import annotations

import multiprocessing
import re
import stat
from pathlib import Path

import pytest

from emulator import blobs, paths
from emulator.acl import Acl, Action
from emulator.crypto import keygen
from emulator.crypto.material import SecretMaterial
from emulator.errors import (
    AclDenied,
    InvalidKeyMaterial,
    KeyNameInvalid,
    KeyNotFound,
    WorldStateError,
)
from emulator.keys import Key
from emulator.module import Module
from emulator.world import ModuleFile, WorldFile, open_world_key, open_world_signing_key


def test_first_open_creates_module_and_world(kmdata: Path) -> None:
    module = Module.open(kmdata)
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", module.esn)
    assert module.local == kmdata / "local"
    assert module.world.cipher_suite == "DLf3072s256mAEScSP800131Ar1"
    assert re.fullmatch(r"[0-9a-f]{40}", module.world.hknso)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", module.world.created)
    names = sorted(p.name for p in module.local.iterdir() if not p.name.startswith("."))
    assert names == [f"module_{module.esn}", "world"]
    assert stat.S_IMODE(module.local.stat().st_mode) == 0o700
    for path in module.local.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_reopen_is_the_same_world(kmdata: Path) -> None:
    first = Module.open(kmdata)
    again = Module.open(kmdata)
    assert (again.esn, again.world) == (first.esn, first.world)


def test_world_secrets_bound_to_module_and_facts(kmdata: Path) -> None:
    module = Module.open(kmdata)
    world_file = WorldFile.from_bytes((module.local / "world").read_bytes())
    module_file = ModuleFile.from_bytes((module.local / f"module_{module.esn}").read_bytes(), "m")
    km = open_world_key(world_file, module_file)
    knso = open_world_signing_key(world_file, km)
    import hashlib
    assert hashlib.sha1(knso.public().to_bytes()).hexdigest() == module.world.hknso
    stranger = ModuleFile(module.esn, module_file.created, b"\x00" * 32)
    with pytest.raises(Exception, match="authentication failed"):
        open_world_key(world_file, stranger)
    other = ModuleFile("0000-0000-0000", module_file.created, module_file.module_key)
    with pytest.raises(WorldStateError, match="not enrolled"):
        open_world_key(world_file, other)


def test_edited_world_facts_refused(kmdata: Path) -> None:
    module = Module.open(kmdata)
    world = module.local / "world"
    world.write_bytes(world.read_bytes().replace(b"DLf3072s256mAEScSP800131Ar1", b"DLf1024s160mRijndael"))
    with pytest.raises(Exception, match="authentication failed"):
        Module.open(kmdata)


def test_kmdata_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NFAST_KMDATA", str(tmp_path / "env"))
    assert paths.resolve_kmdata() == tmp_path / "env"
    assert paths.resolve_kmdata(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("NFAST_KMDATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.resolve_kmdata() == tmp_path / "xdg" / "softshield" / "kmdata"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.resolve_kmdata() == tmp_path / "home" / ".local" / "share" / "softshield" / "kmdata"
    monkeypatch.setenv("NFAST_KMDATA", str(tmp_path / "env"))
    assert Module.open().kmdata == tmp_path / "env"


def _open_in_child(kmdata: str, barrier, results) -> None:
    barrier.wait()
    module = Module.open(kmdata)
    results.put((module.esn, module.world.hknso))


def test_racing_opens_make_one_world(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    kmdata = str(tmp_path / "race")
    workers = 4
    barrier, results = context.Barrier(workers), context.Queue()
    procs = [context.Process(target=_open_in_child, args=(kmdata, barrier, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    seen = {results.get(timeout=60) for _ in procs}
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert len(seen) == 1
    local = Path(kmdata) / "local"
    assert len(list(local.glob("module_*"))) == 1
    assert Module.open(kmdata).world.hknso == seen.pop()[1]


# --- the ACL check -----------------------------------------------------------------------------
def test_use_returns_material_only_when_permitted(module: Module) -> None:
    material = keygen.generate_secret("AES", 16)
    key = Key(material, Acl.allowing([Action.ENCRYPT, Action.REDUCE_ACL]), ident="ua" + "1" * 40)
    assert module.use(key, Action.ENCRYPT) is material
    with pytest.raises(AclDenied, match=f"key ua{'1' * 40} does not permit Sign$"):
        module.use(key, Action.SIGN)


def test_reduce_acl_removes_and_use_refuses(module: Module, kmdata: Path) -> None:
    key = Key(keygen.generate_ec(), Acl.allowing([Action.SIGN, Action.EXPORT_PLAIN, Action.REDUCE_ACL,
                                                 Action.DESTROY]))
    module.store_key(key)
    module.reduce_acl(key, [Action.SIGN, Action.REDUCE_ACL, Action.DESTROY, Action.DECRYPT])
    assert key.acl.actions() == {Action.SIGN, Action.REDUCE_ACL, Action.DESTROY}  # DECRYPT not granted
    with pytest.raises(AclDenied, match="does not permit ExportAsPlain"):
        module.use(key, Action.EXPORT_PLAIN)
    module.store_key(key)
    reloaded = Module.open(kmdata).load_key_file(key.file_path)
    with pytest.raises(AclDenied):
        Module.open(kmdata).use(reloaded, Action.EXPORT_PLAIN)


def test_reduce_acl_needs_reduce_permission(module: Module) -> None:
    key = Key(keygen.generate_ec(), Acl.allowing([Action.SIGN]))
    with pytest.raises(AclDenied, match="ReduceACL"):
        module.reduce_acl(key, [])


def test_export_as_blob_limit_checked_by_use(module: Module) -> None:
    wrapper = Key(keygen.generate_secret("AES", 32), Acl.allowing([Action.WRAP]))
    other = Key(keygen.generate_secret("AES", 32), Acl.allowing([Action.WRAP]))
    limit = module.key_hash(wrapper)
    target = Key(keygen.generate_ec(), Acl.allowing([Action.EXPORT_AS_BLOB], wrap_key_hash=limit))
    assert module.use(target, Action.EXPORT_AS_BLOB, wrap_key_hash=limit) is target.material
    with pytest.raises(AclDenied, match="under wrapping key"):
        module.use(target, Action.EXPORT_AS_BLOB, wrap_key_hash=module.key_hash(other))


def test_use_on_object_without_material(module: Module) -> None:
    cert = Key(None, Acl.allowing([Action.GET_APPDATA]), ident="ua" + "2" * 40)
    with pytest.raises(InvalidKeyMaterial, match="no key material"):
        module.use(cert, Action.GET_APPDATA)


# --- names and hashes --------------------------------------------------------------------------
def test_new_ident_formats(module: Module, token: str) -> None:
    assert re.fullmatch(r"ua[0-9a-f]{40}", module.new_ident(None))
    assert re.fullmatch(rf"uc{token}-[0-9a-f]{{40}}", module.new_ident(token))
    assert module.new_ident(None) != module.new_ident(None)
    with pytest.raises(KeyNameInvalid):
        module.new_ident("nope")


def test_store_refuses_ident_of_another_owner(module: Module, token: str, everyday_acl: Acl) -> None:
    key = Key(keygen.generate_ec(), everyday_acl, ident=module.new_ident(None), token=token)
    with pytest.raises(KeyNameInvalid, match="owner"):
        module.store_key(key)


def test_key_hashes(module: Module, tmp_path: Path) -> None:
    import hashlib
    pair = keygen.generate_rsa(2048)
    private = Key(pair, Acl(()))
    public = Key(pair.public(), Acl(()))
    assert private.key_hash == public.key_hash == hashlib.sha1(pair.public().to_bytes()).hexdigest()
    value = b"\x01" * 32
    secret = module.key_hash(Key(SecretMaterial("AES", value), Acl(())))
    assert re.fullmatch(r"[0-9a-f]{40}", secret)
    assert secret != hashlib.sha1(value).hexdigest()  # keyed: the hash does not identify the value
    assert module.key_hash(Key(SecretMaterial("AES", value), Acl(()))) == secret
    other_world = Module.open(tmp_path / "other")
    assert other_world.key_hash(Key(SecretMaterial("AES", value), Acl(()))) != secret
    obj = Key(None, Acl(()), ident="ua" + "3" * 40)
    assert obj.key_hash == hashlib.sha1(obj.ident.encode()).hexdigest()


# --- storage across Module instances -------------------------------------------------------------
def test_store_load_delete_across_instances(kmdata: Path, everyday_acl: Acl) -> None:
    writer, reader = Module.open(kmdata), Module.open(kmdata)
    key = Key(keygen.generate_ec(), everyday_acl)
    writer.store_key(key)
    assert key.file_path == writer.local / f"key_pkcs11_{key.ident}"
    assert stat.S_IMODE(key.file_path.stat().st_mode) == 0o600
    assert [k.ident for k in reader.load_keys(None)[0]] == [key.ident]
    writer.delete_key(key)
    assert key.file_path is None
    assert reader.load_keys(None) == ([], [])
    with pytest.raises(KeyNotFound):
        writer.delete_key(key)


def test_delete_needs_destroy_permission(module: Module) -> None:
    key = Key(keygen.generate_ec(), Acl.allowing([Action.SIGN]))
    module.store_key(key)
    with pytest.raises(AclDenied, match="Destroy"):
        module.delete_key(key)
    assert key.file_path.exists()


def test_no_temp_files_left(module: Module, everyday_acl: Acl) -> None:
    for _ in range(3):
        module.store_key(Key(keygen.generate_secret("AES", 16), everyday_acl))
    assert not [p for p in module.local.iterdir() if p.name.startswith(".tmp-")]


def test_change_counter_sees_other_instance(kmdata: Path, everyday_acl: Acl) -> None:
    watcher, writer = Module.open(kmdata), Module.open(kmdata)
    before = watcher.change_counter()
    assert watcher.change_counter() == before  # stable while nothing changes
    key = Key(keygen.generate_secret("AES", 16), everyday_acl)
    writer.store_key(key)
    after_store = watcher.change_counter()
    assert after_store != before
    writer.delete_key(key)
    after_delete = watcher.change_counter()
    assert after_delete not in (before, after_store)
    writer.init_token("t", b"so-pin-9")
    assert watcher.change_counter() != after_delete


def test_load_keys_cache_does_not_decrypt_again(module: Module, kmdata: Path, everyday_acl: Acl,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    writer = Module.open(kmdata)
    stored = [Key(keygen.generate_rsa(2048), everyday_acl) for _ in range(3)]
    for key in stored:
        writer.store_key(key)
    calls = []
    real_decode = blobs.decode
    monkeypatch.setattr(blobs, "decode", lambda *a, **kw: calls.append(a[2]) or real_decode(*a, **kw))
    first, _ = module.load_keys(None)
    assert len(calls) == 3
    second, _ = module.load_keys(None)
    assert len(calls) == 3
    assert {id(k) for k in first} == {id(k) for k in second}  # the very same objects
    # One file changes: only it is decrypted again.
    stored[0].appdata = b"changed"
    writer.store_key(stored[0])
    third, _ = module.load_keys(None)
    assert len(calls) == 4 and calls[-1] == stored[0].file_path.name
    assert next(k for k in third if k.ident == stored[0].ident).appdata == b"changed"
    # The writer's own store primes its cache: its next load returns its own objects, undecrypted.
    calls.clear()
    own, _ = writer.load_keys(None)
    assert calls == [] and {id(k) for k in own} == {id(k) for k in stored}


def test_load_keys_separates_owners(module: Module, token: str, everyday_acl: Acl) -> None:
    accel = Key(keygen.generate_ec(), everyday_acl)
    public_on_token = Key(keygen.generate_ec().public(), everyday_acl, token=token)
    module.store_key(accel)
    module.store_key(public_on_token)
    assert [k.ident for k in module.load_keys(None)[0]] == [accel.ident]
    assert [k.ident for k in module.load_keys(token)[0]] == [public_on_token.ident]
    assert public_on_token.ident.startswith(f"uc{token}-")
