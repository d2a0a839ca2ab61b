"""Emulated smart cards: one file per card in a virtual reader folder.

The reader is `<kmdata>/reader/` unless SOFTSHIELD_READER names another folder; a set named NAME of
N cards is written as `NAME-1.card` ... `NAME-N.card`. Each card holds one Shamir share of its set's
logical token (shamir.py), sealed with AES-256-GCM under a key derived from the card's PIN with
scrypt (crypto/pinkdf) and bound to the world (hknso), set and card number. A wrong PIN is counted
in the card file itself (written atomically under the reader's lock, as a smart card keeps its own
counter) and the card locks after MAX_CARD_FAILURES. Card files are not MACed (a card is its own
authority), so the module's version ledger (ledger.VersionLedger) records each card's current
content: an edited or older copy of a card (a counter reset) is refused. K distinct cards of the same set and world with
their right PINs give back the logical token, checked against the set's public check value.
"""

from __future__ import annotations

import base64
import contextlib
import binascii
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from . import paths, shamir
from .blobs import canonical_json
from .crypto import blobcrypt, pinkdf
from .crypto.material import wipe
from .errors import AuthenticationFailed, BlobInvalid, CardLocked, QuorumNotMet, WorldStateError
from .kmdata import KmStore, VersionLedger, ensure_dir, read_with_stamp
from .world import utc_now

CARD_FORMAT = 1
CARD_SUFFIX = ".card"
#: Wrong PINs in a row before a card refuses to be read.
MAX_CARD_FAILURES = 5
MIN_PIN_LEN = 1
MAX_PIN_LEN = 512  # ckinittoken's limit for card passphrases


def reader_dir(kmdata: Path) -> Path:
    env = os.environ.get("SOFTSHIELD_READER")
    return Path(env).expanduser() if env else kmdata / "reader"


def card_file_name(set_name: str, number: int) -> str:
    return f"{set_name}-{number}{CARD_SUFFIX}"


@dataclass(frozen=True)
class CardSetRef:
    """What identifies a card set: enough to write its cards and to check the ones presented."""

    role: str  # "ACS" or "OCS"
    name: str
    hash: str  # hkltu: 40 hex, unrelated to any PIN
    k: int
    n: int
    world: str  # hknso
    lt_check: str  # public check value of the logical token


