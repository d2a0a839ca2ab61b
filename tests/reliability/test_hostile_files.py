"""Hostile kmdata, card and package files: each is refused with one clear error, nothing else in the
world is affected, and older copies (a blob before its ACL was reduced, a token or card file before
its PIN counter rose, a deleted key) are refused by the version ledger (kmdata.VersionLedger).

These drive the emulator's Python API in-process: no .so is loaded, so they cannot disturb the
library state of other tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import transfer
from emulator.acl import Acl, Action
from emulator.crypto import keygen
from emulator.errors import (
    AuthenticationFailed,
    BlobInvalid,
    CardLocked,
    EmulatorError,
    TokenNotFound,
)
from emulator.keys import Key
from emulator.kmdata import LEDGER_FILE
from emulator.module import Module
from pkcs11_shim.constants import CKR

SO_PIN, USER_PIN = b"so-hostile-1", b"user-hostile-1"
CARD_PIN = b"card-pin-1"
ROLLBACK = "rollback refused"
ACTIONS = (Action.SIGN, Action.VERIFY, Action.ENCRYPT, Action.DECRYPT, Action.DESTROY,
           Action.REDUCE_ACL, Action.GET_APPDATA)


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Module:
    monkeypatch.delenv("SOFTSHIELD_READER", raising=False)
    return Module.open(tmp_path / "world")


def _key(module: Module, name: str, token: str | None = None, auth=None) -> Key:
    key = Key(keygen.generate_secret("AES", 32), Acl.allowing(ACTIONS), plainname=name,
              token=token, protection="token" if token else "module")
    module.store_key(key, auth)
    return key


def _token(module: Module, label: str) -> str:
    info = module.init_token(label, SO_PIN)
    module.init_user_pin(info.hash, module.login(info.hash, "so", SO_PIN), USER_PIN)
    return info.hash


def _names(keys: list[Key]) -> list[str]:
    return sorted(k.plainname for k in keys)


# --- replayed versions (the version ledger) --------------------------------------------------------
def test_blob_from_before_acl_reduction_is_refused(module: Module) -> None:
    victim, bystander = _key(module, "victim"), _key(module, "bystander")
    before = victim.file_path.read_bytes()
    module.reduce_acl(victim, [Action.VERIFY, Action.DESTROY])
    module.store_key(victim)
    victim.file_path.write_bytes(before)  # the copy that could still sign

    fresh = Module.open(module.kmdata)
    with pytest.raises(BlobInvalid, match=f"not the current version.*{ROLLBACK}"):
        fresh.load_key_file(victim.file_path)
    keys, problems = fresh.load_keys(None)
    assert _names(keys) == ["bystander"] and len(problems) == 1 and ROLLBACK in problems[0]
    # The process that reduced the ACL sees the same refusal (the cached stamp no longer matches).
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        module.load_key_file(victim.file_path)
    assert module.load_key_file(bystander.file_path).plainname == "bystander"


def test_deleted_blob_restored_is_refused(module: Module) -> None:
    victim = _key(module, "victim")
    _key(module, "bystander")
    copy = victim.file_path.read_bytes()
    path = victim.file_path
    module.delete_key(victim)
    path.write_bytes(copy)
    keys, problems = Module.open(module.kmdata).load_keys(None)
    assert _names(keys) == ["bystander"]
    assert len(problems) == 1 and "was deleted" in problems[0] and ROLLBACK in problems[0]


def test_current_version_copied_back_is_accepted(module: Module) -> None:
    """Restoring the *current* bytes (a backup taken after the last write) is not a rollback."""
    key = _key(module, "k")
    data = key.file_path.read_bytes()
    key.file_path.unlink()
    key.file_path.write_bytes(data)
    assert Module.open(module.kmdata).load_key_file(key.file_path).plainname == "k"


def test_token_pin_counter_rollback_is_refused(module: Module) -> None:
    token, other = _token(module, "victim"), _token(module, "other")
    path = module.local / f"softcard_{token}"
    fresh_copy = path.read_bytes()
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            module.login(token, "user", b"guess")
    path.write_bytes(fresh_copy)  # the counter back at 0
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        Module.open(module.kmdata).login(token, "user", b"guess")
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        module.login(token, "user", USER_PIN)
    # The other token is untouched, and the listing skips only the rolled-back one.
    assert Module.open(module.kmdata).login(other, "user", USER_PIN).token == other
    assert [t.hash for t in module.list_tokens()] == [other]


def test_locked_token_cannot_be_unlocked_by_restoring_its_file(module: Module) -> None:
    from emulator.tokens import MAX_PIN_FAILURES

    token = _token(module, "victim")
    path = module.local / f"softcard_{token}"
    copies = []
    for _ in range(MAX_PIN_FAILURES):
        copies.append(path.read_bytes())
        with pytest.raises(AuthenticationFailed):
            module.login(token, "user", b"guess")
    with pytest.raises(CardLocked):
        module.login(token, "user", USER_PIN)
    for older in copies:
        path.write_bytes(older)
        with pytest.raises(BlobInvalid, match=ROLLBACK):
            Module.open(module.kmdata).login(token, "user", USER_PIN)


def _ocs(module: Module):
    cardset = module.cardsets.create("hostile", 1, 1, [CARD_PIN])
    card = module.reader.folder / "hostile-1.card"
    assert card.exists()
    return cardset, card


def test_card_pin_counter_rollback_is_refused(module: Module) -> None:
    cardset, card = _ocs(module)
    before = card.read_bytes()
    for _ in range(2):
        with pytest.raises(AuthenticationFailed, match="wrong PIN"):
            module.cardsets.login(cardset.hash, [(card, b"guess")])
    assert json.loads(card.read_bytes())["failures"] == 2
    card.write_bytes(before)
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        Module.open(module.kmdata).cardsets.login(cardset.hash, [(card, CARD_PIN)])


def test_edited_card_counter_is_refused(module: Module) -> None:
    cardset, card = _ocs(module)
    with pytest.raises(AuthenticationFailed):
        module.cardsets.login(cardset.hash, [(card, b"guess")])
    card.write_bytes(card.read_bytes().replace(b'"failures":1', b'"failures":0'))
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        module.cardsets.login(cardset.hash, [(card, CARD_PIN)])


def test_card_presented_from_another_path_is_still_checked(module: Module, tmp_path: Path) -> None:
    cardset, card = _ocs(module)
    stash = tmp_path / "stash.card"
    shutil.copy(card, stash)
    with pytest.raises(AuthenticationFailed):
        module.cardsets.login(cardset.hash, [(card, b"guess")])
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        module.cardsets.login(cardset.hash, [(stash, CARD_PIN)])
    assert module.cardsets.login(cardset.hash, [(card, CARD_PIN)]).token == cardset.hash


# --- the ledger itself ---------------------------------------------------------------------------
def test_edited_ledger_is_refused_clearly(module: Module) -> None:
    key = _key(module, "k")
    ledger = module.local / LEDGER_FILE
    ledger.write_bytes(ledger.read_bytes().replace(b'"seq":', b'"seq":1'))
    with pytest.raises(BlobInvalid, match="version ledger.*authentication failed"):
        Module.open(module.kmdata).load_key_file(key.file_path)


def test_ledger_rolled_back_under_a_running_process_is_refused(module: Module) -> None:
    key = _key(module, "k")
    ledger = module.local / LEDGER_FILE
    older = ledger.read_bytes()
    before_reduce = key.file_path.read_bytes()
    module.reduce_acl(key, [Action.VERIFY, Action.DESTROY])
    module.store_key(key)
    # Both restored together: consistent with each other, but the running module saw a later ledger.
    ledger.write_bytes(older)
    key.file_path.write_bytes(before_reduce)
    with pytest.raises(BlobInvalid, match="went back from version"):
        module.load_key_file(key.file_path)
    ledger.unlink()
    with pytest.raises(BlobInvalid, match="deleted after version"):
        module.load_key_file(key.file_path)


def test_ledger_of_a_replaced_world_is_ignored(module: Module, tmp_path: Path) -> None:
    other = Module.open(tmp_path / "other")
    _key(other, "theirs")
    shutil.copy(other.local / LEDGER_FILE, module.local / LEDGER_FILE)
    key = _key(module, "mine")
    assert Module.open(module.kmdata).load_key_file(key.file_path).plainname == "mine"


# --- tampered, truncated, swapped, foreign -------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 1, 8, 60, -17, -1])
def test_truncated_blob_refused_bystander_fine(module: Module, keep: int) -> None:
    victim, _ = _key(module, "victim"), _key(module, "bystander")
    data = victim.file_path.read_bytes()
    victim.file_path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    keys, problems = Module.open(module.kmdata).load_keys(None)
    assert _names(keys) == ["bystander"] and len(problems) == 1
    assert victim.file_path.name in problems[0]
    # A cut in the header is seen by the parser, one in the sealed part by the AEAD tag.
    assert ("truncated" if 0 <= keep < 100 else "authentication failed") in problems[0]


def test_swapped_token_blobs_refused(module: Module) -> None:
    token = _token(module, "t")
    auth = module.login(token, "user", USER_PIN)
    a, b = _key(module, "a", token, auth), _key(module, "b", token, auth)
    data_a, data_b = a.file_path.read_bytes(), b.file_path.read_bytes()
    a.file_path.write_bytes(data_b)
    b.file_path.write_bytes(data_a)
    fresh = Module.open(module.kmdata)
    keys, problems = fresh.load_keys(token, fresh.login(token, "user", USER_PIN))
    assert keys == [] and len(problems) == 2 and all("renamed" in p for p in problems)


def test_blob_moved_to_another_token_refused(module: Module) -> None:
    t1, t2 = _token(module, "t1"), _token(module, "t2")
    key = _key(module, "k", t1, module.login(t1, "user", USER_PIN))
    moved = module.local / key.file_path.name.replace(t1, t2)
    shutil.copy(key.file_path, moved)
    fresh = Module.open(module.kmdata)
    keys, problems = fresh.load_keys(t2, fresh.login(t2, "user", USER_PIN))
    assert keys == [] and len(problems) == 1 and "renamed" in problems[0]


def test_foreign_world_blob_refused(module: Module, tmp_path: Path) -> None:
    other = Module.open(tmp_path / "other")
    theirs = _key(other, "theirs")
    mine = _key(module, "mine")
    shutil.copy(theirs.file_path, module.local / theirs.file_path.name)
    keys, problems = Module.open(module.kmdata).load_keys(None)
    assert _names(keys) == ["mine"] and len(problems) == 1 and "belongs to world" in problems[0]
    assert mine.file_path.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_damaged_token_file_refused_others_fine(module: Module, damage: str) -> None:
    victim, other = _token(module, "victim"), _token(module, "other")
    path = module.local / f"softcard_{victim}"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\xff" * 40, "empty": b"",
                      "flip": data.replace(b'"label":"victim"', b'"label":"victin"')}[damage])
    fresh = Module.open(module.kmdata)
    with pytest.raises(BlobInvalid, match="unreadable|authentication failed"):
        fresh.login(victim, "user", USER_PIN)
    assert [t.hash for t in fresh.list_tokens()] == [other]
    assert fresh.login(other, "user", USER_PIN).token == other


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_card_refused_clearly(module: Module, damage: str) -> None:
    cardset, card = _ocs(module)
    data = card.read_bytes()
    card.write_bytes({"truncate": data[:40], "garbage": b"\x00\xff" * 40, "empty": b""}[damage])
    with pytest.raises(BlobInvalid, match="not a card"):
        module.cardsets.login(cardset.hash, [(card, CARD_PIN)])


def test_card_of_another_set_refused(module: Module) -> None:
    first, card1 = _ocs(module)
    second = module.cardsets.create("second", 1, 1, [CARD_PIN])
    with pytest.raises(AuthenticationFailed, match="not a card of"):
        module.cardsets.login(second.hash, [(card1, CARD_PIN)])
    assert module.cardsets.login(first.hash, [(card1, CARD_PIN)]).token == first.hash


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_damaged_card_set_file_refused(module: Module, damage: str) -> None:
    cardset, card = _ocs(module)
    path = module.local / f"cards_{cardset.hash}"
    data = path.read_bytes()
    path.write_bytes(data[:30] if damage == "truncate" else data.replace(b'"k":1', b'"k":2'))
    fresh = Module.open(module.kmdata)
    with pytest.raises((BlobInvalid, TokenNotFound)):
        fresh.cardsets.read(cardset.hash)
    assert fresh.cardsets.list() == []


# --- packages ------------------------------------------------------------------------------------
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=10)
_package_keys = st.sampled_from(["format", "schema_version", "header", "ciphertext", "target", "wrapped_key",
                                 "wrapped_key_sha256", "source", "mechanism", "oaep_hash"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_package_keys, _json, max_size=6) | _json, st.booleans())
def test_malformed_package_is_one_clear_error(doc, as_bytes: bool) -> None:
    data = json.dumps(doc).encode() if as_bytes else json.dumps(doc).encode()[:-1]
    try:
        transfer.parse_package(data, "pkg.json")
    except EmulatorError as exc:
        assert str(exc).startswith("pkg.json: ")


def test_pin_counter_rollback_refused_through_the_library(tmp_path: Path) -> None:
    """The same refusal as a PKCS#11 application sees it: C_Login answers CKR_DEVICE_ERROR (the
    debug log names the rollback), never CKR_OK and never a fresh set of tries."""
    import subprocess

    from relenv import HERE, PY, child_env, p11cli

    kmdata = tmp_path / "p11"
    kmdata.mkdir(mode=0o700)
    p11cli(kmdata, "mktoken", "victim")
    [token_file] = list((kmdata / "local").glob("softcard_*"))
    fresh = token_file.read_bytes()
    script = (f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); import p11ctypes as ck\n"
              "from pkcs11_shim.constants import UserType\n"
              "c = ck.Client(ck.load()); c.initialize(); s = c.open(c.slot_by_label('victim'))\n"
              "pins = sys.argv[1:]\n"
              "print(' '.join(hex(ck.raw(c.lib, 'C_Login', ck.CK_ULONG(s), ck.CK_ULONG(UserType.USER), p.encode(),"
              " ck.CK_ULONG(len(p)))) for p in pins))\n")

    def logins(*pins: str) -> list[int]:
        out = subprocess.run([PY, "-c", script, *pins], env=child_env(kmdata), capture_output=True, text=True,
                             timeout=60, check=True)
        return [int(x, 16) for x in out.stdout.split()]

    assert logins("0000", "0001", "0002") == [CKR.PIN_INCORRECT] * 3  # counted
    # A running application holds a session when the older file comes back...
    log = tmp_path / "debug.log"
    waiting = (f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); import p11ctypes as ck\n"
               "from pkcs11_shim.constants import UserType\n"
               "c = ck.Client(ck.load()); c.initialize(); s = c.open(c.slot_by_label('victim'))\n"
               "print('open', flush=True); sys.stdin.readline()\n"
               "print(hex(ck.raw(c.lib, 'C_Login', ck.CK_ULONG(s), ck.CK_ULONG(UserType.USER), b'1234', ck.CK_ULONG(4))))\n")
    app = subprocess.Popen([PY, "-c", waiting], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env=child_env(kmdata, CKNFAST_DEBUG="10", CKNFAST_DEBUGFILE=str(log)))
    assert app.stdout.readline().strip() == "open"
    token_file.write_bytes(fresh)
    out, _ = app.communicate("go\n", timeout=60)
    assert out.split() == [f"{CKR.DEVICE_ERROR:#x}"]  # even with the right PIN
    assert ROLLBACK in log.read_text()
    # ...and a new application does not see the token at all (its file no longer authenticates as current).
    slots = p11cli(kmdata, "slots")
    assert "victim" not in slots
