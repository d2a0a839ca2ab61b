"""Operator Card Sets (OCS): K-of-N card sets whose logical token protects keys.

`cards_<hkltu>` in kmdata/local describes a set (name, K/N, persistence, the logical token's public
check value) and is MACed under a world key, so it cannot be edited or moved to another world; the
cards themselves are in the reader (cards.py). Presenting K cards gives the 16-byte logical token;
a `TokenAuth` carries a 32-byte key derived from it, under which the set's key blobs are sealed
exactly as a softcard's are (tokens.TokenStore.blob_key), so without the quorum they cannot open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import paths, shamir
from .blobs import canonical_json
from .cards import CardSetRef, Reader, new_set_hash, wipe_shares
from .crypto import blobcrypt
from .errors import AuthenticationFailed, BlobInvalid, QuorumNotMet, TokenNotFound, WorldStateError
from .kmdata import KmStore
from .tokens import TokenAuth, TokenInfo
from .world import utc_now_ordered

CARDSET_PREFIX = "cards_"
CARDSET_FORMAT = 1


def cardset_file(set_hash: str) -> str:
    return CARDSET_PREFIX + set_hash


@dataclass(frozen=True)
class CardSet:
    name: str
    hash: str
    k: int
    n: int
    persistent: bool
    timeout: int  # seconds, 0 = none
    created: str
    lt_check: str
    auth_check: str
    world: str

    def ref(self) -> CardSetRef:
        return CardSetRef("OCS", self.name, self.hash, self.k, self.n, self.world, self.lt_check)

    def info(self) -> TokenInfo:
        # A card set is a PKCS#11 token with a user and no SO; its PIN counters live on the cards.
        return TokenInfo(self.hash, self.name, self.hash[:16], True, 0, 0, False, False, self.created)

    def doc(self) -> dict:
        return {"format": CARDSET_FORMAT, "name": self.name, "hash": self.hash, "k": self.k, "n": self.n,
                "persistent": self.persistent, "timeout": self.timeout, "created": self.created,
                "lt_check": self.lt_check, "auth_check": self.auth_check, "world": self.world}


def _auth_key(lt: bytes, set_hash: str) -> bytes:
    return blobcrypt.derive_subkey(lt, b"softshield cardset logical token", set_hash.encode())


class CardSetStore:
    def __init__(self, store: KmStore, world_key: bytes, hknso: str, reader: Reader) -> None:
        self._store = store
        self._mac_key = blobcrypt.derive_subkey(world_key, b"softshield cardset file")
        self._hknso = hknso
        self.reader = reader

    def exists(self, set_hash: str | None) -> bool:
        return bool(set_hash) and self._store.exists(cardset_file(set_hash))

    def read(self, set_hash: str) -> CardSet:
        what = cardset_file(set_hash)
        try:
            data = self._store.read(what)
        except FileNotFoundError:
            raise TokenNotFound(f"no card set {set_hash} in kmdata") from None
        try:
            doc = json.loads(data)
            tag = bytes.fromhex(doc.pop("mac"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BlobInvalid(f"{what}: unreadable (edited or truncated)") from None
        if not blobcrypt.mac_matches(self._mac_key, canonical_json(doc), tag):
            raise BlobInvalid(f"{what}: authentication failed (edited, or from another world)")
        doc.pop("format", None)
        cardset = CardSet(**doc)
        if cardset.hash != set_hash:
            raise BlobInvalid(f"{what}: describes card set {cardset.hash} (renamed)")
        return cardset

    def list(self) -> list[CardSet]:
        found = []
        for name in self._store.names(CARDSET_PREFIX):
            try:
                found.append(self.read(name[len(CARDSET_PREFIX):]))
            except (BlobInvalid, TokenNotFound, TypeError):
                continue
        return sorted(found, key=lambda c: (c.created, c.hash))

    def by_name(self, name: str) -> CardSet:
        for cardset in self.list():
            if cardset.name == name:
                return cardset
        raise TokenNotFound(f"no card set named `{name}' in this world")

    def create(self, name: str, k: int, n: int, pins: list[bytes], *, persistent: bool = False, timeout: int = 0,
               say: Callable[[str], None] = lambda line: None) -> CardSet:
        if not paths.APP_RE.match(name.replace("-", "").replace("_", "")) or len(name) > 64:
            raise WorldStateError(f"card set name {name!r}: use letters, digits, '-' and '_' (at most 64)")
        if any(c.name == name for c in self.list()):
            raise WorldStateError(f"a card set named `{name}' already exists")
        lt = shamir.new_secret()
        set_hash = new_set_hash()
        cardset = CardSet(name, set_hash, k, n, persistent, timeout, utc_now_ordered(), blobcrypt.fingerprint(lt),
                          blobcrypt.fingerprint(_auth_key(lt, set_hash)), self._hknso)
        say("Creating Cardset:")
        self.reader.write_set(cardset.ref(), lt, pins, say=say)
        say("Card writing complete.")
        doc = cardset.doc()
        doc["mac"] = blobcrypt.mac(self._mac_key, canonical_json(doc)).hex()
        with self._store.writer_lock():
            self._store.write(cardset_file(set_hash), canonical_json(doc))
            self._store.bump()
        say("")
        say(f"cardset created; hkltu = {set_hash}")
        return cardset

    def login(self, set_hash: str, presented: Iterable[tuple[Path, bytes]],
              say: Callable[[str], None] = lambda line: None) -> TokenAuth:
        cardset = self.read(set_hash)
        lt = self.reader.read_quorum(cardset.ref(), presented, say)
        return TokenAuth(set_hash, "user", _auth_key(lt, set_hash))

    def inserted(self, set_hash: str) -> list[Path]:
        """The set's cards now in the reader, lowest number first (what C_Login reads)."""
        return [path for path, card in self.reader.cards_of(set_hash) if not card.locked] or \
            [path for path, _card in self.reader.cards_of(set_hash)]

    def check(self, auth: object, set_hash: str) -> TokenAuth:
        if not isinstance(auth, TokenAuth) or auth.token != set_hash:
            raise AuthenticationFailed(f"card set {set_hash}: not logged in")
        if self.read(set_hash).auth_check != auth.check_value:
            raise AuthenticationFailed(f"card set {set_hash}: login is not this set's")
        return auth

    def begin(self, set_hash: str) -> "QuorumLogin":
        return QuorumLogin(self, self.read(set_hash))


