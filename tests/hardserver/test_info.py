"""C_GetInfo in client mode answers what the in-process library answers: cryptokiVersion 3.2 through
every table (docs/compatibility.md, PQC section), whichever table the host obtained last. The same C host
(tests/pqc/c/host32.c) and the same expectations as tests/pqc/test_c_interfaces.py, run against the
client library; before, the client rewrote the version to the table obtained last (2.40 after
C_GetFunctionList, 3.0 after C_GetInterface 3.0)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from hsenv import CLIENT_SO, ROOT, USER_PIN
from p11ctypes import CK_INFO, CK_VERSION, RawClient

sys.path[:0] = [str(ROOT / "tests" / "pqc"), str(ROOT / "tests" / "pkcs11")]  # its imports (p11env)
from test_c_interfaces import EXPECTED, compile_host32  # noqa: E402  (one list of expectations for both modes)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    return compile_host32(tmp_path_factory.mktemp("host32"))


def test_c_host_sees_3_2_through_every_table_in_client_mode(server, token, host) -> None:
    result = subprocess.run([str(host), str(CLIENT_SO), token, USER_PIN], capture_output=True, text=True,
                            timeout=120, env=server.env)
    got = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    mismatches = {check: (want, got.get(check)) for check, want in EXPECTED.items() if got.get(check) != want}
    assert not mismatches, f"{mismatches}\nstderr: {result.stderr[-2000:]}"


def test_get_info_after_the_2_40_table_in_this_process(server) -> None:
    """python-pkcs11's order: C_GetFunctionList (the 2.40 table), then C_GetInfo."""
    raw = RawClient()
    raw.lib.C_GetFunctionList.restype = raw.lib.C_GetInfo.restype = ctypes.c_ulong
    assert raw.initialize(server) == 0
    try:
        table = ctypes.c_void_p()
        assert raw.lib.C_GetFunctionList(ctypes.byref(table)) == 0
        assert ctypes.cast(table, ctypes.POINTER(CK_VERSION)).contents.minor == 40  # the 2.40 table...
        info = CK_INFO()
        assert raw.lib.C_GetInfo(ctypes.byref(info)) == 0
        assert (info.cryptokiVersion.major, info.cryptokiVersion.minor) == (3, 2)  # ... and 3.2 all the same
        assert info.manufacturerID.rstrip() != b""
    finally:
        raw.finalize()
