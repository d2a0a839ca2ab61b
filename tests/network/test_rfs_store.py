"""The RFS rules on the stores themselves (emulator.rfs), without the network: a stale commit is refused
whole, a retried commit is applied once, commits of different files from many threads all land, and
the RFS's version ledger records every committed version (an older copy put back is refused)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from emulator import paths
from emulator.kmdata import KmStore
from emulator.ledger import content_digest
from emulator.module import Module
from emulator.rfs import Change, Mirror, Rfs, StaleCommit, SyncError


@pytest.fixture
def world(tmp_path: Path) -> Path:
    kmdata = tmp_path / "rfs"
    Module.open(kmdata)  # a world and its module
    return kmdata


def _rfs(kmdata: Path) -> Rfs:
    return Rfs(Module.open(kmdata)._store)


def _mirror(tmp_path: Path, name: str, rfs: Rfs) -> Mirror:
    kmdata = tmp_path / name
    mirror = Mirror(KmStore(paths.local_dir(kmdata)), kmdata)
    remote = rfs.manifest()
    fetch, delete, _kept = mirror.plan_update(remote)
    mirror.apply_update(remote, rfs.fetch(fetch), delete)
    return mirror


def test_a_stale_commit_is_refused_whole(world: Path, tmp_path: Path):
    rfs = _rfs(world)
    a, b = _mirror(tmp_path, "a", rfs), _mirror(tmp_path, "b", rfs)
    a.store.write("key_simple_x", b"from a")
    a.committed(rfs.commit(a.changes()))
    b.store.write("key_simple_x", b"from b")
    b.store.write("key_simple_y", b"only b")
    with pytest.raises(StaleCommit, match=r"^stale commit: key_simple_x changed on the RFS since your last update"):
        rfs.commit(b.changes())
    assert rfs.store.read("key_simple_x") == b"from a"
    assert not rfs.store.exists("key_simple_y")


def test_a_retried_commit_is_applied_once(world: Path, tmp_path: Path):
    rfs = _rfs(world)
    a = _mirror(tmp_path, "a", rfs)
    a.store.write("key_simple_r", b"retry me")
    changes = a.changes()
    counter = rfs.store.change_counter()
    first = rfs.commit(changes)
    assert rfs.commit(changes) == first == {"key_simple_r": content_digest(b"retry me")}
    assert rfs.store.change_counter() == counter + 1  # the second wrote nothing


def test_commits_of_different_files_from_many_threads_all_land(world: Path, tmp_path: Path):
    mirrors = [_mirror(tmp_path, f"m{i}", _rfs(world)) for i in range(6)]
    errors: list[BaseException] = []

    def commit(i: int) -> None:
        try:
            mirrors[i].store.write(f"key_simple_t{i}", f"thread {i}".encode())
            _rfs(world).commit(mirrors[i].changes())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(mirrors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = _rfs(world).store
    assert [store.read(f"key_simple_t{i}") for i in range(6)] == [f"thread {i}".encode() for i in range(6)]


def test_the_ledger_records_committed_versions(world: Path, tmp_path: Path):
    rfs = _rfs(world)
    a = _mirror(tmp_path, "a", rfs)
    a.store.write("key_simple_v", b"version 1")
    a.committed(rfs.commit(a.changes()))
    a.store.write("key_simple_v", b"version 2")
    a.committed(rfs.commit(a.changes()))
    # Put version 1 back behind the ledger's back: the RFS refuses to serve it.
    (world / "local" / "key_simple_v").write_bytes(b"version 1")
    _data, _stamp, reason = rfs.store.read_current("key_simple_v")
    assert reason is not None and reason.endswith("rollback refused")


def test_module_files_never_travel(world: Path):
    """A module file holds the module key: with the world file it opens every module-protected blob.
    The RFS neither lists, serves nor accepts one; the world file (each module's share, sealed to that
    module's key) does travel."""
    rfs = _rfs(world)
    (module_name,) = [p.name for p in (world / "local").glob("module_*")]
    assert "world" in rfs.manifest() and module_name not in rfs.manifest()
    with pytest.raises(SyncError, match="is not a kmdata file name"):
        rfs.fetch([module_name])
    before = (world / "local" / module_name).read_bytes()
    with pytest.raises(SyncError, match="is not a kmdata file name"):
        rfs.commit([Change(module_name, content_digest(before), b"a module key of someone else's")])
    assert (world / "local" / module_name).read_bytes() == before
