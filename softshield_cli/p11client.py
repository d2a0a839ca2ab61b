"""The CLI as a PKCS#11 client: python-pkcs11 loading our own library, as a customer program would.

The library path is SOFTSHIELD_PKCS11_LIB, else build/libsoftshield-pkcs11.so of this checkout.

The few PKCS#11 calls python-pkcs11 0.10.1 cannot make itself live here too (byok and keytransfer
use them): CKM_RSA_AES_KEY_WRAP (no enum member; its CK_RSA_AES_KEY_WRAP_PARAMS packed by ctypes and
passed as the raw pParameter bytes) and nShield's C_LoginBegin/Next/End (exported symbols of our .so).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from emulator import transfer
from pkcs11_shim.constants import (CKA_SOFTSHIELD_WRAP_KEY_HASH, CKM_RSA_AES_KEY_WRAP, CKR, CKZ_DATA_SPECIFIED, MGF,
                                   Mechanism, NCipherAttribute, UserType)

from .main import CommandError

ROOT = Path(__file__).resolve().parent.parent
CKA_NFKM_APPNAME = int(NCipherAttribute.NFKM_APPNAME)
CKA_NFKM_HASH = int(NCipherAttribute.NFKM_HASH)
CKA_NFKM_ID = int(NCipherAttribute.NFKM_ID)
ACCELERATOR_LABEL = "loadshared accelerator"
CKU_SO = int(UserType.SO)
#: CKM_SHAx / CKG_MGF1_SHAx of the OAEP part, by transfer.OAEP_HASHES name.
OAEP_MECHANISMS = {"SHA-1": (int(Mechanism.SHA_1), int(MGF.SHA1)), "SHA-256": (int(Mechanism.SHA256), int(MGF.SHA256))}
_KEEP: list[Any] = []  # ctypes buffers a packed parameter points into, alive for the process


def library_path() -> str:
    path = os.environ.get("SOFTSHIELD_PKCS11_LIB") or str(ROOT / "build" / "libsoftshield-pkcs11.so")
    if not Path(path).is_file():
        raise CommandError(f"no PKCS#11 library at {path}: build it with `make`")
    return path


def load():
    import pkcs11

    return pkcs11.lib(library_path())


def mapper():
    """python-pkcs11's attribute mapper, taught nShield's CKA_NFKM_* attributes and the transfer
    copy's CKA_SOFTSHIELD_WRAP_KEY_HASH."""
    from pkcs11.attributes import AttributeMapper, handle_bytes, handle_str

    m = AttributeMapper()
    m.register_handler(CKA_NFKM_APPNAME, *handle_str)
    m.register_handler(CKA_NFKM_ID, *handle_bytes)
    m.register_handler(CKA_NFKM_HASH, *handle_bytes)
    m.register_handler(CKA_SOFTSHIELD_WRAP_KEY_HASH, *handle_bytes)
    return m


def token(lib, label: str):
    import pkcs11

    try:
        return lib.get_token(token_label=label)
    except pkcs11.exceptions.NoSuchToken:
        raise CommandError(f"no PKCS#11 token labelled `{label}'") from None


# --- PKCS#11 calls python-pkcs11 lacks ------------------------------------------------------------
class _OaepParams(ctypes.Structure):
    _fields_ = [("hashAlg", ctypes.c_ulong), ("mgf", ctypes.c_ulong), ("source", ctypes.c_ulong),
                ("pSourceData", ctypes.c_void_p), ("ulSourceDataLen", ctypes.c_ulong)]


class _RsaAesKeyWrapParams(ctypes.Structure):
    _fields_ = [("ulAESKeyBits", ctypes.c_ulong), ("pOAEPParams", ctypes.POINTER(_OaepParams))]


def rsa_aes_mechanism() -> Any:
    """python-pkcs11's Mechanism member for CKM_RSA_AES_KEY_WRAP (it accepts only members)."""
    if CKM_RSA_AES_KEY_WRAP not in Mechanism._value2member_map_:
        member = int.__new__(Mechanism, CKM_RSA_AES_KEY_WRAP)
        member._name_, member._value_ = "RSA_AES_KEY_WRAP", CKM_RSA_AES_KEY_WRAP
        Mechanism._value2member_map_[CKM_RSA_AES_KEY_WRAP] = member
        Mechanism._member_map_["RSA_AES_KEY_WRAP"] = member
    return Mechanism(CKM_RSA_AES_KEY_WRAP)


def rsa_aes_param(oaep_hash: str) -> bytes:
    """CK_RSA_AES_KEY_WRAP_PARAMS{256, &CK_RSA_PKCS_OAEP_PARAMS{hash, MGF1(hash), CKZ_DATA_SPECIFIED, empty}}."""
    if oaep_hash not in OAEP_MECHANISMS:
        raise CommandError(f"OAEP hash {oaep_hash}: one of {', '.join(OAEP_MECHANISMS)}")
    hash_mech, mgf = OAEP_MECHANISMS[oaep_hash]
    oaep = _OaepParams(hash_mech, mgf, CKZ_DATA_SPECIFIED, None, 0)
    param = _RsaAesKeyWrapParams(transfer.AES_BITS, ctypes.pointer(oaep))
    _KEEP.extend((oaep, param))
    return bytes(param)


def so_login(session: Any, pins: list[bytes]) -> int:
    """The accelerator slot's SO login with the ACS quorum, one PIN per card in the slot
    (C_LoginBegin/Next/End, CKU_SO); returns K. Raises CommandError with the library's reason."""
    so = ctypes.CDLL(library_path())  # the library python-pkcs11 already loaded: same state
    ulong = ctypes.c_ulong
    for name, args in (("C_LoginBegin", [ulong, ulong, ctypes.POINTER(ulong), ctypes.POINTER(ulong)]),
                       ("C_LoginNext", [ulong, ulong, ctypes.c_char_p, ulong, ctypes.POINTER(ulong)]),
                       ("C_LoginEnd", [ulong, ulong])):
        getattr(so, name).argtypes, getattr(so, name).restype = args, ulong

    def check(rv: int, what: str) -> None:
        if rv:
            name = CKR(rv).name if rv in CKR._value2member_map_ else "vendor-defined"
            raise CommandError(f"{what}: CKR_{name} (0x{rv:08X})")

    k, n, left = ulong(), ulong(), ulong()
    check(so.C_LoginBegin(session.handle, CKU_SO, ctypes.byref(k), ctypes.byref(n)), "ACS login (C_LoginBegin)")
    for index, pin in enumerate(pins[:k.value], 1):
        check(so.C_LoginNext(session.handle, CKU_SO, pin, len(pin), ctypes.byref(left)),
              f"ACS card {index} of {k.value} (C_LoginNext)")
    if len(pins) < k.value:
        raise CommandError(f"the ACS quorum is {k.value} of {n.value} cards; only {len(pins)} presented (--pin-file)")
    check(so.C_LoginEnd(session.handle, CKU_SO), "ACS login (C_LoginEnd)")
    return k.value


def accelerator(lib: Any) -> Any:
    """The accelerator slot's token (the module's own keys, softcard-less)."""
    return token(lib, ACCELERATOR_LABEL)


def int_bytes(value: int) -> bytes:
    """A PKCS#11 big integer (CKA_MODULUS etc.): big-endian, no leading zero bytes, at least one byte."""
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
