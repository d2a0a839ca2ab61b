"""PKCS#11 3.0 message-based encryption (§5.9-5.10) for AES-GCM and AES-CCM through the .so.

python-pkcs11 0.10.1 has no message API, so the C_*Message* functions are called with ctypes on the
same library (already initialised by python-pkcs11 in this process), with python-pkcs11's session
and key handles. Checked: CKG_NO_GENERATE / CKG_GENERATE / CKG_GENERATE_COUNTER / CKG_GENERATE_RANDOM
(the generated IV and the tag written back into the caller's CK_GCM_MESSAGE_PARAMS /
CK_CCM_MESSAGE_PARAMS), the two-call length query (no IV consumed), Begin/Next with
CKF_END_OF_MESSAGE, decryption with a bad tag (CKR_AEAD_DECRYPT_FAILED), and the results against
`cryptography`'s AESGCM/AESCCM.
"""

from __future__ import annotations

import ctypes

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM
from p11env import SO
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from p11ctypes import CK_CCM_MESSAGE_PARAMS as CcmMessage, CK_GCM_MESSAGE_PARAMS as GcmMessage, CK_MECHANISM as Mech
from pkcs11_shim.constants import (CKF_END_OF_MESSAGE, CKG_GENERATE, CKG_GENERATE_COUNTER, CKG_GENERATE_RANDOM,
                                   CKG_NO_GENERATE, CKR)

UL, VP = ctypes.c_ulong, ctypes.c_void_p
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def c(lib):
    so = ctypes.CDLL(str(SO))
    for name in ("C_MessageEncryptInit", "C_MessageDecryptInit"):
        getattr(so, name).argtypes = [UL, ctypes.POINTER(Mech), UL]
    for name in ("C_EncryptMessage", "C_DecryptMessage"):
        getattr(so, name).argtypes = [UL, VP, UL, ctypes.c_char_p, UL, ctypes.c_char_p, UL, VP, ctypes.POINTER(UL)]
    for name in ("C_EncryptMessageBegin", "C_DecryptMessageBegin"):
        getattr(so, name).argtypes = [UL, VP, UL, ctypes.c_char_p, UL]
    for name in ("C_EncryptMessageNext", "C_DecryptMessageNext"):
        getattr(so, name).argtypes = [UL, VP, UL, ctypes.c_char_p, UL, VP, ctypes.POINTER(UL), UL]
    for name in ("C_MessageEncryptFinal", "C_MessageDecryptFinal"):
        getattr(so, name).argtypes = [UL]
    return so


@pytest.fixture
def key(session):
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: KEY,
        Attribute.TOKEN: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True})


def _init(c, session, key, mechanism: int, encrypt: bool = True) -> None:
    fn = c.C_MessageEncryptInit if encrypt else c.C_MessageDecryptInit
    assert fn(session.handle, ctypes.byref(Mech(mechanism, None, 0)), key.handle) == CKR.OK


def _gcm_param(iv: bytearray, fixed_bits: int, generator: int, tag: ctypes.Array) -> GcmMessage:
    iv_buf = (ctypes.c_char * len(iv)).from_buffer(iv)
    return GcmMessage(ctypes.cast(iv_buf, VP), len(iv), fixed_bits, generator, ctypes.cast(tag, VP), 8 * len(tag))


def _encrypt(c, session, param: ctypes.Structure, aad: bytes, data: bytes, *, query: bool = True) -> bytes:
    out_len = UL(0)
    if query:
        rv = c.C_EncryptMessage(session.handle, ctypes.addressof(param), ctypes.sizeof(param), aad, len(aad), data,
                                len(data), None, ctypes.byref(out_len))
        assert rv == CKR.OK and out_len.value == len(data)
    out = ctypes.create_string_buffer(len(data) or 1)
    out_len = UL(len(data))
    rv = c.C_EncryptMessage(session.handle, ctypes.addressof(param), ctypes.sizeof(param), aad, len(aad), data,
                            len(data), ctypes.cast(out, VP), ctypes.byref(out_len))
    assert rv == CKR.OK
    return out.raw[: out_len.value]


def _decrypt(c, session, param: ctypes.Structure, aad: bytes, data: bytes) -> tuple[int, bytes]:
    out = ctypes.create_string_buffer(len(data) or 1)
    out_len = UL(len(data))
    rv = c.C_DecryptMessage(session.handle, ctypes.addressof(param), ctypes.sizeof(param), aad, len(aad), data,
                            len(data), ctypes.cast(out, VP), ctypes.byref(out_len))
    return rv, out.raw[: out_len.value]


def test_gcm_caller_iv_and_tag_written_back(c, session, key) -> None:
    _init(c, session, key, Mechanism.AES_GCM)
    iv, tag = bytearray(range(12)), (ctypes.c_char * 16)()
    param = _gcm_param(iv, 0, CKG_NO_GENERATE, tag)
    ciphertext = _encrypt(c, session, param, b"aad", b"message one")
    expected = AESGCM(KEY).encrypt(bytes(iv), b"message one", b"aad")
    assert ciphertext + tag.raw == expected
    assert c.C_MessageEncryptFinal(session.handle) == CKR.OK
    _init(c, session, key, Mechanism.AES_GCM, encrypt=False)
    assert _decrypt(c, session, param, b"aad", ciphertext) == (CKR.OK, b"message one")
    tag[0] = bytes([tag.raw[0] ^ 1])
    assert _decrypt(c, session, param, b"aad", ciphertext)[0] == CKR.AEAD_DECRYPT_FAILED
    assert c.C_MessageDecryptFinal(session.handle) == CKR.OK


