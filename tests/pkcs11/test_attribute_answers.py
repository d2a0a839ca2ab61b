"""C_GetAttributeValue answered in C for the key C_UnwrapKey or C_GenerateKey just made (native/answers.h,
pkcs11_shim/abi/answers.py): the same bytes, lengths and return codes as Python's answer, and never
an answer that something done since has made stale.

Python's handler is wrapped with a counter (the library runs in this process), so each test also
shows which side answered. C_GetAttributeValue is called with ctypes, one call at a time, on the
session python-pkcs11 opened (python-pkcs11 makes its own reads right after each unwrap)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import keywrap
from p11env import KEK, USER_PIN, in_forked_child
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from p11ctypes import CK_ATTRIBUTE  # noqa: E402
from pkcs11_shim.abi import answers  # noqa: E402
from pkcs11_shim.constants import CK_UNAVAILABLE_INFORMATION, CKR  # noqa: E402

#: What python-pkcs11's make_object reads, and attributes the C side never answers.
MAKE_OBJECT = [Attribute.CLASS, Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.VERIFY,
               Attribute.WRAP, Attribute.UNWRAP, Attribute.DERIVE, Attribute.ENCAPSULATE, Attribute.DECAPSULATE]
PYTHON_ONLY = [Attribute.CHECK_VALUE, Attribute.VALUE, Attribute.UNIQUE_ID, Attribute.VALUE_LEN]


@pytest.fixture
def python_calls(count_python_calls):
    """How many C_GetAttributeValue calls reached Python while the test ran."""
    return count_python_calls("C_GetAttributeValue")


def _unwrap(kek, template: dict | None = None):
    blob = keywrap.aes_key_wrap(KEK, bytes(range(100, 132)))
    return kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=Mechanism.AES_KEY_WRAP,
                          store=False, label="answered", template=template)


def _read(raw, session_handle: int, handle: int, types: list[int], sizes: list[int | None]) -> tuple[int, list]:
    """(rv, [(ulValueLen, value or None)]): sizes None asks for the length only."""
    template = (CK_ATTRIBUTE * len(types))()
    buffers = []
    for i, (atype, size) in enumerate(zip(types, sizes)):
        template[i].type = atype
        buf = ctypes.create_string_buffer(size) if size is not None else None
        buffers.append(buf)
        template[i].pValue = ctypes.cast(buf, ctypes.c_void_p) if buf is not None else None
        template[i].ulValueLen = size or 0
    rv = raw.C_GetAttributeValue(ctypes.c_ulong(session_handle), ctypes.c_ulong(handle), template,
                                 ctypes.c_ulong(len(types)))
    out = []
    for i, buf in enumerate(buffers):
        length = template[i].ulValueLen
        value = buf.raw[:length] if buf is not None and length != CK_UNAVAILABLE_INFORMATION else None
        out.append((length, value))
    return rv, out


def _touch(raw, session_handle: int) -> None:
    """Any entry point other than the three that keep answers: C_GetSessionInfo (changes nothing)."""
    info = (ctypes.c_ulong * 4)()
    assert raw.C_GetSessionInfo(ctypes.c_ulong(session_handle), info) == CKR.OK


def _answered_in_c_as_python_answers(raw, session, key, python_calls, sizes: str, made_by: str) -> tuple[int, list]:
    """Every ANSWERED attribute of the key just made, read once right after (answered in C) and once
    after another entry point ran (answered by Python): the same answer, each from its side."""
    types = [int(t) for t in answers.ANSWERED]
    size_of = {"lengths": None, "values": 64, "short": 0}[sizes]
    python_calls[0] = 0
    in_c = _read(raw, session.handle, key.handle, types, [size_of] * len(types))
    assert python_calls[0] == 0, f"C_GetAttributeValue went to Python right after {made_by}"
    _touch(raw, session.handle)
    in_python = _read(raw, session.handle, key.handle, types, [size_of] * len(types))
    assert python_calls[0] == 1
    assert in_c == in_python
    return in_c


@pytest.mark.parametrize("sizes", ["lengths", "values", "short"])
def test_the_answer_in_c_is_pythons(raw, session, kek, python_calls, sizes: str) -> None:
    key = _unwrap(kek)
    in_c = _answered_in_c_as_python_answers(raw, session, key, python_calls, sizes, "C_UnwrapKey")
    expected_rv = {"lengths": CKR.ATTRIBUTE_TYPE_INVALID, "values": CKR.ATTRIBUTE_TYPE_INVALID,
                   "short": CKR.ATTRIBUTE_TYPE_INVALID}[sizes]
    assert in_c[0] == expected_rv  # CKA_ENCAPSULATE/DECAPSULATE: an AES key has none (§5.7.5 order)
    key.destroy()


def test_short_buffer_alone_is_buffer_too_small(raw, session, kek, python_calls) -> None:
    key = _unwrap(kek)
    python_calls[0] = 0
    rv, out = _read(raw, session.handle, key.handle, [Attribute.CLASS, Attribute.LABEL], [8, 3])
    assert python_calls[0] == 0
    assert rv == CKR.BUFFER_TOO_SMALL
    assert out == [(8, bytes([4, 0, 0, 0, 0, 0, 0, 0])), (CK_UNAVAILABLE_INFORMATION, None)]
    key.destroy()


def test_python_answers_what_c_does_not_hold(raw, session, kek, python_calls) -> None:
    key = _unwrap(kek, {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    for atype in PYTHON_ONLY:
        python_calls[0] = 0
        rv, out = _read(raw, session.handle, key.handle, [Attribute.CLASS, atype], [8, 64])
        assert python_calls[0] == 1, f"0x{int(atype):x} must be answered by Python"
        assert rv == CKR.OK
    assert _read(raw, session.handle, key.handle, [Attribute.VALUE], [64])[1][0][1] == bytes(range(100, 132))
    key.destroy()


def test_python_pkcs11_reads_after_unwrap_stay_in_c(session, kek, python_calls) -> None:
    assert kek.key_type == KeyType.AES  # unwrap_key reads the unwrapping key's type once (Python)
    python_calls[0] = 0
    key = _unwrap(kek)  # python-pkcs11 reads MAKE_OBJECT twice inside unwrap_key
    assert python_calls[0] == 0
    assert key.object_class == ObjectClass.SECRET_KEY and key.label == "answered"
    key.destroy()


def test_a_changed_label_is_not_answered_from_before(raw, session, kek, python_calls) -> None:
    key = _unwrap(kek)
    key[Attribute.LABEL] = "renamed"
    python_calls[0] = 0
    assert _read(raw, session.handle, key.handle, [Attribute.LABEL], [64])[1] == [(7, b"renamed")]
    assert python_calls[0] == 1
    key.destroy()


def test_a_destroyed_key_is_not_answered(raw, session, kek, python_calls) -> None:
    key = _unwrap(kek)
    handle = key.handle
    assert raw.C_DestroyObject(ctypes.c_ulong(session.handle), ctypes.c_ulong(handle)) == CKR.OK
    rv, _out = _read(raw, session.handle, handle, [Attribute.CLASS], [8])
    assert rv == CKR.OBJECT_HANDLE_INVALID


def test_another_session_gets_pythons_answer(raw, token, session, kek, python_calls) -> None:
    key = _unwrap(kek)
    with token.open() as other:
        python_calls[0] = 0
        assert _read(raw, other.handle, key.handle, [Attribute.LABEL], [64])[1] == [(8, b"answered")]
        assert python_calls[0] == 1
    key.destroy()


def test_logout_ends_the_answer_for_a_private_key(raw, session, python_calls) -> None:
    wrapping = session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: False,
        Attribute.PRIVATE: False, Attribute.VALUE: KEK, Attribute.UNWRAP: True})
    key = _unwrap(wrapping, {Attribute.PRIVATE: True})
    raw.C_Logout.restype = ctypes.c_ulong
    assert raw.C_Logout(ctypes.c_ulong(session.handle)) == CKR.OK
    python_calls[0] = 0
    rv, _out = _read(raw, session.handle, key.handle, [Attribute.CLASS], [8])
    assert python_calls[0] == 1
    assert rv == CKR.OBJECT_HANDLE_INVALID  # §5.6.10: private objects are gone with the login
    raw.C_Login.restype = ctypes.c_ulong
    pin = USER_PIN.encode()
    assert raw.C_Login(ctypes.c_ulong(session.handle), ctypes.c_ulong(1), pin, ctypes.c_ulong(len(pin))) == CKR.OK
    wrapping.destroy()


@pytest.mark.parametrize("fork", ["os.fork", "libc fork"])  # native/forks.h: both move the fork generation
def test_a_forked_child_is_not_answered(raw, session, kek, fork: str) -> None:
    key = _unwrap(kek)
    assert in_forked_child(fork, lambda: [_read(raw, session.handle, key.handle, [Attribute.CLASS], [8])[0]]) == \
        [CKR.CRYPTOKI_NOT_INITIALIZED]
    key.destroy()


def test_a_child_forked_while_another_thread_reads_answers_is_not_stuck(raw, session, kek) -> None:
    """A fork while another thread holds the answers' lock must not leave it held in the child
    (native/forks.h SS_FORK_SAFE_LOCK): the child's first C_GetAttributeValue would wait forever."""
    key = _unwrap(kek)
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            _read(raw, session.handle, key.handle, [Attribute.CLASS], [8])

    thread = threading.Thread(target=reader)
    thread.start()
    stuck = 0
    try:
        for _ in range(200):
            # os.fork, not libc's through ctypes: ctypes lets the reader hold the GIL across the
            # fork, which would leave the child stuck in Python itself before it calls us.
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _read(raw, session.handle, key.handle, [Attribute.CLASS], [8])
                os._exit(0)
            deadline = time.monotonic() + 5
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    stuck += 1
                    break
                time.sleep(0.001)
    finally:
        stop.set()
        thread.join()
    assert stuck == 0
    key.destroy()


