"""Client B of test_session_objects.py: the client library in its own process (ctypes, C only).

    python session_objects_peer.py TOKEN_LABEL

Opens a session, creates a session AES key and a session data object, prints their handles, then
answers one line per command on stdin: `see H` (the CK_RV of reading CKA_LABEL of H), `find` (the
handles C_FindObjects returns, two at a time), `exit`."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # p11ctypes

from test_session_objects import SessionClient  # noqa: E402

from pkcs11_shim.constants import CKR  # noqa: E402


def main() -> int:
    b = SessionClient()
    assert b.lib.C_Initialize(None) == CKR.OK  # SOFTSHIELD_HARDSERVER from the environment
    rv, session = b.open_session(b.slot_of(sys.argv[1]))
    assert rv == CKR.OK, hex(rv)
    key = b.create_aes(session, token=False)
    rv, data = b.create_data(session, private=False)
    assert rv == CKR.OK, hex(rv)
    print(key, data, flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "see":
            print(hex(b.label_rv(session, int(command[1]))), flush=True)
        elif command[0] == "find":
            print(" ".join(map(str, sorted(b.find_all(session, batch=2)))), flush=True)
        else:
            break
    b.lib.C_Finalize(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