@dataclass
class QuorumLogin:
    """C_LoginBegin / C_LoginNext / C_LoginEnd: one card per C_LoginNext, in reader order."""

    store: CardSetStore
    cardset: CardSet
    shares: list[tuple[int, bytearray]] = field(default_factory=list)
    used: set[int] = field(default_factory=set)

    @property
    def left(self) -> int:
        return self.cardset.k - len(self.shares)

    def next(self, pin: bytes) -> int:
        if self.left <= 0:
            raise QuorumNotMet(f"card set `{self.cardset.name}': the quorum is already complete")
        for path, card in self.store.reader.cards_of(self.cardset.hash):
            if card.number in self.used:
                continue
            card, share = self.store.reader.open_card(path, pin, self.cardset.ref())
            self.used.add(card.number)
            self.shares.append(share)
            return self.left
        raise QuorumNotMet(f"card set `{self.cardset.name}': no further card of the set in the reader")

    def end(self) -> TokenAuth:
        if self.left > 0:
            raise QuorumNotMet(f"card set `{self.cardset.name}' needs {self.left} more card(s)")
        try:
            lt = shamir.combine(self.shares)
        finally:
            wipe_shares(self.shares)  # the shares read from cards are no longer needed
            self.shares.clear()
        if blobcrypt.fingerprint(lt) != self.cardset.lt_check:
            raise AuthenticationFailed(f"the cards presented do not reconstruct `{self.cardset.name}'")
        return TokenAuth(self.cardset.hash, "user", _auth_key(lt, self.cardset.hash))
