"""Concurrency requirements: many threads on one token, and other processes' changes.

ARCHITECTURE.md: "Every C entry point may be called from many threads at once, also when the host
passed NULL to C_Initialize (python-pkcs11 does)", and "A process ... notices changes made by other
processes" without C_Finalize/C_Initialize (SoftHSM users' complaint, PowerDNS #2823).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections import Counter

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from p11env import USER_PIN, init_token, pkcs11_tool

THREADS = 8
DURATION = float(os.environ.get("SOFTSHIELD_CONCURRENCY_SECONDS", "5"))
#: A thread that has not finished this long after the deadline is taken to be deadlocked.
GRACE = 120.0


def _aes_cbc_pad(key: bytes, iv: bytes, data: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def test_threads_share_one_token(token) -> None:
    """8 threads, a session each on one token: keygen (session and token), AES, RSA, search."""
    tag = uuid.uuid4().hex[:8]
    rsa_label = f"shared-rsa-{tag}"
    known_value = bytes(range(32))
    known_label = f"known-aes-{tag}"
    errors: list[str] = []
    rounds: Counter[int] = Counter()
    token_labels: dict[int, list[str]] = {i: [] for i in range(THREADS)}

    # Login is per application and token (§5.6.8): this session keeps every thread's session in the
    # "user functions" state; the threads' own sessions open without a PIN.
    with token.open(user_pin=USER_PIN, rw=True) as admin:
        public, _private = admin.generate_keypair(KeyType.RSA, 2048, store=True, label=rsa_label)
        numbers = RSAPublicNumbers(int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
                                   int.from_bytes(public[Attribute.MODULUS], "big"))
        verifier = numbers.public_key()
        admin.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: known_value, Attribute.LABEL: known_label, Attribute.TOKEN: False,
            Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
        })

        start = threading.Barrier(THREADS + 1)

        def worker(index: int) -> None:
            try:
                with token.open(rw=True) as session:
                    signer = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=rsa_label)
                    known = session.get_key(object_class=ObjectClass.SECRET_KEY, label=known_label)
                    start.wait(timeout=120)
                    deadline = time.monotonic() + DURATION
                    n = 0
                    while n == 0 or time.monotonic() < deadline:
                        on_token = n % 4 == 0
                        label = f"conc-{tag}-{index}-{n}-{'t' if on_token else 's'}"
                        key = session.generate_key(KeyType.AES, 256, store=on_token, label=label)
                        if on_token:
                            token_labels[index].append(label)
                        data = os.urandom(64 + (n * 37) % 900)
                        iv = session.generate_random(128)
                        ciphertext = key.encrypt(data, mechanism_param=iv)
                        assert key.decrypt(ciphertext, mechanism_param=iv) == data, "AES round trip"
                        # The shared, known key against an independent implementation.
                        assert known.encrypt(data, mechanism_param=iv) == _aes_cbc_pad(known_value, iv, data)
                        message = f"{tag}:{index}:{n}".encode()
                        signature = signer.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS)
                        verifier.verify(signature, message, asym_padding.PKCS1v15(), hashes.SHA256())
                        found = list(session.get_objects({Attribute.LABEL: label}))
                        assert len(found) == 1, f"{label}: found {len(found)} objects"
                        assert len(list(session.get_objects({Attribute.LABEL: rsa_label}))) == 2
                        if not on_token:
                            key.destroy()
                        n += 1
                        rounds[index] = n
            except BaseException:  # noqa: BLE001 - reported by the main thread
                errors.append(f"thread {index}:\n{traceback.format_exc()}")
                try:
                    start.abort()
                except threading.BrokenBarrierError:
                    pass

        threads = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"p11-{i}")
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        try:
            start.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass
        for thread in threads:
            thread.join(timeout=DURATION + GRACE)
        stuck = [t.name for t in threads if t.is_alive()]
        assert not stuck, f"threads still running {GRACE:.0f}s after the deadline (deadlock?): {stuck}"
        assert not errors, "\n".join(errors)
        assert all(rounds[i] >= 1 for i in range(THREADS)), f"rounds per thread: {dict(rounds)}"

        # Every token key every thread made is there exactly once, seen from another session.
        for index, labels in token_labels.items():
            for label in labels:
                found = list(admin.get_objects({Attribute.LABEL: label, Attribute.TOKEN: True}))
                assert len(found) == 1, f"{label}: {len(found)} token objects"
                found[0].destroy()
        for obj in admin.get_objects({Attribute.LABEL: rsa_label}):
            obj.destroy()
    print(f"rounds per thread in {DURATION:.0f}s: {dict(sorted(rounds.items()))}")


# ---- other processes ------------------------------------------------------------------------
MAKE_KEY_WITH_PYTHON_PKCS11 = textwrap.dedent(
    """
    import sys
    import pkcs11
    from pkcs11 import KeyType
    so, token_label, pin, label = sys.argv[1:5]
    token = pkcs11.lib(so).get_token(token_label=token_label)
    with token.open(user_pin=pin, rw=True) as session:
        key = session.generate_key(KeyType.AES, 128, store=True, label=label)
        print(key.encrypt(b"from another process", mechanism_param=bytes(16)).hex())
    """
)


def _make_key_in_other_process(maker: str, so_path: str, token_label: str, label: str) -> bytes | None:
    """A token AES key made by another process; returns a ciphertext under it when the maker can."""
    if maker == "python-pkcs11":
        result = subprocess.run([sys.executable, "-c", MAKE_KEY_WITH_PYTHON_PKCS11, so_path, token_label,
                                 USER_PIN, label], capture_output=True, text=True, timeout=180,
                                env=dict(os.environ))
        assert result.returncode == 0, f"the other process failed:\n{result.stdout}\n{result.stderr}"
        return bytes.fromhex(result.stdout.strip().splitlines()[-1])
    pkcs11_tool("--token-label", token_label, "--login", "--pin", USER_PIN, "--keygen",
                "--key-type", "aes:16", "--label", label, "--id", "7e57")
    return None


@pytest.mark.parametrize("maker", ["python-pkcs11", "pkcs11-tool"])
def test_token_key_from_another_process_is_found(token, token_label: str, so_path: str,
                                                 maker: str) -> None:
    """C_FindObjects sees a token key another process made, with no C_Finalize/C_Initialize here."""
    if maker == "pkcs11-tool" and shutil.which("pkcs11-tool") is None:
        pytest.fail("pkcs11-tool (opensc) is not installed")
    label = f"xproc-{maker}-{uuid.uuid4().hex[:8]}"
    with token.open(user_pin=USER_PIN, rw=True) as session:
        assert list(session.get_objects({Attribute.LABEL: label})) == []
        ciphertext = _make_key_in_other_process(maker, so_path, token_label, label)

        found = list(session.get_objects({Attribute.LABEL: label}))  # the same session
        assert len(found) == 1, f"found {len(found)} objects labelled {label}"
        key = found[0]
        assert key[Attribute.TOKEN] is True and key[Attribute.KEY_TYPE] == KeyType.AES
        if ciphertext is not None:
            assert key.decrypt(ciphertext, mechanism_param=bytes(16)) == b"from another process"
        else:
            iv = bytes(range(16))
            assert key.decrypt(key.encrypt(b"round trip", mechanism_param=iv), mechanism_param=iv) == b"round trip"

        with token.open(rw=True) as other:  # and a session opened afterwards
            assert len(list(other.get_objects({Attribute.LABEL: label}))) == 1

        # The other direction: another process deletes it, and it is gone here too.
        pkcs11_tool("--token-label", token_label, "--login", "--pin", USER_PIN, "--delete-object",
                    "--type", "secrkey", "--label", label)
        assert list(session.get_objects({Attribute.LABEL: label})) == []


def test_token_from_another_process_appears_in_the_slot_list(lib) -> None:
    """C_GetSlotList (length query) shows a token another process initialised; it can be used."""
    lib.get_slots(token_present=True)  # this process has looked at the slot list before
    label = init_token()  # pkcs11-tool, in another process
    slots = lib.get_slots(token_present=True)
    labels = {}
    for slot in slots:
        try:
            labels[slot.get_token().label] = slot.slot_id
        except pkcs11.PKCS11Error:
            continue
    assert label in labels, f"token {label} not in {sorted(labels)}"
    token = lib.get_token(token_label=label)
    with token.open(user_pin=USER_PIN, rw=True) as session:
        key = session.generate_key(KeyType.AES, 128, store=False, label="fresh")
        iv = bytes(16)
        assert key.decrypt(key.encrypt(b"new token", mechanism_param=iv), mechanism_param=iv) == b"new token"
