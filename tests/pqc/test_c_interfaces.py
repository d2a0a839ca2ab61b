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

from p11ctypes import c_header
from pkcs11_shim.constants import CKR

HOST = Path(__file__).resolve().parent / "c" / "host32.c"

OK = f"{CKR.OK:#x}"  # the host prints each CK_RV as 0x%lx
EXPECTED = {
    "interface.3.2": f"{OK} major=3 minor=2",
    "interface.3.0": f"{OK} major=3 minor=0",
    "interface.2.40": f"{OK} major=2 minor=40",
    "same-initialize": f"{OK} same=1",
    "2.40.C_Initialize": OK,
    "2.40.C_GetInfo": f"{OK} major=3 minor=2",
    "2.40.C_GetSlotList": OK,
    "2.40.C_OpenSession": OK,
    "2.40.C_Login": OK,
    "2.40.C_GenerateKeyPair": OK,
    "3.0.C_GetInfo": f"{OK} major=3 minor=2",
    "C_GetFunctionList": f"{OK} table=2.40",
    "C_GetFunctionList.C_GetInfo": f"{OK} major=3 minor=2",  # python-pkcs11's order of calls
    "3.0.C_SessionCancel": OK,
    "interface.3.2-again": f"{OK} major=3 minor=2",
    "3.2.C_GetInfo": f"{OK} major=3 minor=2",
    "3.2.C_EncapsulateKey.length": f"{OK} length=1088 key=0",  # length query: no key made
    "3.2.C_EncapsulateKey": OK,
    "3.2.C_DecapsulateKey": OK,
    "3.2.same-secret": f"{OK} equal=1",
    "3.2.C_VerifySignatureInit": f"{CKR.KEY_TYPE_INCONSISTENT:#x}",  # an ML-KEM key, an ML-DSA mechanism
    "done": OK,
}


def compile_host32(folder: Path) -> Path:
    """host32.c built into `folder` (also used by tests/hardserver/test_info.py against the client)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "no C compiler (gcc) to build tests/pqc/c/host32.c"
    out = folder / "host32"
    c_header(HOST, folder)
    subprocess.run([gcc, "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "native"), "-I", str(folder),
                    "-o", str(out), str(HOST), "-ldl"], check=True, capture_output=True, text=True)
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
