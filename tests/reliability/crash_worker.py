"""The process the crash test kills: a zygote that loads the .so once, then forks children that
each C_Initialize and write to kmdata in a loop until the zygote SIGKILLs them at a random moment.

    python crash_worker.py MODE LOG ITERATIONS SEED MAX_DELAY [TOKEN_LABEL]

MODE is `keygen` (C_GenerateKey of token keys), `acl` (generate, then C_SetAttributeValue
CKA_SIGN=FALSE), `copy` (generate, then C_CopyObject to a new label), `inittoken` (C_InitToken on
the spare slot) or `cardset` (a 1-of-2 card set through the emulator's API, as `createocs` does). A
child appends one line to LOG (O_APPEND, one write(2) per line, so the line is on disk before the
next call starts) after each call returns CKR_OK: `gen <label> <handle>`, `reduced <label>`,
`copy <label>`, `token <label>`, `cardset <name>`. The zygote prints one summary line when done.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import p11ctypes as ck  # noqa: E402
from pkcs11_shim.constants import Attribute, KeyType, Mechanism, UserType  # noqa: E402

SO_PIN, USER_PIN = b"12345678", b"1234"
CARD_PIN = b"card-1234"


def _note(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


def _cardsets(fd: int) -> None:
    from emulator.module import Module

    module = Module.open()
    pid, n = os.getpid(), 0
    while True:
        name = f"s{pid}-{n}"
        module.cardsets.create(name, 1, 2, [CARD_PIN, CARD_PIN])
        _note(fd, f"cardset {name}")
        n += 1


def _child(mode: str, fd: int, label: str | None) -> None:
    if mode == "cardset":
        _cardsets(fd)
    client = ck.Client(ck.load())
    client.initialize()
    pid = os.getpid()
    n = 0
    if mode == "inittoken":
        while True:
            name = f"c{pid}-{n}"
            client.init_token(client.spare_slot(), SO_PIN, name)
            _note(fd, f"token {name}")
            n += 1
    assert label is not None
    session = client.open(client.slot_by_label(label))
    client.login(session, UserType.USER, USER_PIN)
    while True:
        name = f"k{pid}-{n}"
        handle = client.generate_key(session, Mechanism.GENERIC_SECRET_KEY_GEN, [
            (Attribute.TOKEN, True), (Attribute.PRIVATE, True), (Attribute.VALUE_LEN, 32),
            (Attribute.KEY_TYPE, KeyType.GENERIC_SECRET), (Attribute.SIGN, True), (Attribute.LABEL, name)])
        _note(fd, f"gen {name} {handle}")
        if mode == "acl":
            client.set_attributes(session, handle, [(Attribute.SIGN, False)])
            _note(fd, f"reduced {name}")
        elif mode == "copy":
            client.copy_object(session, handle, [(Attribute.LABEL, "c" + name)])
            _note(fd, f"copy c{name}")
        n += 1


def main() -> int:
    mode, log_path, iterations, seed, max_delay = sys.argv[1:6]
    label = sys.argv[6] if len(sys.argv) > 6 else None
    rng = random.Random(int(seed))
    if mode == "cardset":
        sys.path.insert(0, str(ck.ROOT))
        import emulator.module  # noqa: F401 - imported once, before forking
    else:
        lib = ck.load()
        # Start the embedded interpreter side (imports, handler binding) once, before forking.
        ck.raw(lib, "C_GetInfo", None)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    killed = finished = midwrite = 0
    kmdata = Path(os.environ["NFAST_KMDATA"])
    for _ in range(int(iterations)):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child(mode, fd, label)
            except BaseException as exc:  # noqa: BLE001 - report and leave without cleanup
                _note(fd, f"error {type(exc).__name__}: {exc}")
                code = 3
            os._exit(code)
        time.sleep(rng.uniform(0.0, float(max_delay)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            killed += 1
            # A temp file named after the child: it died between creating a file and renaming it.
            midwrite += any(any(p.name.startswith(f".tmp-{pid}-") for p in folder.iterdir())
                            for folder in (kmdata / "local", kmdata / "reader") if folder.is_dir())
        else:
            finished += 1
    os.close(fd)
    print(f"killed={killed} finished={finished} midwrite={midwrite}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
