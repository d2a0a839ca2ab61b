"""The process test_wipe.py watches: it loads the .so into this Python (cffi embedding reuses the
running interpreter, so the library's `emulator` modules are the ones imported here), hooks
SecretBuffer finalization, and reports, as one JSON line, what happened to the PIN buffer handed to
the PIN KDF by C_Login and to the buffer holding a secret key's value across C_DestroyObject.

    python wipe_child.py SO_PIN USER_PIN KEY_HEX
"""

from __future__ import annotations

import gc
import json
import os
import sys
from ctypes import byref
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))
import p11ctypes as ck  # noqa: E402

from emulator.crypto import material, pinkdf  # noqa: E402
from pkcs11_shim.constants import Attribute, KeyType, ObjectClass, UserType  # noqa: E402



def main() -> int:
    so_pin, user_pin = (a.encode() for a in sys.argv[1:3])
    key_value = bytes.fromhex(sys.argv[3])
    finalized: list[tuple[int, bytes]] = []
    material.on_finalize = lambda buf: finalized.append((id(buf), bytes(buf)))
    kdf_pins: list[tuple[int, str, int]] = []
    derive = pinkdf.derive_pin_key

    def spy(pin, *args):  # records the PIN object's identity, keeps no reference to it
        kdf_pins.append((id(pin), type(pin).__name__, len(pin)))
        return derive(pin, *args)

    pinkdf.derive_pin_key = spy
    lib = ck.load()
    c = ck.Client(lib)
    c.initialize()
    c.init_token(c.spare_slot(), so_pin, "wipe")
    s = c.open(c.slot_by_label("wipe"))
    c.login(s, UserType.SO, so_pin)
    c.init_pin(s, user_pin)
    ck.call(lib, "C_Logout", ck.CK_ULONG(s))
    kdf_pins.clear()
    c.login(s, UserType.USER, user_pin)
    gc.collect()
    ids = dict(finalized)
    login = [{"type": kind, "len": n, "zeroed": ids.get(pin_id) == bytes(n)} for pin_id, kind, n in kdf_pins]

    t = ck.Template([(Attribute.CLASS, ObjectClass.SECRET_KEY), (Attribute.KEY_TYPE, KeyType.AES), (Attribute.TOKEN, False),
                     (Attribute.VALUE, key_value), (Attribute.ENCRYPT, True)])
    handle = ck.CK_ULONG(0)
    ck.call(lib, "C_CreateObject", ck.CK_ULONG(s), t.array, ck.CK_ULONG(t.count), byref(handle))
    holders = [o for o in gc.get_objects() if isinstance(o, material.SecretMaterial) and o.value == key_value]
    buf_id = id(holders[0].value) if len(holders) == 1 else None
    buf_type = type(holders[0].value).__name__ if holders else None
    del holders
    gc.collect()
    before = [content for fid, content in finalized if fid == buf_id]
    c.destroy(s, handle.value)
    gc.collect()
    after = [content for fid, content in finalized if fid == buf_id]
    report = {"login": login, "materials": 1 if buf_id is not None else 0, "buf_type": buf_type,
              "finalized_before_destroy": len(before), "after_destroy": [a.hex() for a in after],
              "key_len": len(key_value)}
    c.finalize()
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown inside the library's embedding


if __name__ == "__main__":
    sys.exit(main())
