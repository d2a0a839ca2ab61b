"""The process test_secrets.py inspects: with debug logging on, it initialises a token, logs in
(also with wrong PINs), imports keys whose values it knows, wraps, provokes errors, and tries to read
sensitive values. Prints one JSON line of the return codes it saw; the test then searches its log,
stderr, stdout and kmdata for the secrets (given on the command line as hex).

    python secrets_child.py SO_PIN USER_PIN WRONG_PIN KEY_HEX WRAPPING_KEY_HEX
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from ctypes import byref, c_void_p

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import p11ctypes as ck  # noqa: E402
from pkcs11_shim.constants import Attribute, CKR, KeyType, Mechanism, ObjectClass, UserType  # noqa: E402

CK_UNAVAILABLE_INFORMATION = (1 << 64) - 1


def main() -> int:
    so_pin, user_pin, wrong_pin = (a.encode() for a in sys.argv[1:4])
    key_value, wrapping_value = bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5])
    lib = ck.load()
    c = ck.Client(lib)
    c.initialize()
    seen: dict[str, object] = {}
    c.init_token(c.spare_slot(), so_pin, "secrets")
    slot = c.slot_by_label("secrets")
    s = c.open(slot)
    seen["login_so_wrong"] = ck.raw(lib, "C_Login", ck.CK_ULONG(s), ck.CK_ULONG(UserType.SO), wrong_pin,
                                    ck.CK_ULONG(len(wrong_pin)))
    c.login(s, UserType.SO, so_pin)
    c.init_pin(s, user_pin)
    ck.call(lib, "C_Logout", ck.CK_ULONG(s))
    seen["login_user_wrong"] = ck.raw(lib, "C_Login", ck.CK_ULONG(s), ck.CK_ULONG(UserType.USER), wrong_pin,
                                      ck.CK_ULONG(len(wrong_pin)))
    c.login(s, UserType.USER, user_pin)
    seen["setpin_wrong_old"] = ck.raw(lib, "C_SetPIN", ck.CK_ULONG(s), wrong_pin, ck.CK_ULONG(len(wrong_pin)),
                                      user_pin, ck.CK_ULONG(len(user_pin)))

    def create(items: list) -> tuple[int, int]:
        t = ck.Template(items)
        out = ck.CK_ULONG(0)
        code = ck.raw(lib, "C_CreateObject", ck.CK_ULONG(s), t.array, ck.CK_ULONG(t.count), byref(out))
        return code, out.value

    base = [(Attribute.CLASS, ObjectClass.SECRET_KEY), (Attribute.KEY_TYPE, KeyType.AES), (Attribute.TOKEN, True),
            (Attribute.PRIVATE, True)]
    code, key = create(base + [(Attribute.VALUE, key_value), (Attribute.LABEL, "target"), (Attribute.SENSITIVE, True),
                               (Attribute.EXTRACTABLE, True), (Attribute.ENCRYPT, True), (Attribute.WRAP, True)])
    assert code == CKR.OK, hex(code)
    code, wrapping = create(base + [(Attribute.VALUE, wrapping_value), (Attribute.LABEL, "kek"), (Attribute.WRAP, True),
                                    (Attribute.UNWRAP, True), (Attribute.SENSITIVE, True), (Attribute.EXTRACTABLE, False)])
    assert code == CKR.OK, hex(code)
    # Errors whose template carries the secret: the message must not echo it.
    seen["create_bad_length"] = create(base + [(Attribute.VALUE, key_value[:7])])[0]
    seen["create_conflict"] = create(base + [(Attribute.VALUE, key_value), (Attribute.VALUE_LEN, 16)])[0]

    # Sensitive values are never readable, by any route.
    attr = ck.CK_ATTRIBUTE(Attribute.VALUE, None, 0)
    seen["get_value"] = ck.raw(lib, "C_GetAttributeValue", ck.CK_ULONG(s), ck.CK_ULONG(key), byref(attr),
                               ck.CK_ULONG(1))
    seen["get_value_len"] = attr.ulValueLen
    buf = ctypes.create_string_buffer(64)
    attr = ck.CK_ATTRIBUTE(Attribute.VALUE, ctypes.cast(buf, c_void_p), 64)
    seen["get_value_buffer"] = ck.raw(lib, "C_GetAttributeValue", ck.CK_ULONG(s), ck.CK_ULONG(key), byref(attr),
                                      ck.CK_ULONG(1))
    seen["buffer_untouched"] = buf.raw == b"\0" * 64
    t = ck.Template([(Attribute.SENSITIVE, False)])
    seen["unset_sensitive"] = ck.raw(lib, "C_SetAttributeValue", ck.CK_ULONG(s), ck.CK_ULONG(key), t.array,
                                     ck.CK_ULONG(1))
    copy = ck.CK_ULONG(0)
    seen["copy_unsensitive"] = ck.raw(lib, "C_CopyObject", ck.CK_ULONG(s), ck.CK_ULONG(key), t.array,
                                      ck.CK_ULONG(1), byref(copy))
    attr = ck.CK_ATTRIBUTE(Attribute.VALUE, None, 0)
    seen["get_wrapping_value"] = ck.raw(lib, "C_GetAttributeValue", ck.CK_ULONG(s), ck.CK_ULONG(wrapping),
                                        byref(attr), ck.CK_ULONG(1))

    # Wrapping is the one way out, and only encrypted.
    m, _keep = ck.mechanism(Mechanism.AES_KEY_WRAP)
    out = ctypes.create_string_buffer(256)
    length = ck.CK_ULONG(256)
    ck.call(lib, "C_WrapKey", ck.CK_ULONG(s), byref(m), ck.CK_ULONG(wrapping), ck.CK_ULONG(key), out, byref(length))
    seen["wrapped"] = out.raw[:length.value].hex()
    seen["wrap_self_unextractable"] = ck.raw(lib, "C_WrapKey", ck.CK_ULONG(s), byref(m), ck.CK_ULONG(key),
                                             ck.CK_ULONG(wrapping), out, byref(ck.CK_ULONG(256)))
    ck.call(lib, "C_Logout", ck.CK_ULONG(s))
    c.finalize()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
