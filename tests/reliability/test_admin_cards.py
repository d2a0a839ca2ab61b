"""ACS card counters in world administration (worldadmin, transfer.AcsLogin) are under the world's
version ledger too: wrong PINs up to near the limit, a copy of the card kept, more wrong PINs lock
it, and the old copy put back is refused instead of giving the attacker fresh PIN guesses.

Emulator API in-process (no .so): scrypt per PIN try makes each wrong PIN ~30 ms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emulator import transfer, worldadmin
from emulator.cards import MAX_CARD_FAILURES
from emulator.errors import AuthenticationFailed, BlobInvalid, CardLocked
from emulator.module import Module
from emulator.world import ModuleFile

PINS = [b"acs-pin-1", b"acs-pin-2", b"acs-pin-3"]
ROLLBACK = "rollback refused"


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> worldadmin.Place:
    monkeypatch.delenv("SOFTSHIELD_READER", raising=False)
    monkeypatch.delenv(transfer.SLOT_ENV, raising=False)
    p = worldadmin.Place.of(tmp_path / "kmdata")
    worldadmin.initialize(p, cipher_suite="DLf1024s160mRijndael", k=2, n=3, pins=PINS)
    return p


def _card(p: worldadmin.Place, n: int, pin: bytes | None = None) -> tuple[Path, bytes]:
    return p.reader.path(f"acs-{n}.card"), pin if pin is not None else PINS[n - 1]


def _failures(path: Path) -> int:
    return json.loads(path.read_bytes())["failures"]


def _wrong_pins(p: worldadmin.Place, times: int) -> None:
    for _ in range(times):
        with pytest.raises((AuthenticationFailed, CardLocked)):
            worldadmin.open_acs(p, [_card(p, 1, b"guess"), _card(p, 2)])


def _near_limit_then_locked(p: worldadmin.Place, tmp_path: Path) -> tuple[Path, bytes]:
    """Card 1 one wrong PIN short of the limit, a copy taken, then locked. (card path, old copy)"""
    path = _card(p, 1)[0]
    _wrong_pins(p, MAX_CARD_FAILURES - 1)
    assert _failures(path) == MAX_CARD_FAILURES - 1
    old = path.read_bytes()
    _wrong_pins(p, 1)
    with pytest.raises(CardLocked):
        worldadmin.open_acs(p, [_card(p, 1), _card(p, 2)])
    return path, old


def test_acs_counter_rollback_refused_in_world_admin(place: worldadmin.Place, tmp_path: Path) -> None:
    path, old = _near_limit_then_locked(place, tmp_path)
    path.write_bytes(old)
    # The same Place, and a fresh one (another run of `softshield new-world --program`).
    for p in (place, worldadmin.Place.of(place.kmdata)):
        with pytest.raises(BlobInvalid, match=ROLLBACK):
            worldadmin.open_acs(p, [_card(p, 1), _card(p, 2)])
        with pytest.raises(BlobInvalid, match=ROLLBACK):
            worldadmin.program(p, [_card(p, 1), _card(p, 2)])
    # The restored copy gave no PIN guess: the counter on disk did not move.
    assert _failures(path) == MAX_CARD_FAILURES - 1
    # The other cards are unaffected: any two of them still open the world.
    assert len(worldadmin.open_acs(place, [_card(place, 2), _card(place, 3)])[1]) == 32


def test_acs_counter_rollback_refused_in_acs_login(place: worldadmin.Place, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path, old = _near_limit_then_locked(place, tmp_path)
    path.write_bytes(old)
    monkeypatch.setenv(transfer.SLOT_ENV, str(path))
    login = transfer.AcsLogin.begin(place.kmdata)
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        login.next(PINS[0])
    assert _failures(path) == MAX_CARD_FAILURES - 1


def test_acs_login_wrong_pins_are_ledgered(place: worldadmin.Place, monkeypatch: pytest.MonkeyPatch) -> None:
    # Counted through C_LoginNext's path, rolled back, refused by world administration.
    path = _card(place, 1)[0]
    old = path.read_bytes()
    monkeypatch.setenv(transfer.SLOT_ENV, str(path))
    with pytest.raises(AuthenticationFailed, match="tries left"):
        transfer.AcsLogin.begin(place.kmdata).next(b"guess")
    path.write_bytes(old)
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        worldadmin.open_acs(worldadmin.Place.of(place.kmdata), [_card(place, 1), _card(place, 2)])


def test_module_and_world_admin_share_one_ledger(place: worldadmin.Place) -> None:
    path = _card(place, 1)[0]
    old = path.read_bytes()
    _wrong_pins(place, 1)
    path.write_bytes(old)
    module = Module.open(place.kmdata)  # the ledger world administration wrote authenticates here
    ref = worldadmin.acs_ref(place.world_file())
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        module.reader.open_card(path, PINS[0], ref)


def test_without_an_openable_module_the_quorum_is_checked_late(place: worldadmin.Place, tmp_path: Path) -> None:
    path, old = _near_limit_then_locked(place, tmp_path)
    # Every module file of the host replaced (a host being recovered): nothing here opens KM.
    store = place.store
    for name in store.names("module_"):
        module = ModuleFile.from_bytes(store.read(name), name)
        store.write(name, ModuleFile(module.esn, module.created, b"\x01" * 32).to_bytes())
    path.write_bytes(old)
    p = worldadmin.Place.of(place.kmdata)
    assert p.reader.ledger is None
    with pytest.raises(BlobInvalid, match=ROLLBACK):
        worldadmin.recover(p, [_card(p, 1), _card(p, 2)])
    # Current cards still recover the host.
    path.write_bytes(old.replace(b'"failures":4', b'"failures":0'))
    with pytest.raises(BlobInvalid, match=ROLLBACK):  # an edited card is not the current one either
        worldadmin.recover(worldadmin.Place.of(place.kmdata), [_card(p, 1), _card(p, 2)])
    recovered = worldadmin.recover(worldadmin.Place.of(place.kmdata), [_card(p, 2), _card(p, 3)])
    assert worldadmin.module_can_open(place, recovered)
