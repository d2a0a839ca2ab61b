"""ACS quorum through the emulator API: 2 of 3 with any two cards; the failures each say why."""

from __future__ import annotations

import shutil

import pytest

import base64
import itertools

from emulator import shamir, worldadmin
from emulator.cards import MAX_CARD_FAILURES
from emulator.crypto import blobcrypt
from emulator.errors import AuthenticationFailed, BlobInvalid, CardLocked, QuorumNotMet

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


def _unseal_km(place, lt: bytes) -> bytes:
    """KM from the world file with `lt` as the ACS logical token (what the quorum exists to give)."""
    world_file = place.world_file()
    acs = world_file.acs
    return blobcrypt.unseal(blobcrypt.derive_subkey(lt, b"softshield acs km"), base64.b64decode(acs["km"]),
                            worldadmin._acs_aad(world_file.world, acs, "km"), what="world file")


def test_fewer_than_k_shares_do_not_reconstruct() -> None:
    """Shamir's scheme itself (not the card count check): with a 3-of-5 split every 3 shares give the
    secret back and no 2 shares do."""
    secret = shamir.new_secret()
    shares = shamir.split(secret, 3, 5)
    for chosen in itertools.combinations(shares, 3):
        assert shamir.combine(list(chosen)) == secret
    for chosen in itertools.combinations(shares, 2):
        assert shamir.combine(list(chosen)) != secret


def test_one_real_share_does_not_open_the_world(place) -> None:
    """A quorum of one (K-1 of a 2-of-3 ACS), read with the card's right PIN, reconstructs a value that
    neither matches the set's check value nor unseals KM."""
    ref = worldadmin.acs_ref(place.world_file())
    shares = [place.reader.open_card(*card(place, n), ref)[1] for n in (1, 2)]
    assert len(_unseal_km(place, shamir.combine(shares))) == 32  # the control: K shares open it
    alone = shamir.combine(shares[:1])
    assert blobcrypt.fingerprint(alone) != ref.lt_check
    with pytest.raises(BlobInvalid, match="authentication failed"):
        _unseal_km(place, alone)


def test_shares_of_another_set_do_not_reconstruct(place, tmp_path, monkeypatch) -> None:
    """A share of another card set (same PINs, same quorum) combined with one of ours is refused by the
    reconstruction check ("do not reconstruct"), even when the name checks are bypassed."""
    other = worldadmin.Place.of(tmp_path / "other")
    worldadmin.initialize(other, cipher_suite="DLf1024s160mRijndael", k=2, n=3, pins=PINS)
    ours, theirs = worldadmin.acs_ref(place.world_file()), worldadmin.acs_ref(other.world_file())
    foreign = other.reader.open_card(*card(other, 2), theirs)
    mixed = shamir.combine([place.reader.open_card(*card(place, 1), ours)[1], foreign[1]])
    assert blobcrypt.fingerprint(mixed) != ours.lt_check
    with pytest.raises(BlobInvalid, match="authentication failed"):
        _unseal_km(place, mixed)
    # Through the quorum reader: card 2 is presented and passes every name check, but carries the
    # other set's share (as a forged card would).
    real_open = place.reader.open_card

    def open_card(path, pin, ref):
        return foreign if path.name == "acs-2.card" else real_open(path, pin, ref)

    monkeypatch.setattr(place.reader, "open_card", open_card)
    with pytest.raises(AuthenticationFailed, match="do not reconstruct"):
        worldadmin.open_acs(place, [card(place, 1), card(place, 2)])
