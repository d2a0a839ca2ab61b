"""Fixtures for tests that drive the real .so: python-pkcs11 in this process, pkcs11-tool and a C
host in subprocesses, all sharing one throw-away kmdata (see p11env)."""

from __future__ import annotations

import ctypes
import sys

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from p11env import KEK, KMDATA, ROOT, SO, SO_PIN, USER_PIN, init_token, pkcs11_tool, spare_slot  # noqa: F401
from pkcs11_shim.functions import read_functions


@pytest.fixture(scope="session")
def so_path() -> str:
    assert SO.exists(), "build the library first: make"
    return str(SO)


@pytest.fixture(scope="session")
def lib(so_path: str):
    import pkcs11

    return pkcs11.lib(so_path)


@pytest.fixture(scope="module")
def token_label(so_path: str) -> str:
    return init_token()


@pytest.fixture(scope="module")
def token(lib, token_label: str):
    return lib.get_token(token_label=token_label)


@pytest.fixture
def session(token):
    with token.open(user_pin=USER_PIN, rw=True) as s:
        yield s


@pytest.fixture(scope="module")
def raw(so_path: str, lib):  # lib: python-pkcs11 has called C_Initialize on the same loaded .so
    """The same loaded .so through ctypes, every C_* returning CK_RV, for calls python-pkcs11 cannot make."""
    c = ctypes.CDLL(so_path)
    for function in read_functions():
        getattr(c, function.name).restype = ctypes.c_ulong
    return c


@pytest.fixture
def kek(session):
    """A session AES-256 key of value KEK that may wrap and unwrap."""
    key = session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: False,
        Attribute.VALUE: KEK, Attribute.WRAP: True, Attribute.UNWRAP: True})
    yield key
    key.destroy()


@pytest.fixture
def count_python_calls():
    """count_python_calls(name) -> [n]: n counts the calls of C function `name` that reach its Python
    handler until the test ends (the library runs in this process), so a test shows which side answered."""
    from pkcs11_shim.abi import entry

    ffi = sys.modules["_softshield_pkcs11"].ffi
    attached = []

    def count(name: str) -> list[int]:
        real, calls = entry.load_chapter_of(name), [0]

        def counted(*args):
            calls[0] += 1
            return real(*args)

        entry._attach(ffi, name, counted)
        attached.append((name, real))
        return calls

    yield count
    for name, real in reversed(attached):
        entry._attach(ffi, name, real)
