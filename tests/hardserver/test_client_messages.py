"""PKCS#11 3.0 message-based AES-GCM through the client library: the per-message parameter holds
pointers the module writes into (a generated IV, the tag), which travel back to the caller."""

from __future__ import annotations

import ctypes

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsenv import USER_PIN
from p11ctypes import CK_ATTRIBUTE as Attr, CK_GCM_MESSAGE_PARAMS as GcmMessage, CK_MECHANISM as Mech, RawClient

from pkcs11_shim.constants import (CKG_GENERATE_RANDOM, CKG_NO_GENERATE, CKR, Attribute, KeyType, Mechanism, ObjectClass,
                                   UserType)

UL, VP = ctypes.c_ulong, ctypes.c_void_p
KEY = bytes(range(32))


def _template(*pairs: tuple[int, bytes]):
    keep = [ctypes.create_string_buffer(v, len(v)) for _t, v in pairs]
    attrs = (Attr * len(pairs))(*[Attr(t, ctypes.cast(b, VP), len(v)) for (t, v), b in zip(pairs, keep)])
    return attrs, keep


def test_gcm_message_iv_and_tag_come_back(server, token) -> None:
    raw = RawClient()
    assert raw.initialize(server) == CKR.OK
    so = raw.lib
    so.C_Login.restype = so.C_CreateObject.restype = so.C_MessageEncryptInit.restype = UL
    so.C_EncryptMessage.restype = so.C_MessageDecryptInit.restype = so.C_DecryptMessage.restype = UL
    try:
        rv, session = raw.open_session(raw.slot_of(token))
        assert rv == CKR.OK
        assert so.C_Login(UL(session), UL(UserType.USER), USER_PIN.encode(), UL(len(USER_PIN))) == CKR.OK
        attrs, _keep = _template((Attribute.CLASS, ObjectClass.SECRET_KEY.to_bytes(8, "little")),
                                 (Attribute.KEY_TYPE, KeyType.AES.to_bytes(8, "little")), (Attribute.VALUE, KEY),
                                 (Attribute.TOKEN, b"\x00"), (Attribute.ENCRYPT, b"\x01"), (Attribute.DECRYPT, b"\x01"))
        key = UL(0)
        assert so.C_CreateObject(UL(session), attrs, UL(len(attrs)), ctypes.byref(key)) == CKR.OK
        assert so.C_MessageEncryptInit(UL(session), ctypes.byref(Mech(Mechanism.AES_GCM, None, 0)), key) == CKR.OK
        iv, tag = ctypes.create_string_buffer(12), ctypes.create_string_buffer(16)
        param = GcmMessage(ctypes.cast(iv, VP), 12, 0, CKG_GENERATE_RANDOM, ctypes.cast(tag, VP), 128)
        plain, aad = b"message in a bottle", b"header"
        out, out_len = ctypes.create_string_buffer(64), UL(64)
        rv = so.C_EncryptMessage(UL(session), ctypes.byref(param), UL(ctypes.sizeof(param)), aad, UL(len(aad)),
                                 plain, UL(len(plain)), out, ctypes.byref(out_len))
        assert rv == CKR.OK
        assert out_len.value == len(plain)
        assert iv.raw != bytes(12) and tag.raw != bytes(16)  # written by the module, carried back
        assert AESGCM(KEY).decrypt(iv.raw, out.raw[:out_len.value] + tag.raw, aad) == plain
        # And decryption with a wrong tag is refused as the module refuses it.
        assert so.C_MessageDecryptInit(UL(session), ctypes.byref(Mech(Mechanism.AES_GCM, None, 0)), key) == CKR.OK
        bad = ctypes.create_string_buffer(bytes(16))
        param = GcmMessage(ctypes.cast(iv, VP), 12, 0, CKG_NO_GENERATE, ctypes.cast(bad, VP), 128)
        back, back_len = ctypes.create_string_buffer(64), UL(64)
        rv = so.C_DecryptMessage(UL(session), ctypes.byref(param), UL(ctypes.sizeof(param)), aad, UL(len(aad)),
                                 out.raw[:out_len.value], UL(out_len.value), back, ctypes.byref(back_len))
        assert rv == CKR.AEAD_DECRYPT_FAILED
    finally:
        raw.finalize()
