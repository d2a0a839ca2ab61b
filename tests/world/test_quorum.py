"""ACS quorum through the emulator API: 2 of 3 with any two cards; the failures each say why."""

from __future__ import annotations

import shutil

import pytest

from emulator import worldadmin
from emulator.cards import MAX_CARD_FAILURES
from emulator.errors import AuthenticationFailed, CardLocked, QuorumNotMet

PINS = [b"1111", b"2222", b"3333"]


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.delenv("SOFTSHIELD_READER", raising=False)
    p = worldadmin.Place.of(tmp_path / "kmdata")
    worldadmin.initialize(p, cipher_suite="DLf1024s160mRijndael", k=2, n=3, pins=PINS)
    return p


def card(p, n, pin=None):
    return (p.reader.path(f"acs-{n}.card"), pin if pin is not None else PINS[n - 1])


@pytest.mark.parametrize("pair", [(1, 2), (1, 3), (2, 3), (3, 1)])
def test_any_two_cards_open_the_world(place, pair):
    world_file, km, knso = worldadmin.open_acs(place, [card(place, n) for n in pair])
    assert len(km) == 32 and knso[:1] == b"\x30"


def test_one_card_is_not_a_quorum(place):
    with pytest.raises(QuorumNotMet, match="needs 2 of its 3 cards; only 1 presented"):
        worldadmin.open_acs(place, [card(place, 1)])


def test_the_same_card_twice_fails(place):
    with pytest.raises(QuorumNotMet, match="already presented"):
        worldadmin.open_acs(place, [card(place, 2), card(place, 2)])


def test_wrong_pin_fails_and_counts(place):
    with pytest.raises(AuthenticationFailed, match=f"wrong PIN for card 1 of ACS `acs' \\({MAX_CARD_FAILURES - 1} tries left\\)"):
        worldadmin.open_acs(place, [card(place, 1, b"9999"), card(place, 2)])


def test_card_of_another_world_fails(place, tmp_path):
    other = worldadmin.Place.of(tmp_path / "other")
    worldadmin.initialize(other, cipher_suite="DLf1024s160mRijndael", k=2, n=3, pins=PINS)
    foreign = tmp_path / "foreign-1.card"
    shutil.copy(other.reader.path("acs-1.card"), foreign)
    with pytest.raises(AuthenticationFailed, match="belongs to another Security World"):
        worldadmin.open_acs(place, [(foreign, PINS[0]), card(place, 2)])


def test_card_locks_after_the_limit(place):
    for _ in range(MAX_CARD_FAILURES):
        with pytest.raises(AuthenticationFailed):
            worldadmin.open_acs(place, [card(place, 3, b"0000"), card(place, 1)])
    with pytest.raises(CardLocked, match="locked after"):
        worldadmin.open_acs(place, [card(place, 3), card(place, 1)])


def test_second_initialize_is_refused_unless_forced(place):
    from emulator.errors import WorldStateError

    with pytest.raises(WorldStateError, match="already exists"):
        worldadmin.initialize(place, cipher_suite="DLf1024s160mRijndael", k=2, n=3, pins=PINS)
    worldadmin.initialize(place, cipher_suite="DLf1024s160mRijndael", k=2, n=3, pins=PINS, force=True)
