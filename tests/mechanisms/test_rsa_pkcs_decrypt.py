"""CKM_RSA_PKCS decryption of a malformed PKCS#1 v1.5 block: implicit rejection (docs/mechanisms.md).

The answer: CKR_OK with a synthetic message (`cryptography`'s OpenSSL derives it from the key and the
ciphertext, so the same ciphertext always gives the same bytes), never CKR_ENCRYPTED_DATA_INVALID.
An error code for bad padding is the Bleichenbacher/Marvin oracle; with implicit rejection a caller
learns nothing from the answer, and there is no second code path whose timing could tell.

The timing property is shown two ways, neither a tight timed assertion:
- the same Python code runs for both classes: the sequence of Python functions called during one
  decryption (sys.setprofile) is identical for a valid and a malformed block, so our layer has no
  padding-dependent branch, and the constant-time part is the primitive's;
- a generous statistical bound: 150 decryptions of each class, interleaved so machine load hits both
  alike; the medians must agree within a factor of 1.5 (a padding oracle that answers early, or
  retries, moves it by far more than the noise of a shared machine).
"""

from __future__ import annotations

import statistics
import sys
import time

import pytest

from emulator.crypto import rsa as rsa_crypto
from pkcs11_shim.constants import Mechanism
from pkcs11_shim.mechanisms.registry import REGISTRY

MESSAGE = b"a 32-byte session key, say......"


def _block(k: int, valid: bool) -> bytes:
    """EM = 0x00 || 0x02 || PS || 0x00 || M (RFC 8017 §7.2.1); malformed: no zero separator."""
    ps_len = k - 3 - len(MESSAGE)
    ps = bytes((i % 255) + 1 for i in range(ps_len))  # non-zero padding bytes
    if valid:
        return b"\x00\x02" + ps + b"\x00" + MESSAGE
    return b"\x00\x02" + ps + b"\x01" + MESSAGE  # every byte after 0x02 non-zero: bad padding


@pytest.fixture(scope="module")
def ciphertexts(keys: dict) -> tuple:
    key = keys["rsa2048"]
    k = rsa_crypto.modulus_len(key)
    valid = rsa_crypto.raw_public(key.public(), _block(k, True))
    malformed = rsa_crypto.raw_public(key.public(), _block(k, False))
    return key, valid, malformed


def _decrypt(key, ciphertext: bytes) -> bytes:
    return REGISTRY.get(Mechanism.RSA_PKCS).decrypt(key, None).oneshot(ciphertext)


def test_malformed_block_gives_a_deterministic_synthetic_message(ciphertexts) -> None:
    key, valid, malformed = ciphertexts
    assert _decrypt(key, valid) == MESSAGE
    first = _decrypt(key, malformed)  # CKR_OK: no exception
    assert first != MESSAGE and len(first) <= rsa_crypto.modulus_len(key) - 11
    assert _decrypt(key, malformed) == first  # implicit rejection is deterministic, not random


def _calls(fn) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def profile(frame, event, arg) -> None:  # noqa: ANN001
        if event == "call":
            seen.append((frame.f_code.co_filename, frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def test_the_same_code_runs_for_valid_and_malformed_blocks(ciphertexts) -> None:
    key, valid, malformed = ciphertexts
    _decrypt(key, valid)  # warm caches (the padding object, key checks) before comparing
    assert _calls(lambda: _decrypt(key, valid)) == _calls(lambda: _decrypt(key, malformed))


def test_timing_does_not_depend_on_the_padding(ciphertexts) -> None:
    key, valid, malformed = ciphertexts
    samples: dict[bool, list[float]] = {True: [], False: []}
    for i in range(300):
        is_valid = i % 2 == 0  # interleaved: both classes see the same load
        ciphertext = valid if is_valid else malformed
        start = time.perf_counter()
        _decrypt(key, ciphertext)
        samples[is_valid].append(time.perf_counter() - start)
    ratio = statistics.median(samples[False]) / statistics.median(samples[True])
    assert 1 / 1.5 < ratio < 1.5, ratio