@pytest.mark.parametrize("generator", [CKG_GENERATE, CKG_GENERATE_COUNTER, CKG_GENERATE_RANDOM])
def test_gcm_generated_ivs(c, session, key, generator: int) -> None:
    _init(c, session, key, Mechanism.AES_GCM)
    seen = set()
    for n in range(3):
        iv, tag = bytearray(b"\xAA" * 4 + bytes(8)), (ctypes.c_char * 16)()
        param = _gcm_param(iv, 32, generator, tag)
        ciphertext = _encrypt(c, session, param, b"", b"msg %d" % n)  # the length query generates nothing
        assert bytes(iv[:4]) == b"\xAA" * 4  # the fixed part stays
        seen.add(bytes(iv))
        assert AESGCM(KEY).decrypt(bytes(iv), ciphertext + tag.raw, None) == b"msg %d" % n
    assert len(seen) == 3
    if generator in (CKG_GENERATE, CKG_GENERATE_COUNTER):
        assert sorted(int.from_bytes(v[4:], "big") for v in seen) == [0, 1, 2]
    assert c.C_MessageEncryptFinal(session.handle) == CKR.OK


def test_gcm_begin_next(c, session, key) -> None:
    _init(c, session, key, Mechanism.AES_GCM)
    iv, tag = bytearray(bytes(range(12))), (ctypes.c_char * 16)()
    param = _gcm_param(iv, 0, CKG_NO_GENERATE, tag)
    pp, pl = ctypes.addressof(param), ctypes.sizeof(param)
    assert c.C_EncryptMessageBegin(session.handle, pp, pl, b"hdr", 3) == CKR.OK
    out = b""
    parts = [b"first part, ", b"second part, ", b"last"]
    for i, part in enumerate(parts):
        flags = CKF_END_OF_MESSAGE if i == len(parts) - 1 else 0
        buf, n = ctypes.create_string_buffer(64), UL(64)
        assert c.C_EncryptMessageNext(session.handle, pp, pl, part, len(part), ctypes.cast(buf, VP),
                                      ctypes.byref(n), flags) == CKR.OK
        out += buf.raw[: n.value]
    assert out + tag.raw == AESGCM(KEY).encrypt(bytes(iv), b"".join(parts), b"hdr")
    assert c.C_MessageEncryptFinal(session.handle) == CKR.OK


def test_ccm_message(c, session, key) -> None:
    _init(c, session, key, Mechanism.AES_CCM)
    nonce, mac = bytearray(bytes(range(11))), (ctypes.c_char * 8)()
    data = b"CCM message data"
    nonce_buf = (ctypes.c_char * len(nonce)).from_buffer(nonce)
    param = CcmMessage(len(data), ctypes.cast(nonce_buf, VP), len(nonce), 24, CKG_GENERATE_COUNTER,
                       ctypes.cast(mac, VP), 8)
    ciphertext = _encrypt(c, session, param, b"ccm aad", data)
    assert bytes(nonce[:3]) == bytes(range(3))
    assert ciphertext + mac.raw == AESCCM(KEY, tag_length=8).encrypt(bytes(nonce), data, b"ccm aad")
    assert c.C_MessageEncryptFinal(session.handle) == CKR.OK
    _init(c, session, key, Mechanism.AES_CCM, encrypt=False)
    param.nonceGenerator = CKG_NO_GENERATE
    assert _decrypt(c, session, param, b"ccm aad", ciphertext) == (CKR.OK, data)
    assert c.C_MessageDecryptFinal(session.handle) == CKR.OK


def test_bad_message_parameters(c, session, key) -> None:
    _init(c, session, key, Mechanism.AES_GCM)
    iv, tag = bytearray(4), (ctypes.c_char * 16)()  # a 4-byte IV: too short
    param = _gcm_param(iv, 0, CKG_NO_GENERATE, tag)
    out, n = ctypes.create_string_buffer(8), UL(8)
    rv = c.C_EncryptMessage(session.handle, ctypes.addressof(param), ctypes.sizeof(param), b"", 0, b"x", 1,
                            ctypes.cast(out, VP), ctypes.byref(n))
    assert rv == CKR.MECHANISM_PARAM_INVALID
    assert c.C_MessageEncryptFinal(session.handle) == CKR.OK
    assert c.C_MessageEncryptFinal(session.handle) == CKR.OPERATION_NOT_INITIALIZED
    # A mechanism without message support.
    rv = c.C_MessageEncryptInit(session.handle, ctypes.byref(Mech(Mechanism.AES_ECB, None, 0)), key.handle)
    assert rv == CKR.MECHANISM_INVALID
