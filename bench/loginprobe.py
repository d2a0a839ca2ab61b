"""C_Initialize and login + first find with N token keys for our library alone, without the whole
find series: builds (once) a kmdata with one token holding N private AES keys made like
test_find.py's (one C_CreateObject, cloned through Module.store_keys), then runs initprobe.py in
fresh processes and prints the best run as one JSON line.

    .venv/bin/python bench/loginprobe.py [N] [runs] [kmdata dir]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SO = str(HERE.parent / "build" / "libsoftshield-pkcs11.so")
LABEL, SO_PIN, PIN = "login-probe", b"12345678", "1234"


def build(kmdata: Path, count: int) -> None:
    os.environ["NFAST_KMDATA"] = str(kmdata)
    from emulator.keys import Key
    from emulator.module import Module
    from pkcs11_shim.attributes import codecs
    from pkcs11_shim.constants import Attribute

    module = Module.open(kmdata)
    info = module.init_token(LABEL, SO_PIN)
    module.init_user_pin(info.hash, module.login(info.hash, "so", SO_PIN), PIN.encode())
    import pkcs11
    from pkcs11 import KeyType, ObjectClass

    lib = pkcs11.lib(SO)
    with lib.get_token(token_label=LABEL).open(user_pin=PIN, rw=True) as session:
        session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                               Attribute.VALUE: bytes(range(32)), Attribute.TOKEN: True,
                               Attribute.PRIVATE: True, Attribute.LABEL: "obj-0", Attribute.ID: b"\0\0\0\0"})
    auth = module.login(info.hash, "user", PIN.encode())
    prototype = module.load_keys(info.hash, auth)[0][0]
    base = codecs.deserialize(prototype.appdata)
    batch = []
    for i in range(1, count):
        attrs = dict(base)
        attrs[Attribute.LABEL], attrs[Attribute.ID] = f"obj-{i}", i.to_bytes(4, "big")
        if Attribute.UNIQUE_ID in attrs:
            attrs[Attribute.UNIQUE_ID] = str(uuid.uuid4())
        batch.append(Key(prototype.material, prototype.acl, app="pkcs11", protection=prototype.protection,
                         token=info.hash, appdata=codecs.serialize(attrs)))
    module.store_keys(batch, auth)


def main(count: int, runs: int, kmdata: Path) -> None:
    if not kmdata.exists():
        out = subprocess.run([sys.executable, __file__, "--build", str(count), str(kmdata)], timeout=1200)
        if out.returncode:
            raise SystemExit(out.returncode)
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, str(HERE / "initprobe.py"), SO, LABEL, PIN, f"obj-{count // 2}"],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "NFAST_KMDATA": str(kmdata)})
        if out.returncode:
            raise RuntimeError(out.stderr)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(results, key=lambda r: r["login_first_find_s"])
    print(json.dumps({"keys": count, "runs": [round(r["login_first_find_s"], 3) for r in results],
                      "cpu_runs": [round(r.get("login_first_find_cpu_s", 0), 3) for r in results],
                      "load": round(os.getloadavg()[0], 2), **best}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build"]:
        build(Path(sys.argv[3]), int(sys.argv[2]))
    else:
        args = sys.argv[1:]
        n = int(args[0]) if args else 10_000
        main(n, int(args[1]) if len(args) > 1 else 3,
             Path(args[2]) if len(args) > 2 else Path(f"/tmp/softshield-loginprobe-{n}"))
