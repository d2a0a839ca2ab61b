"""CKA_CHECK_VALUE of an unwrapped session key is computed when first needed (issue 6 hot path):
it must read back, match, copy and persist exactly as an eagerly stored one would."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from p11env import USER_PIN
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

KWP = Mechanism.AES_KEY_WRAP_KWP  # the same unwrap path as CKM_RSA_AES_KEY_WRAP's second half
READABLE = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}


def _kcv(value: bytes) -> bytes:
    """PKCS#11 3.0 §4.10: the first 3 bytes of the ECB encryption of one zero block."""
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3]


@pytest.fixture
def unwrapped(token):
    """(session, the unwrapped key's factory, the wrapped target's value)."""
    with token.open(user_pin=USER_PIN, rw=True) as session:
        kek = session.generate_key(KeyType.AES, 256, store=False)
        target = session.generate_key(KeyType.AES, 256, store=False, template=READABLE)
        value = target[Attribute.VALUE]
        blob = kek.wrap_key(target, mechanism=KWP)

        def make(label: str, store: bool = False):
            return kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=KWP,
                                  label=label, store=store, template=READABLE)
        yield session, make, value


def _stored(session, key) -> dict:
    from pkcs11_shim import library

    return library.state().sessions.get(session.handle).object(key.handle)._attrs


def test_read_after_other_attributes(unwrapped) -> None:
    session, make, value = unwrapped
    key = make("kcv-read")
    assert key[Attribute.VALUE_LEN] == 32 and key[Attribute.LABEL] == "kcv-read"
    assert Attribute.CHECK_VALUE not in _stored(session, key)  # deferred: not computed by those reads
    assert key[Attribute.VALUE] == value
    assert key[Attribute.CHECK_VALUE] == _kcv(value)
    assert _stored(session, key)[Attribute.CHECK_VALUE] == _kcv(value)  # computed once, then stored


def test_find_by_check_value_matches_an_unread_one(unwrapped) -> None:
    session, make, value = unwrapped
    key = make("kcv-find")
    found = list(session.get_objects({Attribute.LABEL: "kcv-find", Attribute.CHECK_VALUE: _kcv(value)}))
    assert [k.handle for k in found] == [key.handle]
    assert not list(session.get_objects({Attribute.LABEL: "kcv-find", Attribute.CHECK_VALUE: b"\0\0\0"}))


def test_copy_of_an_unread_one_carries_it(unwrapped) -> None:
    _session, make, value = unwrapped
    copy = make("kcv-copy").copy({Attribute.LABEL: "kcv-copied"})
    assert copy[Attribute.CHECK_VALUE] == _kcv(value)


def test_destroy_of_an_unread_one(unwrapped) -> None:
    session, make, _value = unwrapped
    make("kcv-destroy").destroy()
    assert not list(session.get_objects({Attribute.LABEL: "kcv-destroy"}))


def test_token_object_is_written_with_it(unwrapped) -> None:
    """A token object's blob is written at once: its appdata must already hold the value."""
    from pkcs11_shim import library
    from pkcs11_shim.attributes import codecs

    session, make, value = unwrapped
    key = make("kcv-token", store=True)
    try:
        obj = library.state().sessions.get(session.handle).object(key.handle)
        assert codecs.deserialize(obj.key.appdata)[Attribute.CHECK_VALUE] == _kcv(value)
        assert key[Attribute.CHECK_VALUE] == _kcv(value)
    finally:
        key.destroy()
