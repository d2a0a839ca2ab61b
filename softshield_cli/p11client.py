"""The CLI as a PKCS#11 client: python-pkcs11 loading our own library, as a customer program would.

The library path is SOFTSHIELD_PKCS11_LIB, else build/libsoftshield-pkcs11.so of this checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from .main import CommandError

ROOT = Path(__file__).resolve().parent.parent
NCIPHER = 0x80000000 | 0xDE436972
CKA_NFKM_APPNAME = NCIPHER + 0x3
CKA_NFKM_HASH = NCIPHER + 0x18
CKA_NFKM_ID = NCIPHER + 0x102
ACCELERATOR_LABEL = "loadshared accelerator"


def library_path() -> str:
    path = os.environ.get("SOFTSHIELD_PKCS11_LIB") or str(ROOT / "build" / "libsoftshield-pkcs11.so")
    if not Path(path).is_file():
        raise CommandError(f"no PKCS#11 library at {path}: build it with `make`")
    return path


def load():
    import pkcs11

    return pkcs11.lib(library_path())


def mapper():
    """python-pkcs11's attribute mapper, taught nShield's CKA_NFKM_* attributes."""
    from pkcs11.attributes import AttributeMapper, handle_bytes, handle_str

    m = AttributeMapper()
    m.register_handler(CKA_NFKM_APPNAME, *handle_str)
    m.register_handler(CKA_NFKM_ID, *handle_bytes)
    m.register_handler(CKA_NFKM_HASH, *handle_bytes)
    return m


def token(lib, label: str):
    import pkcs11

    try:
        return lib.get_token(token_label=label)
    except pkcs11.exceptions.NoSuchToken:
        raise CommandError(f"no PKCS#11 token labelled `{label}'") from None
