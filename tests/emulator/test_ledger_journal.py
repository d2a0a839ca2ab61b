"""The version ledger's append-only journal (ledger.VersionLedger): a write appends one MAC-chained
line instead of rewriting the ledger, the journal is folded into a new snapshot periodically, and a
torn, edited, dropped or replayed line is handled as the whole-file ledger was."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import ledger
from emulator.acl import Acl, Action
from emulator.crypto import keygen
from emulator.errors import BlobInvalid
from emulator.keys import Key
from emulator.ledger import LEDGER_FILE
from emulator.module import Module

ACTIONS = (Action.ENCRYPT, Action.DECRYPT, Action.DESTROY, Action.REDUCE_ACL)


@pytest.fixture
def module(tmp_path: Path) -> Module:
    return Module.open(tmp_path / "world")


def _key(module: Module, name: str) -> Key:
    key = Key(keygen.generate_secret("AES", 32), Acl.allowing(ACTIONS), plainname=name)
    module.store_key(key)
    return key


def _lines(module: Module) -> list[bytes]:
    return (module.local / LEDGER_FILE).read_bytes().split(b"\n")


def test_a_write_appends_one_line(module: Module) -> None:
    _key(module, "first")  # the first write makes the snapshot
    inode = (module.local / LEDGER_FILE).stat().st_ino
    before = len(_lines(module))
    _key(module, "second")
    _key(module, "third")
    assert len(_lines(module)) == before + 2
    assert (module.local / LEDGER_FILE).stat().st_ino == inode  # appended, not replaced


def test_another_process_reads_the_appended_lines(module: Module) -> None:
    key = _key(module, "k")
    reader = Module.open(module.kmdata)
    assert reader.load_key_file(key.file_path).plainname == "k"
    before = key.file_path.read_bytes()
    module.reduce_acl(key, [Action.DECRYPT, Action.DESTROY])
    module.store_key(key)  # two journal lines the reader has not seen yet
    key.file_path.write_bytes(before)
    with pytest.raises(BlobInvalid, match="rollback refused"):
        reader.load_key_file(key.file_path)


def test_torn_last_line_is_ignored_and_cut_by_the_next_writer(module: Module) -> None:
    _key(module, "a")
    _key(module, "b")
    path = module.local / LEDGER_FILE
    with open(path, "ab") as handle:
        handle.write(b"00ff half a line")  # a writer killed mid-append
    fresh = Module.open(module.kmdata)
    assert sorted(k.plainname for k in fresh.load_keys(None)[0]) == ["a", "b"]
    _key(fresh, "c")
    assert b"half a line" not in path.read_bytes()
    keys, problems = Module.open(module.kmdata).load_keys(None)
    assert sorted(k.plainname for k in keys) == ["a", "b", "c"] and problems == []


@pytest.mark.parametrize("damage", ["edit", "drop", "swap"])
def test_damaged_journal_line_is_refused(module: Module, damage: str) -> None:
    for name in "abcd":
        key = _key(module, name)
    path = module.local / LEDGER_FILE
    lines = path.read_bytes().split(b"\n")
    head, journal = lines[:2], lines[2:-1]
    assert len(journal) >= 3
    if damage == "edit":
        journal[1] = journal[1].replace(b'"seq":', b'"seq":1')
    elif damage == "drop":
        del journal[1]
    else:
        journal[0], journal[1] = journal[1], journal[0]
    path.write_bytes(b"\n".join(head + journal) + b"\n")
    with pytest.raises(BlobInvalid, match="version ledger.*authentication failed"):
        Module.open(module.kmdata).load_key_file(key.file_path)


def test_journal_cut_back_under_a_running_process_is_refused(module: Module) -> None:
    key = _key(module, "k")
    path = module.local / LEDGER_FILE
    older, before_reduce = path.read_bytes(), key.file_path.read_bytes()
    module.reduce_acl(key, [Action.DECRYPT, Action.DESTROY])
    module.store_key(key)
    with open(path, "r+b") as handle:  # the same inode, cut back to an older length
        handle.truncate(len(older))
    key.file_path.write_bytes(before_reduce)  # consistent with the cut ledger
    with pytest.raises(BlobInvalid, match="went back from version"):
        module.load_key_file(key.file_path)


def test_compaction_folds_the_journal_and_keeps_every_verdict(module: Module,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "COMPACT_MIN_RECORDS", 3)
    victim = _key(module, "victim")
    old_copy = victim.file_path.read_bytes()
    module.reduce_acl(victim, [Action.DECRYPT, Action.DESTROY])
    module.store_key(victim)
    gone = _key(module, "gone")
    gone_copy, gone_path = gone.file_path.read_bytes(), gone.file_path
    module.delete_key(gone)
    inodes = set()
    for i in range(8):
        _key(module, f"k{i}")
        inodes.add((module.local / LEDGER_FILE).stat().st_ino)
        assert len(_lines(module)) - 3 <= 3 + 1  # never more journal lines than the threshold allows
    assert len(inodes) >= 2  # the snapshot was rewritten
    victim.file_path.write_bytes(old_copy)
    gone_path.write_bytes(gone_copy)
    keys, problems = Module.open(module.kmdata).load_keys(None)
    assert sorted(k.plainname for k in keys) == [f"k{i}" for i in range(8)]
    assert len(problems) == 2 and all("rollback refused" in p for p in problems)


def test_ledger_of_the_format_before_the_journal_is_read_then_rewritten(module: Module) -> None:
    key = _key(module, "k")
    path = module.local / LEDGER_FILE
    snapshot = path.read_bytes().split(b"\n")[:2]
    ledger = module._store.ledger
    # The old format: "<MAC>\n<JSON>" without a newline, the whole state in the snapshot.
    view = ledger._current()
    import json

    from emulator.crypto import blobcrypt
    body = json.dumps({"format": 1, "world": module.world.hknso, "seq": view.seq, "entries": view.entries},
                      separators=(",", ":")).encode()
    path.write_bytes(blobcrypt.mac(ledger._mac_key, body).hex().encode() + b"\n" + body)
    fresh = Module.open(module.kmdata)
    assert fresh.load_key_file(key.file_path).plainname == "k"
    _key(fresh, "next")
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().split(b"\n")[:2] != snapshot
    assert Module.open(module.kmdata).load_key_file(key.file_path).plainname == "k"
