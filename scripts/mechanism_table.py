"""Print the mechanism table of docs/mechanisms.md (markdown) from the mechanism registry.

    .venv/bin/python scripts/mechanism_table.py

One line per registry row: the CKM name and number, the functions its CK_MECHANISM_INFO flags
promise, and ulMinKeySize..ulMaxKeySize in the unit the specification names for that mechanism.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pkcs11_shim.constants import CKF_MESSAGE_DECRYPT, CKF_MESSAGE_ENCRYPT
from pkcs11_shim.constants import MechanismFlag as F
from pkcs11_shim.mechanisms.registry import REGISTRY

FUNCTIONS = ((F.ENCRYPT, "encrypt"), (F.DECRYPT, "decrypt"), (F.DIGEST, "digest"), (F.SIGN, "sign"),
             (F.SIGN_RECOVER, "sign-recover"), (F.VERIFY, "verify"), (F.VERIFY_RECOVER, "verify-recover"),
             (F.GENERATE, "generate"), (F.GENERATE_KEY_PAIR, "generate-pair"), (F.WRAP, "wrap"),
             (F.UNWRAP, "unwrap"), (F.DERIVE, "derive"), (CKF_MESSAGE_ENCRYPT, "message-encrypt"),
             (CKF_MESSAGE_DECRYPT, "message-decrypt"), (F.ENCAPSULATE, "encapsulate"),
             (F.DECAPSULATE, "decapsulate"))


def table() -> str:
    lines = ["| mechanism | number | functions | key sizes (min..max) |", "|---|---|---|---|"]
    for spec in REGISTRY.all():
        functions = ", ".join(word for flag, word in FUNCTIONS if spec.flags & flag)
        sizes = f"{spec.min_key}..{spec.max_key}" if spec.max_key else "-"
        lines.append(f"| {spec.name} | 0x{spec.mechanism:04X} | {functions} | {sizes} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
