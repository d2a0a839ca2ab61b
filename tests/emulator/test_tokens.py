"""Logical tokens: init, login, persisted PIN counters, lock-out, C_InitPIN, C_SetPIN, re-init."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emulator import blobs
from emulator.acl import Acl
from emulator.crypto import keygen
from emulator.errors import (
    AuthenticationFailed,
    BlobInvalid,
    CardLocked,
    PinNotInitialized,
    TokenNotFound,
)
from emulator.keys import Key
from emulator.module import Module
from emulator.tokens import MAX_PIN_FAILURES

# Must match the PINs conftest's `token` fixture sets.
SO_PIN = b"so-secret-1"
USER_PIN = b"user-1234"


def test_init_token_creates_softcard_file(module: Module) -> None:
    info = module.init_token("alpha", SO_PIN)
    assert re.fullmatch(r"[0-9a-f]{40}", info.hash)
    assert len(info.serial) == 16
    assert (info.label, info.user_pin_set, info.so_failures, info.user_failures) == ("alpha", False, 0, 0)
    assert (module.local / f"softcard_{info.hash}").is_file()
    assert module.list_tokens() == [info]
    assert SO_PIN not in (module.local / f"softcard_{info.hash}").read_bytes()


def test_user_login_before_init_pin(module: Module) -> None:
    info = module.init_token("alpha", SO_PIN)
    with pytest.raises(PinNotInitialized):
        module.login(info.hash, "user", USER_PIN)


def test_init_pin_and_login(module: Module, token: str) -> None:
    assert module.token_info(token).user_pin_set
    auth = module.login(token, "user", USER_PIN)
    assert (auth.token, auth.user) == (token, "user")
    assert USER_PIN.hex() not in repr(auth) and auth.logical_key.hex() not in repr(auth)


def test_init_pin_needs_so(module: Module, token: str) -> None:
    user = module.login(token, "user", USER_PIN)
    with pytest.raises(AuthenticationFailed, match="so"):
        module.init_user_pin(token, user, b"other")


def test_wrong_pin_counts_across_instances_and_locks(kmdata: Path, module: Module, token: str) -> None:
    other = Module.open(kmdata)  # a second process's view of the same kmdata
    for attempt in range(1, MAX_PIN_FAILURES + 1):
        instance = module if attempt % 2 else other
        with pytest.raises(AuthenticationFailed, match="wrong user PIN"):
            instance.login(token, "user", b"wrong")
        assert Module.open(kmdata).token_info(token).user_failures == attempt
    info = other.token_info(token)
    assert info.user_locked and not info.so_locked
    with pytest.raises(CardLocked):
        module.login(token, "user", USER_PIN)  # even the right PIN
    # The SO unlocks by setting a new user PIN (C_InitPIN).
    so = other.login(token, "so", SO_PIN)
    other.init_user_pin(token, so, b"fresh-pin")
    assert not module.token_info(token).user_locked
    module.login(token, "user", b"fresh-pin")


def test_success_resets_counter(module: Module, token: str) -> None:
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            module.login(token, "user", b"nope")
    assert module.token_info(token).user_failures == 3
    module.login(token, "user", USER_PIN)
    assert module.token_info(token).user_failures == 0


def test_so_lockout(module: Module, token: str) -> None:
    for _ in range(MAX_PIN_FAILURES):
        with pytest.raises(AuthenticationFailed):
            module.login(token, "so", b"bad-so")
    assert module.token_info(token).so_locked
    with pytest.raises(CardLocked):
        module.init_token("again", SO_PIN, token)


def test_set_pin(module: Module, token: str) -> None:
    with pytest.raises(AuthenticationFailed):
        module.set_pin(token, "user", b"wrong-old", b"new-pin")
    assert module.token_info(token).user_failures == 1
    auth = module.set_pin(token, "user", USER_PIN, b"new-pin")
    assert auth.user == "user"
    with pytest.raises(AuthenticationFailed):
        module.login(token, "user", USER_PIN)
    module.login(token, "user", b"new-pin")
    module.set_pin(token, "so", SO_PIN, b"new-so")
    module.login(token, "so", b"new-so")


def test_token_protected_key_needs_auth(kmdata: Path, module: Module, token: str) -> None:
    auth = module.login(token, "user", USER_PIN)
    private = Key(keygen.generate_secret("AES", 32), Acl(()), protection="token", token=token)
    public = Key(keygen.generate_ec().public(), Acl(()), token=token)
    with pytest.raises(AuthenticationFailed):
        module.store_key(private)
    module.store_key(private, auth)
    module.store_key(public)
    fresh = Module.open(kmdata)
    keys, problems = fresh.load_keys(token)
    assert [k.ident for k in keys] == [public.ident] and problems == []
    with pytest.raises(AuthenticationFailed, match="log in first"):
        fresh.load_key_file(private.file_path)
    login = fresh.login(token, "user", USER_PIN)
    keys, _ = fresh.load_keys(token, login)
    assert {k.ident for k in keys} == {public.ident, private.ident}
    loaded = fresh.load_key_file(private.file_path, login)
    assert loaded.material.value == private.material.value
    # Once cached, a logged-out load still does not hand the private key out.
    assert [k.ident for k in fresh.load_keys(token)[0]] == [public.ident]


def test_token_key_sealed_under_logical_key(tmp_path: Path, module: Module, token: str) -> None:
    """The world alone cannot open a token-protected blob: with the wrong token's login it fails."""
    auth = module.login(token, "user", USER_PIN)
    key = Key(keygen.generate_secret("AES", 32), Acl(()), protection="token", token=token)
    module.store_key(key, auth)
    second = module.init_token("second", SO_PIN)
    so2 = module.login(second.hash, "so", SO_PIN)
    with pytest.raises(AuthenticationFailed, match="not the logged-in one"):
        module.load_key_file(key.file_path, so2)


