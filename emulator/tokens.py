"""Logical tokens: what PKCS#11 C_InitToken makes, shaped like nShield softcards.

A token is a random 32-byte logical key (LT) in `softcard_<hash>`, sealed once under a key derived
from the SO PIN and, once C_InitPIN ran, once more under a key derived from the user PIN (scrypt,
then HKDF with a world secret: see crypto/pinkdf). Token-protected blobs are sealed under a key
derived from LT, so they open only after a login. The file also keeps the PIN failure counters, so
they hold across processes; the whole file is MACed under a world key, so it cannot be edited (for
example to reset a counter) or moved to another world.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import paths
from .blobs import canonical_json
from .crypto import blobcrypt, pinkdf
from .errors import (
    AuthenticationFailed,
    BlobInvalid,
    CardLocked,
    PinNotInitialized,
    TokenNotFound,
)
from .kmdata import KmStore
from .world import utc_now_ordered

log = logging.getLogger(__name__)

#: Wrong PINs in a row before a PIN locks (PKCS#11 CKF_*_PIN_LOCKED).
MAX_PIN_FAILURES = 10
TOKEN_FORMAT = 1
USERS = ("so", "user")


@dataclass(frozen=True)
class TokenInfo:
    hash: str
    label: str
    serial: str  # 16 characters: PKCS#11 CK_TOKEN_INFO.serialNumber
    user_pin_set: bool
    so_failures: int
    user_failures: int
    so_locked: bool
    user_locked: bool
    created: str


@dataclass(frozen=True)
class TokenAuth:
    """Proof of a login: carries the token's logical key, which never appears in repr or logs."""

    token: str
    user: str
    logical_key: bytes = field(repr=False)

    @property
    def check_value(self) -> str:
        return blobcrypt.fingerprint(self.logical_key)


@dataclass(frozen=True)
class PinWrap:
    salt: bytes
    sealed: bytes

    def to_json(self) -> dict[str, str]:
        return {"salt": self.salt.hex(), "sealed": base64.b64encode(self.sealed).decode()}

    @classmethod
    def from_json(cls, doc: dict) -> PinWrap:
        return cls(bytes.fromhex(doc["salt"]), base64.b64decode(doc["sealed"], validate=True))


