"""nShield key names chosen by the application: CKA_NFKM_APPNAME / CKA_NFKM_ID in a generate template.

cknfast computes these attributes for its own `pkcs11` keys; nShield tools that generate keys for
other applications (`generatekey simple ... ident=NAME`) name the key file `key_<app>_<ident>`. We
honour the two attributes in C_GenerateKey / C_GenerateKeyPair templates of token objects (for a
pair: in the private-key template; the public half stays a `pkcs11` object), so a program using
PKCS#11 (our own `softshield generatekey`) makes `key_simple_<ident>`.
"""

from __future__ import annotations

from typing import Any

from emulator import paths

from .constants import CKR, Attribute, NCipherAttribute
from .errors import PKCS11Error


def take_naming(template: dict[int, Any]) -> tuple[str, str] | None:
    """Remove the naming attributes from `template`; (app, ident) when they name a key file."""
    app = template.pop(NCipherAttribute.NFKM_APPNAME, None)
    ident = template.pop(NCipherAttribute.NFKM_ID, None)
    if app is None and ident is None:
        return None
    if isinstance(ident, (bytes, bytearray)):
        ident = bytes(ident).decode("ascii", "replace")
    if not app or not ident:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_NFKM_APPNAME and CKA_NFKM_ID go together")
    if app == "pkcs11":
        raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, "pkcs11 idents are assigned by the library")
    if not paths.APP_RE.match(app):
        raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, f"app name {app!r}: lower-case letters and digits")
    if not paths.IDENT_RE.match(ident):
        raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID,
                          f"ident {ident!r}: only lower-case letters, digits and dashes")
    if not template.get(Attribute.TOKEN, False):
        raise PKCS11Error(CKR.TEMPLATE_INCONSISTENT, "a named key file needs CKA_TOKEN true")
    return app, ident
