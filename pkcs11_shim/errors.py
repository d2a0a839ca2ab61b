"""Errors that carry their PKCS#11 return code.

Raise `PKCS11Error(CKR.X)` anywhere in the shim; `pkcs11_shim.abi.entry` turns it into the CK_RV in
exactly one place. Emulator errors are mapped onto return codes by the table in `abi.entry`.
"""

from __future__ import annotations

from .constants import CKR


class PKCS11Error(Exception):
    """A PKCS#11 failure with the return value the specification names for it."""

    def __init__(self, rv: int, message: str = "") -> None:
        self.rv = CKR(rv) if rv in CKR._value2member_map_ else rv
        super().__init__(message or getattr(self.rv, "name", hex(rv)))


class BufferTooSmall(PKCS11Error):
    """CKR_BUFFER_TOO_SMALL, carrying the length the caller needs (§5.2)."""

    def __init__(self, needed: int) -> None:
        super().__init__(CKR.BUFFER_TOO_SMALL, f"buffer too small: {needed} bytes needed")
        self.needed = needed
