"""`make demo`: create a world and a key, and use the key through the PKCS#11 library.

Every step is what a user would do by hand: a fresh kmdata, a Security World, an RSA key generated
through PKCS#11 in the accelerator slot, a signature made by the token and checked with plain
`cryptography`, a C host (pkcs11-tool) that sees the same key, and a program on another Python
(3.12) that signs with it through the same library, which forwards that process to a hardserver it
starts itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SO = ROOT / "build" / "libsoftshield-pkcs11.so"
DEMO_KMDATA = ROOT / "build" / "demo-kmdata"
DEMO_SOCKET = ROOT / "build" / "demo-run" / "hardserver.sock"
OTHER_PYTHON = ROOT / ".venv312" / "bin" / "python"
#: What a Python 3.12 program does with the key: python-pkcs11 loading the same library.
OTHER_HOST = """
import sys, pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass
lib = pkcs11.lib(sys.argv[1])
print(lib.library_description, file=sys.stderr)
with lib.get_token(token_label="loadshared accelerator").open() as session:
    key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label="demo-signer")
    print(key.sign(b"softshield demo from Python 3.12", mechanism=Mechanism.SHA256_RSA_PKCS).hex())
"""


def step(text: str) -> None:
    print(f"\n== {text}")


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise SystemExit(f"demo: {' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def create_world() -> None:
    """Through `softshield new-world` when the Security World tools are installed."""
    pin_file = DEMO_KMDATA.parent / "demo-pins.txt"
    pin_file.write_text("acs-1.card 1111\nacs-2.card 2222\nacs-3.card 3333\n")
    cli = [sys.executable, "-m", "softshield_cli.main"]
    from softshield_cli.main import COMMANDS, build_parser

    build_parser()
    if "new-world" in COMMANDS:
        print(run(*cli, "new-world", "--initialize", "--cipher-suite=DLf3072s256mAEScSP800131Ar1",
                  "--module=1", "--acs-quorum=2/3", "--pin-file", str(pin_file)).rstrip())
    else:
        from emulator.module import Module

        module = Module.open(DEMO_KMDATA)
        print(f"security world generated on module #1; hknso = {module.world.hknso}")


def main() -> int:
    if not SO.exists():
        raise SystemExit("demo: build the library first: make")
    shutil.rmtree(DEMO_KMDATA, ignore_errors=True)
    DEMO_KMDATA.mkdir(parents=True)
    os.environ["NFAST_KMDATA"] = str(DEMO_KMDATA)

    step(f"a new Security World in {DEMO_KMDATA}")
    create_world()

    step("an RSA-2048 key generated through PKCS#11 in the accelerator slot")
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism

    from emulator.crypto import components

    lib = pkcs11.lib(str(SO))
    token = lib.get_token(token_label="loadshared accelerator")
    with token.open(rw=True) as session:
        # The accelerator slot holds module-protected keys, which nShield makes with CKA_PRIVATE false.
        public, private = session.generate_keypair(KeyType.RSA, 2048, label="demo-signer", store=True,
                                                   private_template={Attribute.PRIVATE: False})
        print(f"key generated: label demo-signer, modulus {len(public[Attribute.MODULUS]) * 8} bits")
        message = b"softshield demo"
        signature = private.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS)
        verifier = components.rsa_public_key(n=int.from_bytes(public[Attribute.MODULUS], "big"),
                                             e=int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"))
        verify_sha256_rsa_pkcs(verifier, message, signature)
        print(f"signature made by the token ({len(signature)} bytes) verifies with plain cryptography")

    step("the key blobs in kmdata (encrypted and authenticated under the world)")
    for path in sorted((DEMO_KMDATA / "local").iterdir()):
        if not path.name.startswith("."):
            print(f"  {path.name}  ({path.stat().st_size} bytes)")

    step("a C host (pkcs11-tool) sees the same key")
    if shutil.which("pkcs11-tool"):
        out = run("pkcs11-tool", "--module", str(SO), "--slot", "0", "--list-objects", "--type", "privkey")
        print("\n".join("  " + line for line in out.splitlines() if line.strip()))
    else:
        print("  pkcs11-tool not installed (Debian package opensc)")
    step("a Python 3.12 program signs with the same key (the library forwards it to a hardserver)")
    if OTHER_PYTHON.exists():
        other_python_signs(verifier)
    else:
        print(f"  no {OTHER_PYTHON} (scripts/setup.sh makes it where Python 3.12 is installed)")
    print("\ndemo complete")
    return 0


def verify_sha256_rsa_pkcs(verifier: Any, message: bytes, signature: bytes) -> None:
    """CKM_SHA256_RSA_PKCS verification outside the token (emulator.crypto, over `cryptography`);
    raises emulator.errors.CryptoFailure on a mismatch."""
    from emulator.crypto import digest, rsa

    rsa.pkcs1v15_verify_digest(verifier, "SHA256", digest.digest("SHA256", message), signature)


def other_python_signs(verifier: Any) -> None:
    env = {**os.environ, "SOFTSHIELD_HARDSERVER": str(DEMO_SOCKET)}
    result = subprocess.run([str(OTHER_PYTHON), "-c", OTHER_HOST, str(SO)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"demo: the Python 3.12 program failed:\n{result.stdout}{result.stderr}")
    signature = bytes.fromhex(result.stdout.strip())
    verify_sha256_rsa_pkcs(verifier, b"softshield demo from Python 3.12", signature)
    print(f"  library: {result.stderr.strip()}; hardserver log: {DEMO_SOCKET.with_name('hardserver.log')}")
    print(f"  signature made for Python 3.12 ({len(signature)} bytes) verifies with the key made above")
    print(run(sys.executable, "-m", "softshield_cli.main", "hardserver", "--stop", "--socket", str(DEMO_SOCKET)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
