"""Key-pair generation, durable token key creation, session key generation, random numbers and
signing, one thread; opencryptoki's soft token as a second C peer where it has the mechanism."""

from __future__ import annotations

import os
import tempfile

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

from backends import SMOKE, opencryptoki_session_or_skip
from conftest import measure
from report import record

IMPLS = ("ours", "softhsm", "opencryptoki", "cryptography")


def _session(sessions: dict, impl: str):
    return opencryptoki_session_or_skip(sessions) if impl == "opencryptoki" else sessions.get(impl)


def _or_skip(impl: str, call):
    """call(): setting a case up, or its one call before timing. A peer without the mechanism
    (opencryptoki 3.8's soft token has no EC keys) is a skipped cell, not a failed run."""
    try:
        return call()
    except pkcs11.exceptions.MechanismInvalid:
        if impl != "opencryptoki":
            raise
        pytest.skip("opencryptoki's soft token does not offer this mechanism")
P256 = encode_named_curve_parameters("secp256r1")
DIGEST = bytes(range(32))
MESSAGE = b"the quick brown fox jumps over the lazy dog" * 4


def _keypair_case(impl: str, session, kind: str):
    if impl == "cryptography":
        if kind == "rsa":
            return lambda: rsa.generate_private_key(65537, 2048)
        return lambda: ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        def run() -> None:
            pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=False)
            pub.destroy()
            priv.destroy()
        return run
    params = session.create_domain_parameters(KeyType.EC, {0x180: P256}, local=True)  # CKA_EC_PARAMS

    def run() -> None:
        pub, priv = params.generate_keypair(store=False)
        pub.destroy()
        priv.destroy()
    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_keypair_generation(benchmark, sessions, impl: str, kind: str) -> None:
    fn = _or_skip(impl, lambda: _keypair_case(impl, _session(sessions, impl), kind))
    _or_skip(impl, fn)
    seconds = measure(benchmark, fn, rounds=None if kind == "ec" else (2 if SMOKE else 12))
    record("C_GenerateKeyPair RSA-2048" if kind == "rsa" else "C_GenerateKeyPair P-256", impl, 1 / seconds,
           group="keygen")


def _durable_write(directory: str, data: bytes) -> None:
    """What 'durable on return' costs at least: temp file, fsync, rename, fsync of the directory."""
    fd, tmp = tempfile.mkstemp(dir=directory)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, tmp + ".key")
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@pytest.mark.parametrize("impl", IMPLS)
def test_token_key_creation(benchmark, sessions, impl: str, tmp_path) -> None:
    """C_GenerateKey of a token AES-256 key; every key is on disk (fsync'd) when the call returns.
    The cryptography figure is a random key plus one durable file write."""
    if impl == "cryptography":
        def fn() -> None:
            _durable_write(str(tmp_path), os.urandom(32))
    else:
        session = _session(sessions, impl)

        def fn() -> None:
            session.generate_key(KeyType.AES, 256, store=True, label="durable")
    seconds = measure(benchmark, fn)
    # Neither C peer's token library calls fsync or fdatasync at all (not among their imported
    # symbols): their keys are on disk only when the kernel writes them back.
    record("C_GenerateKey token AES-256 (durable)", impl, 1 / seconds, group="keygen",
           note="no fsync" if impl in ("softhsm", "opencryptoki") else "")


def _sign_case(impl: str, session, kind: str):
    if impl == "cryptography":
        if kind == "rsa":
            key = rsa.generate_private_key(65537, 2048)
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return lambda: key.sign(MESSAGE, pss, hashes.SHA256())
        key = ec.generate_private_key(ec.SECP256R1())
        return lambda: key.sign(DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    if kind == "rsa":
        _pub, priv = session.generate_keypair(KeyType.RSA, 2048, store=False, label="sign-rsa")
        param = (Mechanism.SHA256, 2, 32)  # CKG_MGF1_SHA256, salt 32
        return lambda: priv.sign(MESSAGE, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=param)
    params = session.create_domain_parameters(KeyType.EC, {0x180: P256}, local=True)
    _pub, priv = params.generate_keypair(store=False, label="sign-ec")
    return lambda: priv.sign(DIGEST, mechanism=Mechanism.ECDSA)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_sign(benchmark, sessions, impl: str, kind: str) -> None:
    fn = _or_skip(impl, lambda: _sign_case(impl, _session(sessions, impl), kind))
    _or_skip(impl, fn)
    seconds = measure(benchmark, fn)
    record("C_Sign SHA256-RSA-PSS RSA-2048" if kind == "rsa" else "C_Sign ECDSA P-256 (prehashed)", impl,
           1 / seconds, group="sign")


@pytest.mark.parametrize("impl", IMPLS)
def test_session_key_generation(benchmark, sessions, impl: str) -> None:
    """C_GenerateKey of a session AES-256 key, destroyed again (the cryptography figure: 32 random
    bytes for the key)."""
    if impl == "cryptography":
        def fn() -> None:
            os.urandom(32)
    else:
        session = _session(sessions, impl)

        def fn() -> None:
            session.generate_key(KeyType.AES, 256, store=False).destroy()
    _or_skip(impl, fn)
    seconds = measure(benchmark, fn)
    record("C_GenerateKey session AES-256 (+ C_DestroyObject)", impl, 1 / seconds, group="keygen")


@pytest.mark.parametrize("impl", IMPLS)
def test_generate_random(benchmark, sessions, impl: str) -> None:
    """C_GenerateRandom of 32 bytes (the cryptography figure: os.urandom, which its keys use)."""
    if impl == "cryptography":
        def fn() -> bytes:
            return os.urandom(32)
    else:
        session = _session(sessions, impl)

        def fn() -> bytes:
            return session.generate_random(256)  # python-pkcs11 takes bits
    assert len(fn()) == 32
    seconds = measure(benchmark, fn)
    record("C_GenerateRandom 32 bytes", impl, 1 / seconds, group="random")