@pytest.mark.parametrize("sizes", ["lengths", "values"])
def test_a_generated_key_is_answered_in_c_as_python_answers(raw, session, python_calls, sizes: str) -> None:
    key = session.generate_key(KeyType.AES, 256, store=False, label="generated")
    in_c = _answered_in_c_as_python_answers(raw, session, key, python_calls, sizes, "C_GenerateKey")
    types = [int(t) for t in answers.ANSWERED]
    label, local = in_c[1][types.index(int(Attribute.LABEL))], in_c[1][types.index(int(Attribute.LOCAL))]
    if sizes == "values":
        assert label == (len(b"generated"), b"generated")
        assert local == (1, b"\x01")  # generated on the token: CKA_LOCAL true
    else:
        assert label == (len(b"generated"), None) and local == (1, None)
    key.destroy()


def test_a_generated_token_key_is_left_to_python(raw, session, python_calls) -> None:
    """Another process may change a token object's blob: its attributes are never replayed."""
    key = session.generate_key(KeyType.AES, 256, store=True, label="generated-token")
    try:
        python_calls[0] = 0
        _read(raw, session.handle, key.handle, [int(Attribute.CLASS)], [None])
        assert python_calls[0] == 1
    finally:
        key.destroy()


def _ec_pair(session, store: bool = False):
    from pkcs11.util.ec import encode_named_curve_parameters

    params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(
        "secp256r1")}, local=True)
    return params.generate_keypair(store=store, label="pair")


