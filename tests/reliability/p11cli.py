"""Small library-level actions run in a fresh process (the pytest process may already hold the .so
initialised on another kmdata): `python p11cli.py ACTION [ARGS]`, JSON on stdout.

    mktoken LABEL            C_InitToken on the spare slot, then C_InitPIN (SO 12345678, user 1234)
    inventory LABEL...       for each token: {label: {"sign": bool}} of every secret key, via C_FindObjects
    slots                    labels of every initialised slot
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import p11ctypes as ck  # noqa: E402
from pkcs11_shim.constants import Attribute, ObjectClass, TokenFlag, UserType  # noqa: E402

SO_PIN, USER_PIN = b"12345678", b"1234"


def mktoken(client: ck.Client, label: str) -> dict:
    client.init_token(client.spare_slot(), SO_PIN, label)
    slot = client.slot_by_label(label)
    session = client.open(slot)
    client.login(session, UserType.SO, SO_PIN)
    client.init_pin(session, USER_PIN)
    client.close(session)
    return {"slot": slot}


def inventory(client: ck.Client, labels: list[str]) -> dict:
    out: dict = {}
    for label in labels:
        session = client.open(client.slot_by_label(label))
        client.login(session, UserType.USER, USER_PIN)
        keys = {}
        for handle in client.find(session, [(Attribute.CLASS, ObjectClass.SECRET_KEY)], limit=100000):
            name = client.get_attribute(session, handle, Attribute.LABEL).decode()
            keys[name] = client.get_attribute(session, handle, Attribute.SIGN) == b"\x01"
        out[label] = keys
        client.close(session)
    return out


def slots(client: ck.Client) -> list[str]:
    return [client.token_info(s).label.decode().rstrip() for s in client.slots()
            if client.token_info(s).flags & TokenFlag.TOKEN_INITIALIZED]


def main() -> int:
    action, args = sys.argv[1], sys.argv[2:]
    client = ck.Client(ck.load())
    client.initialize()
    if action == "mktoken":
        result = mktoken(client, args[0])
    elif action == "inventory":
        result = inventory(client, args)
    elif action == "slots":
        result = slots(client)
    else:
        raise SystemExit(f"unknown action {action}")
    client.finalize()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
