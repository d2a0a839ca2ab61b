"""The "PKCS 11" interfaces 3.2, 3.0 and 2.40 from a C host (tests/pqc/c/host32.c, compiled here):
each is handed out by C_GetInterface with its own version, functions of each table work, C_GetInfo
reports 3.2 (the version the library is written to) through every table and after C_GetFunctionList,
and the 3.2 KEM calls work from C."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from p11env import ROOT, SO, USER_PIN, init_token

HOST = Path(__file__).resolve().parent / "c" / "host32.c"

EXPECTED = {
    "interface.3.2": "0x0 major=3 minor=2",
    "interface.3.0": "0x0 major=3 minor=0",
    "interface.2.40": "0x0 major=2 minor=40",
    "same-initialize": "0x0 same=1",
    "2.40.C_Initialize": "0x0",
    "2.40.C_GetInfo": "0x0 major=3 minor=2",
    "2.40.C_GetSlotList": "0x0",
    "2.40.C_OpenSession": "0x0",
    "2.40.C_Login": "0x0",
    "2.40.C_GenerateKeyPair": "0x0",
    "3.0.C_GetInfo": "0x0 major=3 minor=2",
    "C_GetFunctionList": "0x0 table=2.40",
    "C_GetFunctionList.C_GetInfo": "0x0 major=3 minor=2",  # python-pkcs11's order of calls
    "3.0.C_SessionCancel": "0x0",
    "interface.3.2-again": "0x0 major=3 minor=2",
    "3.2.C_GetInfo": "0x0 major=3 minor=2",
    "3.2.C_EncapsulateKey.length": "0x0 length=1088 key=0",  # length query: no key made
    "3.2.C_EncapsulateKey": "0x0",
    "3.2.C_DecapsulateKey": "0x0",
    "3.2.same-secret": "0x0 equal=1",
    "3.2.C_VerifySignatureInit": "0x63",  # CKR_KEY_TYPE_INCONSISTENT: an ML-KEM key, an ML-DSA mechanism
    "done": "0x0",
}


def compile_host32(folder: Path) -> Path:
    """host32.c built into `folder` (also used by tests/hardserver/test_info.py against the client)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "no C compiler (gcc) to build tests/pqc/c/host32.c"
    out = folder / "host32"
    subprocess.run([gcc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "native"), "-o",
                    str(out), str(HOST), "-ldl"], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_host32(tmp_path_factory.mktemp("host32"))


def test_interfaces_3_2_3_0_2_40_from_c(host: Path) -> None:
    label = init_token()
    result = subprocess.run([str(host), str(SO), label, USER_PIN], capture_output=True, text=True, timeout=120)
    got = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    mismatches = {check: (want, got.get(check)) for check, want in EXPECTED.items() if got.get(check) != want}
    assert not mismatches, f"{mismatches}\nstderr: {result.stderr[-2000:]}"


def test_python_pkcs11_sees_3_2(lib) -> None:
    # python-pkcs11 takes the 2.40 table (C_GetFunctionList) and reads C_GetInfo right after it.
    assert tuple(lib.cryptoki_version) == (3, 2)