@pytest.mark.parametrize("sizes", ["lengths", "values", "short"])
def test_both_halves_of_a_generated_pair_are_answered_in_c_as_python_answers(raw, session, python_calls,
                                                                            sizes: str) -> None:
    pub, priv = _ec_pair(session)
    types = [int(t) for t in answers.ANSWERED]
    size_of = {"lengths": None, "values": 64, "short": 0}[sizes]
    python_calls[0] = 0
    in_c = [_read(raw, session.handle, key.handle, types, [size_of] * len(types)) for key in (pub, priv, pub)]
    assert python_calls[0] == 0, "C_GetAttributeValue went to Python right after C_GenerateKeyPair"
    _touch(raw, session.handle)
    in_python = [_read(raw, session.handle, key.handle, types, [size_of] * len(types)) for key in (pub, priv)]
    assert python_calls[0] == 2
    assert in_c[:2] == in_python and in_c[2] == in_c[0]
    classes = [out[1][types.index(int(Attribute.CLASS))] for out in in_c[:2]]
    if sizes == "values":
        assert classes == [(8, (2).to_bytes(8, "little")), (8, (3).to_bytes(8, "little"))]  # CKO_PUBLIC/PRIVATE_KEY
    pub.destroy()
    priv.destroy()


def test_a_destroyed_half_is_not_answered(raw, session, python_calls) -> None:
    pub, priv = _ec_pair(session)
    handle = pub.handle
    pub.destroy()  # C_DestroyObject forgets the public half; the private half still answers in C
    python_calls[0] = 0
    rv, _out = _read(raw, session.handle, handle, [int(Attribute.CLASS)], [8])
    assert (rv, python_calls[0]) == (CKR.OBJECT_HANDLE_INVALID, 1)
    rv, out = _read(raw, session.handle, priv.handle, [int(Attribute.CLASS)], [8])
    assert (rv, out, python_calls[0]) == (CKR.OK, [(8, (3).to_bytes(8, "little"))], 1)
    priv.destroy()


def test_a_generated_token_pair_is_left_to_python(raw, session, python_calls) -> None:
    pub, priv = _ec_pair(session, store=True)
    try:
        python_calls[0] = 0
        for key in (pub, priv):
            _read(raw, session.handle, key.handle, [int(Attribute.CLASS)], [None])
        assert python_calls[0] == 2
    finally:
        pub.destroy()
        priv.destroy()