@dataclass(frozen=True)
class TokenRecord:
    """The contents of one softcard_<hash> file."""

    hash: str
    label: str
    created: str
    lt_check: str
    so: PinWrap
    user: PinWrap | None = None
    so_failures: int = 0
    user_failures: int = 0

    def failures(self, user: str) -> int:
        return self.so_failures if user == "so" else self.user_failures

    def locked(self, user: str) -> bool:
        return self.failures(user) >= MAX_PIN_FAILURES

    def with_failures(self, user: str, count: int) -> TokenRecord:
        return replace(self, **{f"{user}_failures": count})

    def info(self) -> TokenInfo:
        return TokenInfo(self.hash, self.label, self.hash[:16], self.user is not None,
                         self.so_failures, self.user_failures, self.locked("so"), self.locked("user"),
                         self.created)

    def _doc(self) -> dict:
        return {"format": TOKEN_FORMAT, "hash": self.hash, "label": self.label, "created": self.created,
                "lt_check": self.lt_check, "so": self.so.to_json(),
                "user": self.user.to_json() if self.user else None,
                "so_failures": self.so_failures, "user_failures": self.user_failures}

    def to_bytes(self, mac_key: bytes) -> bytes:
        doc = self._doc()
        doc["mac"] = blobcrypt.mac(mac_key, canonical_json(doc)).hex()
        return canonical_json(doc)

    @classmethod
    def from_bytes(cls, data: bytes, mac_key: bytes, token: str) -> TokenRecord:
        what = f"token file {paths.softcard_file(token)}"
        try:
            doc = json.loads(data)
            tag = bytes.fromhex(doc.pop("mac"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BlobInvalid(f"{what}: unreadable (edited or truncated)") from None
        if not blobcrypt.mac_matches(mac_key, canonical_json(doc), tag):
            raise BlobInvalid(f"{what}: authentication failed (edited, or from another world)")
        try:
            record = cls(doc["hash"], doc["label"], doc["created"], doc["lt_check"],
                         PinWrap.from_json(doc["so"]),
                         PinWrap.from_json(doc["user"]) if doc["user"] else None,
                         int(doc["so_failures"]), int(doc["user_failures"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BlobInvalid(f"{what}: authentic but unusable ({exc})") from None
        if record.hash != token:
            raise BlobInvalid(f"{what}: file is for token {record.hash} (renamed)")
        return record


class TokenStore:
    """Token files of one world; `destroy_objects(hash)` removes a token's keys (re-init, delete)."""

    def __init__(self, store: KmStore, world_key: bytes, destroy_objects: Callable[[str], None]) -> None:
        self._store = store
        self._mac_root = blobcrypt.derive_subkey(world_key, b"softshield token file")
        self._pin_secret = blobcrypt.derive_subkey(world_key, b"softshield pin")
        self._destroy_objects = destroy_objects

    # --- files ---------------------------------------------------------------------------------
    def _mac_key(self, token: str) -> bytes:
        return blobcrypt.derive_subkey(self._mac_root, b"file", token.encode("ascii"))

    def read(self, token: str) -> TokenRecord:
        if not isinstance(token, str) or not paths.HASH_RE.match(token):
            raise TokenNotFound(f"no token {token!r}: a token hash is 40 lowercase hex digits")
        try:
            data, _stamp, stale = self._store.read_current(paths.softcard_file(token))
        except FileNotFoundError:
            raise TokenNotFound(f"no token {token} in kmdata") from None
        record = TokenRecord.from_bytes(data, self._mac_key(token), token)
        if stale:
            # An authentic but older file: restoring it would reset the PIN failure counters.
            raise BlobInvalid(f"token file {paths.softcard_file(token)} {stale}")
        return record

    def _write(self, record: TokenRecord) -> None:
        self._store.write(paths.softcard_file(record.hash), record.to_bytes(self._mac_key(record.hash)))

    def list(self) -> list[TokenInfo]:
        infos = []
        for name in self._store.names(paths.SOFTCARD_PREFIX):
            token = name[len(paths.SOFTCARD_PREFIX):]
            try:
                infos.append(self.read(token).info())
            except (BlobInvalid, TokenNotFound) as exc:
                log.warning("skipping token file %s: %s", name, exc)
        return infos

    # --- PIN wrapping --------------------------------------------------------------------------
    def _pin_key(self, token: str, user: str, pin: bytes, salt: bytes) -> bytes:
        return pinkdf.derive_pin_key(pin, salt, self._pin_secret, f"{token}:{user}".encode())

    @staticmethod
    def _aad(token: str, user: str) -> bytes:
        return f"softshield logical token\x00{token}\x00{user}".encode()

    def _wrap(self, token: str, user: str, pin: bytes, logical_key: bytes) -> PinWrap:
        salt = pinkdf.new_salt()
        return PinWrap(salt, blobcrypt.seal(self._pin_key(token, user, pin, salt), logical_key,
                                            self._aad(token, user)))

    def _unwrap(self, record: TokenRecord, user: str, pin: bytes) -> bytes | None:
        wrap = record.so if user == "so" else record.user
        if wrap is None:
            raise PinNotInitialized(f"token {record.hash}: the {user} PIN has not been set")
        return blobcrypt.try_unseal(self._pin_key(record.hash, user, pin, wrap.salt), wrap.sealed,
                                    self._aad(record.hash, user))

    # --- PIN checks with persisted failure counters ----------------------------------------------
    def _verify_pin(self, token: str, user: str, pin: bytes) -> bytes:
        """The logical key for a correct PIN; counts a wrong one (under the writer lock, re-read,
        so two processes never lose an increment)."""
        if user not in USERS:
            raise AuthenticationFailed(f"unknown user {user!r}: expected 'so' or 'user'")
        record = self.read(token)
        if record.locked(user):
            raise CardLocked(f"token {token}: the {user} PIN is locked after {MAX_PIN_FAILURES} wrong PINs")
        if user == "user" and record.user is None:
            raise PinNotInitialized(f"token {token}: the user PIN has not been set (C_InitPIN)")
        logical_key = self._unwrap(record, user, pin)
        if logical_key is None:
            with self._store.writer_lock():
                current = self.read(token)
                count = current.failures(user) + 1
                self._write(current.with_failures(user, count))
            left = MAX_PIN_FAILURES - count
            state = "now locked" if left <= 0 else f"{left} tries left"
            raise AuthenticationFailed(f"token {token}: wrong {user} PIN ({state})")
        # Re-read: another process may have locked or re-initialised the token during the KDF.
        current = self.read(token)
        if current.locked(user):
            raise CardLocked(f"token {token}: the {user} PIN was locked meanwhile")
        if blobcrypt.fingerprint(logical_key) != current.lt_check:
            raise AuthenticationFailed(f"token {token} was re-initialised meanwhile")
        if current.failures(user):
            with self._store.writer_lock():
                self._write(self.read(token).with_failures(user, 0))
        return logical_key

    def check(self, auth: object, token: str, *, user: str | None = None) -> TokenAuth:
        """`auth` must be a current login to `token` (and by `user`, when named)."""
        if not isinstance(auth, TokenAuth) or auth.token != token:
            raise AuthenticationFailed(f"token {token}: not logged in")
        if user is not None and auth.user != user:
            raise AuthenticationFailed(f"token {token}: needs the {user} to be logged in")
        if self.read(token).lt_check != auth.check_value:
            raise AuthenticationFailed(f"token {token}: login is stale (token re-initialised)")
        return auth

    # --- the PKCS#11 token lifecycle -------------------------------------------------------------
    def init_token(self, label: str, so_pin: bytes, token: str | None) -> TokenInfo:
        if token is not None:
            self._verify_pin(token, "so", so_pin)
        with self._store.writer_lock():
            if token is None:
                token = hashlib.sha1(os.urandom(32)).hexdigest()  # unrelated to any PIN, as nShield names softcards
                created = utc_now_ordered()  # slot numbers follow creation order, across processes
            else:
                created = self.read(token).created
                self._destroy_objects(token)
            # A fresh logical key: logins and blobs from before a re-init are dead.
            logical_key = blobcrypt.random_key()
            record = TokenRecord(token, label, created, blobcrypt.fingerprint(logical_key),
                                 self._wrap(token, "so", so_pin, logical_key))
            self._write(record)
            self._store.bump()
        return record.info()

    def login(self, token: str, user: str, pin: bytes) -> TokenAuth:
        return TokenAuth(token, user, self._verify_pin(token, user, pin))

    def init_user_pin(self, token: str, so_auth: object, pin: bytes) -> None:
        auth = self.check(so_auth, token, user="so")
        with self._store.writer_lock():
            record = self.read(token)
            # C_InitPIN also unlocks a locked user PIN: that is the SO's recovery path.
            self._write(replace(record, user=self._wrap(token, "user", pin, auth.logical_key),
                                user_failures=0))
            self._store.bump()

    def set_pin(self, token: str, user: str, old: bytes, new: bytes) -> TokenAuth:
        logical_key = self._verify_pin(token, user, old)
        with self._store.writer_lock():
            record = self.read(token)
            self._write(replace(record, **{user: self._wrap(token, user, new, logical_key)}))
            self._store.bump()
        return TokenAuth(token, user, logical_key)

    def delete_token(self, token: str, so_auth: object) -> None:
        self.check(so_auth, token, user="so")
        with self._store.writer_lock():
            self._destroy_objects(token)
            self._store.delete(paths.softcard_file(token))
            self._store.bump()

    def blob_key(self, auth: TokenAuth) -> bytes:
        """The key token-protected blobs of `auth.token` are sealed under (the last one derived is
        kept: loading a token's keys asks for it once per blob)."""
        last = getattr(self, "_last_blob_key", None)
        if last is not None and last[0] == auth.token and last[1] == auth.logical_key:
            return last[2]
        derived = blobcrypt.derive_subkey(auth.logical_key, b"softshield token blob", auth.token.encode())
        self._last_blob_key = (auth.token, auth.logical_key, derived)
        return derived