@dataclass(frozen=True)
class Card:
    role: str
    set_name: str
    set_hash: str
    world: str
    number: int
    k: int
    n: int
    x: int
    salt: bytes
    sealed: bytes
    failures: int
    created: str

    @property
    def locked(self) -> bool:
        return self.failures >= MAX_CARD_FAILURES

    def label(self) -> str:
        return f"card {self.number} of {self.role} `{self.set_name}'"

    def to_bytes(self) -> bytes:
        return canonical_json({
            "format": CARD_FORMAT, "kind": "softshield emulated smart card (EMULATED)",
            "role": self.role, "set": self.set_name, "set_hash": self.set_hash, "world": self.world,
            "number": self.number, "k": self.k, "n": self.n, "x": self.x, "salt": self.salt.hex(),
            "sealed": base64.b64encode(self.sealed).decode(), "failures": self.failures,
            "created": self.created,
        })

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> "Card":
        try:
            doc = json.loads(data)
            if doc["format"] != CARD_FORMAT:
                raise ValueError(f"card format {doc['format']} is not supported")
            return cls(doc["role"], doc["set"], doc["set_hash"], doc["world"], int(doc["number"]),
                       int(doc["k"]), int(doc["n"]), int(doc["x"]), bytes.fromhex(doc["salt"]),
                       base64.b64decode(doc["sealed"], validate=True), int(doc["failures"]), doc["created"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BlobInvalid(f"{what}: not a card (blank, erased or damaged: {exc})") from None


def _aad(card_world: str, set_hash: str, number: int, x: int) -> bytes:
    return f"softshield card share\x00{card_world}\x00{set_hash}\x00{number}\x00{x}".encode()


def _pin_key(pin: bytes, salt: bytes, world: str, set_hash: str, number: int) -> contextlib.AbstractContextManager:
    """The card's PIN key, wiped when the block ends; `pin` is used as given (no immutable copy)."""
    # The world's hknso is public: it binds the share to the world, the PIN alone protects it.
    return pinkdf.pin_key(pin, salt, bytes.fromhex(world), f"card:{set_hash}:{number}".encode())


def check_pin(pin: bytes) -> None:
    if not MIN_PIN_LEN <= len(pin) <= MAX_PIN_LEN:
        raise AuthenticationFailed(f"a card PIN is {MIN_PIN_LEN} to {MAX_PIN_LEN} bytes")


class Reader:
    """The virtual card reader: a folder of card files."""

    def __init__(self, folder: Path, ledger: VersionLedger | None = None) -> None:
        self.folder = folder
        self.store = KmStore(folder)
        # The world's ledger (None for tools that run without the world key: then unchecked).
        self.ledger = ledger

    @staticmethod
    def _entry(set_hash: str, number: int) -> str:
        # By set and number, not by file: a card may be presented from any path.
        return f"card:{set_hash}:{number}"

    def _ledger_step(self, entry: str, data: bytes | None, path: Path) -> contextlib.AbstractContextManager:
        if self.ledger is None:
            return contextlib.nullcontext()
        return self.ledger.replacing([(entry, data, path)])

    def path(self, name: str) -> Path:
        return self.folder / name

    def resolve(self, name: str | os.PathLike) -> Path:
        """A card named by file name (in the reader) or by path."""
        path = Path(name)
        return path if path.parent != Path(".") or path.is_absolute() else self.folder / path

    def read(self, path: Path) -> Card:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobInvalid(f"{path.name}: no card in the reader ({path})") from None
        return Card.from_bytes(data, path.name)

    def cards_of(self, set_hash: str) -> list[tuple[Path, Card]]:
        found = []
        for name in self.store.names(""):
            if not name.endswith(CARD_SUFFIX):
                continue
            try:
                card = self.read(self.path(name))
            except BlobInvalid:
                continue
            if card.set_hash == set_hash:
                found.append((self.path(name), card))
        return sorted(found, key=lambda item: item[1].number)

    # --- writing -------------------------------------------------------------------------------
    def write_set(self, ref: CardSetRef, secret: bytes, pins: list[bytes], *, overwrite: bool = False,
                  say: Callable[[str], None] = lambda line: None) -> list[Path]:
        """Write the N cards of `ref`, card n with pins[n-1]."""
        if len(pins) != ref.n:
            raise QuorumNotMet(f"{ref.n} cards need {ref.n} PINs, got {len(pins)}")
        for pin in pins:
            check_pin(pin)
        ensure_dir(self.folder)
        targets = [self.path(card_file_name(ref.name, n)) for n in range(1, ref.n + 1)]
        for target in targets:
            if target.exists() and not overwrite:
                raise WorldStateError(f"{target.name}: the reader already holds a card of that name "
                                      "(erase it first with `softshield bulkerase`)")
        shares = shamir.split(secret, ref.k, ref.n)
        written = []
        with self.store.writer_lock():
            for number, ((x, y), pin, target) in enumerate(zip(shares, pins, targets), 1):
                say(f" Module 1: {number - 1} cards of {ref.n} written")
                say(" Module 1 slot 0: blank card")
                say(" Module 1 slot 0:- passphrase specified - writing card")
                salt = pinkdf.new_salt()
                with _pin_key(pin, salt, ref.world, ref.hash, number) as key:
                    sealed = blobcrypt.seal(key, y, _aad(ref.world, ref.hash, number, x))
                card = Card(ref.role, ref.name, ref.hash, ref.world, number, ref.k, ref.n, x, salt, sealed,
                            0, utc_now())
                data = card.to_bytes()
                with self._ledger_step(self._entry(ref.hash, number), data, target):
                    self.store.write(target.name, data)
                written.append(target)
        return written

    # --- reading a quorum ------------------------------------------------------------------------
    def _count_failure(self, path: Path) -> Card:
        with self.store.writer_lock():
            card = self.read(path)  # re-read under the lock: no lost increment across processes
            card = replace(card, failures=card.failures + 1)
            self._rewrite(path, card)
        return card

    def _rewrite(self, path: Path, card: Card) -> None:
        data = card.to_bytes()
        with self._ledger_step(self._entry(card.set_hash, card.number), data, path):
            if path.parent.resolve() == self.folder.resolve():
                self.store.write(path.name, data)
            else:
                KmStore(path.parent).write(path.name, data)

    def open_card(self, path: Path, pin: bytes, ref: CardSetRef) -> tuple[Card, tuple[int, bytearray]]:
        """One card's share, after the checks every presented card gets; the caller wipes the
        share's bytearray (material.wipe) once it is combined."""
        try:
            data, stamp = read_with_stamp(path)
        except FileNotFoundError:
            raise BlobInvalid(f"{path.name}: no card in the reader ({path})") from None
        card = Card.from_bytes(data, path.name)
        if card.world != ref.world:
            raise AuthenticationFailed(f"{path.name}: {card.label()} belongs to another Security World "
                                       f"(hknso {card.world}, this world is {ref.world})")
        if card.set_hash != ref.hash:
            raise AuthenticationFailed(f"{path.name}: {card.label()} is not a card of {ref.role} `{ref.name}'")
        if self.ledger is not None:
            data, _stamp, stale = self.ledger.verdict(self._entry(card.set_hash, card.number), data,
                                                      lambda: read_with_stamp(path), stamp)
            if stale:
                raise BlobInvalid(f"{path.name}: {card.label()} {stale}")
            card = Card.from_bytes(data, path.name)
        if card.locked:
            raise CardLocked(f"{path.name}: {card.label()} is locked after {MAX_CARD_FAILURES} wrong PINs")
        with _pin_key(pin, card.salt, card.world, card.set_hash, card.number) as key:
            # The share stays in a bytearray the quorum reader wipes once the token is combined.
            y = blobcrypt.try_unseal_buffer(key, card.sealed, _aad(card.world, card.set_hash, card.number, card.x))
        if y is None:
            card = self._count_failure(path)
            left = MAX_CARD_FAILURES - card.failures
            state = "the card is now locked" if left <= 0 else f"{left} tries left"
            raise AuthenticationFailed(f"{path.name}: wrong PIN for {card.label()} ({state})")
        if card.failures:
            with self.store.writer_lock():
                self._rewrite(path, replace(self.read(path), failures=0))
        return card, (card.x, y)

    def read_quorum(self, ref: CardSetRef, presented: Iterable[tuple[Path, bytes]],
                    say: Callable[[str], None] = lambda line: None) -> bytes:
        """The set's logical token from K distinct cards; every other outcome raises one clear error."""
        say(f"Loading `{ref.name}':")
        shares: list[tuple[int, bytearray]] = []
        seen: dict[int, str] = {}
        try:
            for path, pin in presented:
                if len(shares) >= ref.k:
                    break
                say(f" Module 1: {len(shares)} cards of {ref.k} read")
                card, share = self.open_card(path, pin, ref)
                shares.append(share)  # first, so a refused duplicate is wiped too
                if card.number in seen:
                    raise QuorumNotMet(f"{path.name}: card {card.number} of `{ref.name}' was already presented "
                                       f"(as {seen[card.number]}): the quorum needs {ref.k} different cards")
                seen[card.number] = path.name
                say(f" Module 1 slot 0: `{ref.name}' #{card.number}")
                say(" Module 1 slot 0:- passphrase supplied - reading card")
            if len(shares) < ref.k:
                raise QuorumNotMet(f"{ref.role} `{ref.name}' needs {ref.k} of its {ref.n} cards; "
                                   f"only {len(shares)} presented")
            secret = shamir.combine(shares)
        finally:
            wipe_shares(shares)
        if blobcrypt.fingerprint(secret) != ref.lt_check:
            raise AuthenticationFailed(f"the cards presented do not reconstruct {ref.role} `{ref.name}'")
        say("Card reading complete.")
        return secret

    def erase(self, path: Path) -> Card | None:
        """bulkerase: the card file goes (a blank card stays in the reader as no file)."""
        try:
            card = self.read(path)
        except BlobInvalid:
            card = None
        with self.store.writer_lock():
            step = (self._ledger_step(self._entry(card.set_hash, card.number), None, path)
                    if card is not None else contextlib.nullcontext())
            with step:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    raise BlobInvalid(f"{path.name}: no card in the reader") from None
        return card


def wipe_shares(shares: list[tuple[int, bytearray]]) -> None:
    """Zero the shares read from cards (the combined token is pycryptodome's immutable bytes)."""
    for _x, y in shares:
        wipe(y)


def new_set_hash() -> str:
    import hashlib

    return hashlib.sha1(os.urandom(32)).hexdigest()


def presented_from_pin_file(reader: Reader, lines: list[tuple[str, bytes]]) -> list[tuple[Path, bytes]]:
    return [(reader.resolve(name), pin) for name, pin in lines]


__all__ = ["Card", "CardSetRef", "Reader", "reader_dir", "card_file_name", "new_set_hash",
           "MAX_CARD_FAILURES", "paths"]
