"""Several threads wrapping and unwrapping at once, each in its own session, under wrapping keys
that are shared token objects: every result is checked exactly, against RFC 3394 §4.6 and against
`cryptography` doing the other half (ARCHITECTURE.md: every C entry point may be called from many
threads at once, also with NULL C_Initialize arguments, which is what python-pkcs11 passes).

The wrap and unwrap paths keep per-session caches (the checks a wrap passed, the two-call pending
result, the unwrap template) and take no library-wide lock across the primitive, so a result
leaking between sessions, or a cache entry made for another thread's handles, shows up here as a
wrong byte string, not as a timing."""

from __future__ import annotations

import os
import sys
import threading
import traceback
from pathlib import Path

from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors"))
import p11raw  # noqa: E402
from pkcs11_shim import constants  # noqa: E402

CKM_RSA_AES_KEY_WRAP = p11raw.mechanism(constants.CKM_RSA_AES_KEY_WRAP, "RSA_AES_KEY_WRAP")
THREADS = 4
ROUNDS = 40

# RFC 3394 §4.6: 256 bits of key data with a 256-bit KEK.
RFC3394_KEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
RFC3394_DATA = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
RFC3394_WRAPPED = bytes.fromhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")

OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _be(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def _rsa_aes_open(private: rsa.RSAPrivateKey, wrapped: bytes) -> bytes:
    """PKCS#11 3.0 §2.1.21 by hand: k bytes of OAEP holding the temporary AES key, then KWP."""
    k = private.key_size // 8
    return keywrap.aes_key_unwrap_with_padding(private.decrypt(wrapped[:k], OAEP_SHA256), wrapped[k:])


def _rsa_aes_seal(public: rsa.RSAPublicKey, value: bytes) -> bytes:
    temporary = os.urandom(32)
    return public.encrypt(temporary, OAEP_SHA256) + keywrap.aes_key_wrap_with_padding(temporary, value)


def test_threads_wrap_and_unwrap_exact_results(token) -> None:
    private = rsa.generate_private_key(65537, 2048)
    numbers = private.private_numbers()
    param = p11raw.rsa_aes_key_wrap(256, constants.Mechanism.SHA256, constants.MGF.SHA256)
    tag = os.urandom(4).hex()
    errors: list[str] = []
    done = [0] * THREADS
    with token.open(user_pin=USER_PIN, rw=True) as admin:
        # The shared wrapping keys are token objects: every thread's session finds the same ones.
        shared = [
            admin.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: True,
                Attribute.PRIVATE: True, Attribute.LABEL: f"thr-kek-{tag}", Attribute.VALUE: RFC3394_KEK,
                Attribute.WRAP: True, Attribute.UNWRAP: True}),
            admin.create_object({
                Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: True,
                Attribute.LABEL: f"thr-rsa-{tag}", Attribute.MODULUS: _be(numbers.public_numbers.n),
                Attribute.PUBLIC_EXPONENT: _be(numbers.public_numbers.e), Attribute.WRAP: True}),
            admin.create_object({
                Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: True,
                Attribute.PRIVATE: True, Attribute.LABEL: f"thr-rsa-{tag}", Attribute.UNWRAP: True,
                Attribute.MODULUS: _be(numbers.public_numbers.n),
                Attribute.PUBLIC_EXPONENT: _be(numbers.public_numbers.e),
                Attribute.PRIVATE_EXPONENT: _be(numbers.d), Attribute.PRIME_1: _be(numbers.p),
                Attribute.PRIME_2: _be(numbers.q), Attribute.EXPONENT_1: _be(numbers.dmp1),
                Attribute.EXPONENT_2: _be(numbers.dmq1), Attribute.COEFFICIENT: _be(numbers.iqmp)}),
        ]
        start = threading.Barrier(THREADS)

        def worker(index: int) -> None:
            try:
                with token.open(rw=True) as session:  # the application's login covers it (§5.6)
                    kek = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=f"thr-kek-{tag}")
                    public = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label=f"thr-rsa-{tag}")
                    unwrapper = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=f"thr-rsa-{tag}")
                    rfc_target = session.create_object({
                        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.VALUE: RFC3394_DATA, Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False})
                    own_value = bytes([index]) * 32  # each thread's own target: a mix-up shows
                    own_target = session.create_object({
                        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.VALUE: own_value, Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False})
                    start.wait(timeout=120)
                    for n in range(ROUNDS):
                        assert kek.wrap_key(rfc_target, mechanism=Mechanism.AES_KEY_WRAP) == RFC3394_WRAPPED
                        assert keywrap.aes_key_unwrap(RFC3394_KEK, kek.wrap_key(
                            own_target, mechanism=Mechanism.AES_KEY_WRAP)) == own_value

                        wrapped = public.wrap_key(own_target, mechanism=CKM_RSA_AES_KEY_WRAP, mechanism_param=param)
                        assert _rsa_aes_open(private, wrapped) == own_value, "RSA-AES wrap of this thread's key"

                        fresh = os.urandom(32)
                        for unwrapping, blob, mechanism, mech_param in (
                                (unwrapper, _rsa_aes_seal(private.public_key(), fresh), CKM_RSA_AES_KEY_WRAP, param),
                                (kek, keywrap.aes_key_wrap(RFC3394_KEK, fresh), Mechanism.AES_KEY_WRAP, None)):
                            key = unwrapping.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=mechanism,
                                                        mechanism_param=mech_param, store=False,
                                                        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
                            assert key[Attribute.VALUE] == fresh, f"unwrap under {mechanism!r}, round {n}"
                            key.destroy()
                        done[index] += 1
            except BaseException:  # noqa: BLE001 - reported by the main thread
                errors.append(f"thread {index}:\n{traceback.format_exc()}")
                start.abort()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        try:
            assert not any(t.is_alive() for t in threads), "a thread did not finish (deadlock?)"
            assert not errors, "\n".join(errors)
            assert done == [ROUNDS] * THREADS
        finally:
            for obj in shared:
                obj.destroy()
