"""Run in a child process (python_child): raw PKCS#11 calls on the .so through ctypes, including
nShield's C_LoginBegin / C_LoginNext / C_LoginEnd, which no function table carries. Prints one JSON
document for the test to check."""

from __future__ import annotations

import ctypes
import json
import sys
from ctypes import byref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import p11ctypes as ck  # noqa: E402
from pkcs11_shim.constants import CKR, Attribute, KeyType, Mechanism, ObjectClass, UserType  # noqa: E402

U = ck.CK_ULONG


def client() -> ck.Client:
    c = ck.Client(ck.load())
    c.initialize()
    return c


def labels(c: ck.Client) -> list[str]:
    return [c.token_info(s).label.decode().rstrip() for s in c.slots()]


def login_begin(c: ck.Client, s: int) -> tuple[int, int]:
    k, n = U(), U()
    ck.call(c.lib, "C_LoginBegin", U(s), U(UserType.USER), byref(k), byref(n))
    return k.value, n.value


def login_next(c: ck.Client, s: int, pin: bytes) -> int:
    """Shares still needed; raises ck.CkError with the CKR on failure."""
    left = U()
    ck.call(c.lib, "C_LoginNext", U(s), U(UserType.USER), pin, U(len(pin)), byref(left))
    return left.value


def login_end(c: ck.Client, s: int) -> None:
    ck.call(c.lib, "C_LoginEnd", U(s), U(UserType.USER))


def login_rv(c: ck.Client, s: int, pin: bytes) -> int:
    return ck.raw(c.lib, "C_Login", U(s), U(UserType.USER), pin, U(len(pin)))


def private_labels(c: ck.Client, s: int) -> list[str]:
    return [c.get_attribute(s, h, Attribute.LABEL).decode()
            for h in c.find(s, [(Attribute.CLASS, ObjectClass.PRIVATE_KEY)])]


def sign_verifies(c: ck.Client, s: int, label: str) -> bool:
    """Sign with the private key `label` and verify with `cryptography` against its public half."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    [priv] = c.find(s, [(Attribute.CLASS, ObjectClass.PRIVATE_KEY), (Attribute.LABEL, label)])
    [pub] = c.find(s, [(Attribute.CLASS, ObjectClass.PUBLIC_KEY), (Attribute.LABEL, label)])
    n = int.from_bytes(c.get_attribute(s, pub, Attribute.MODULUS), "big")
    e = int.from_bytes(c.get_attribute(s, pub, Attribute.PUBLIC_EXPONENT), "big")
    data = b"signed inside the card set's slot"
    sig = c.sign(s, Mechanism.SHA256_RSA_PKCS, priv, data)
    rsa.RSAPublicNumbers(e, n).public_key().verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    return True


def emit(doc: dict) -> None:
    print(json.dumps(doc))


def error_code(fn, *args) -> int:
    try:
        fn(*args)
    except ck.CkError as exc:
        return exc.code
    return CKR.OK


__all__ = ["ck", "client", "labels", "login_begin", "login_next", "login_end", "login_rv", "private_labels",
           "sign_verifies", "emit", "error_code", "ctypes", "CKR", "Attribute", "KeyType", "Mechanism", "ObjectClass",
           "UserType"]