def test_token_blob_does_not_decrypt_under_another_tokens_key(module: Module, token: str) -> None:
    """The refusal is cryptographic, not only the owner check above: the blob's material is sealed
    under a key derived from its token's logical key, and neither another token's blob key nor the
    module key opens it (the AEAD tag fails), even with the header naming the other token."""
    auth = module.login(token, "user", USER_PIN)
    key = Key(keygen.generate_secret("AES", 32), Acl(()), protection="token", token=token)
    module.store_key(key, auth)
    second = module.init_token("second", SO_PIN)
    module.init_user_pin(second.hash, module.login(second.hash, "so", SO_PIN), USER_PIN)
    other = module.login(second.hash, "user", USER_PIN)
    raw = blobs.parse(key.file_path.read_bytes(), "blob")
    own_key, other_key = module._tokens.blob_key(auth), module._tokens.blob_key(other)
    assert own_key != other_key
    assert blobs.decode(raw, own_key, "blob").material.value == key.material.value  # the control
    for wrong in (other_key, module._module_blob_key):
        with pytest.raises(BlobInvalid, match="authentication failed"):
            blobs.decode(raw, wrong, "blob")
    # The header rewritten to name the other token (what the owner check reads): still refused.
    header = json.loads(raw.aad[blobs._PREFIX.size:])
    forged = blobs.canonical_json({**header, "token": second.hash})
    aad = blobs._PREFIX.pack(blobs.MAGIC, blobs.FORMAT_VERSION, len(forged)) + forged
    renamed = blobs.parse(aad + raw.sealed, "blob")
    assert renamed.header.token == second.hash
    with pytest.raises(BlobInvalid, match="authentication failed"):
        blobs.decode(renamed, other_key, "blob")


def test_reinit_destroys_objects_and_keeps_hash(kmdata: Path, module: Module, token: str) -> None:
    auth = module.login(token, "user", USER_PIN)
    key = Key(keygen.generate_secret("AES", 16), Acl(()), protection="token", token=token)
    module.store_key(key, auth)
    module.store_key(Key(None, Acl(()), token=token, appdata=b"cert"))
    with pytest.raises(AuthenticationFailed):
        module.init_token("renamed", b"not-the-so-pin", token)
    assert module.load_keys(token, auth)[0]  # a wrong SO PIN destroys nothing
    info = module.init_token("renamed", SO_PIN, token)
    assert (info.hash, info.label, info.user_pin_set) == (token, "renamed", False)
    assert list(module.local.glob(f"key_pkcs11_uc{token}-*")) == []
    assert Module.open(kmdata).load_keys(token) == ([], [])
    # The old login is stale: it may not write into the re-initialised token.
    with pytest.raises(AuthenticationFailed, match="stale"):
        module.store_key(Key(keygen.generate_secret("AES", 16), Acl(()), protection="token", token=token), auth)
    keys, problems = module.load_keys(token, auth)
    assert keys == [] and "stale" in problems[0]
    with pytest.raises(PinNotInitialized):
        module.login(token, "user", USER_PIN)


def test_delete_token(module: Module, token: str) -> None:
    module.store_key(Key(keygen.generate_ec().public(), Acl(()), token=token))
    with pytest.raises(AuthenticationFailed):
        module.delete_token(token, module.login(token, "user", USER_PIN))
    module.delete_token(token, module.login(token, "so", SO_PIN))
    assert module.list_tokens() == []
    assert list(module.local.glob("key_*")) == []
    with pytest.raises(TokenNotFound):
        module.login(token, "so", SO_PIN)


def test_edited_token_file_refused(module: Module, token: str) -> None:
    path = module.local / f"softcard_{token}"
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            module.login(token, "user", b"bad")
    path.write_bytes(path.read_bytes().replace(b'"user_failures":2', b'"user_failures":0'))
    with pytest.raises(BlobInvalid, match="authentication failed"):
        module.login(token, "user", USER_PIN)
    assert module.list_tokens() == []  # skipped, not fatal


def test_token_file_from_another_world_refused(tmp_path: Path, module: Module, token: str) -> None:
    other = Module.open(tmp_path / "elsewhere")
    (other.local / f"softcard_{token}").write_bytes((module.local / f"softcard_{token}").read_bytes())
    with pytest.raises(BlobInvalid, match="another world"):
        other.login(token, "so", SO_PIN)


def test_unknown_token(module: Module) -> None:
    with pytest.raises(TokenNotFound):
        module.login("0" * 40, "so", SO_PIN)
    with pytest.raises(TokenNotFound):
        module.init_token("x", SO_PIN, "f" * 40)


def test_tokens_made_in_one_second_list_in_creation_order(module: Module) -> None:
    """Slot numbers follow the tokens' creation order in every process (pkcs11_shim/slots.py sorts by
    `created`, then hash): tokens made within one second must not fall back to their random hashes."""
    labels = [f"order-{i}" for i in range(6)]
    for label in labels:
        module.init_token(label, SO_PIN)
    listed = sorted(module.list_tokens(), key=lambda t: (t.created, t.hash))
    assert [t.label for t in listed] == labels
    assert len({t.created for t in listed}) == len(labels)
