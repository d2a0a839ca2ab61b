"""A C host that forks while its other threads are inside the library (tests/pkcs11/c/fork_host.c).

Each entry point runs the embedded interpreter's Python under its lock (the GIL). A C host's fork()
does not call PyOS_BeforeFork / PyOS_AfterFork_* as os.fork does, so without the library's own
pthread_atfork handlers (native/python_forks.h) a child forked while another thread is inside an entry
point inherits a GIL held by a thread it does not have: its C_Initialize, which PKCS#11 3.0 §5.1.2
asks of it, never returns. And a thread that was inside C_Initialize or C_Finalize, which let go of
the GIL while they read the world from disk, would leave the library's state lock held in the child
(`library._free_guard_in_child`). The host forks many times while threads call the library without
pause, and every child must initialise, list slots and finalise.
"""

from __future__ import annotations

import re
import shutil
import sys
import subprocess
from pathlib import Path

import pytest

from p11ctypes import c_header
from p11env import ROOT
from pkcs11_shim.constants import CKR

SOURCE = Path(__file__).resolve().parent / "c" / "fork_host.c"
FORKS = 200
#: A child that has not finished by then waits forever (one finishes in well under a second).
CHILD_TIMEOUT_S = 30
CHILD = re.compile(r"^child (\d+) (?:0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+)|(stuck|lost))$", re.M)
#: Each child's calls: refused before its own C_Initialize, which then works (PKCS#11 3.0 §5.1.2).
CHILD_CODES = (CKR.CRYPTOKI_NOT_INITIALIZED, CKR.OK, CKR.OK, CKR.OK)


@pytest.fixture(scope="module")
def fork_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("no C compiler (gcc) to build tests/pkcs11/c/fork_host.c")
    out = tmp_path_factory.mktemp("fork-host") / "fork_host"
    c_header(SOURCE, out.parent)
    cmd = [gcc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "native"),
           "-I", str(out.parent), "-o", str(out), str(SOURCE), "-ldl", "-lpthread"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"compiling the fork host failed:\n{' '.join(cmd)}\n{result.stderr}"
    return out


#: What the host's busy threads call (fork_host.c), and how many of them: C_GenerateRandom and
#: C_GetSessionInfo on an open session, or C_Finalize and C_Initialize (one thread: two would refuse
#: each other with CKR_CRYPTOKI_ALREADY_INITIALIZED / CKR_CRYPTOKI_NOT_INITIALIZED).
BUSY = {"sessions": 2, "initialize": 1}


@pytest.mark.parametrize("busy", list(BUSY))
def test_every_child_forked_beside_busy_threads_initializes(fork_host: Path, so_path: str, token_label: str,
                                                            busy: str) -> None:
    command = [str(fork_host), so_path, token_label, str(FORKS), str(BUSY[busy]), str(CHILD_TIMEOUT_S), busy]
    proc = subprocess.run(command,
                          capture_output=True, text=True, timeout=FORKS * 5 + CHILD_TIMEOUT_S + 120)
    tail = f"\n--- stdout (last lines) ---\n{proc.stdout[-2000:]}\n--- stderr ---\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, f"the fork host failed (exit {proc.returncode}){tail}"
    children = CHILD.findall(proc.stdout)
    ended = [(int(n), s) for n, *_codes, s in children if s]
    assert not ended, f"child {ended[0][0]} of {FORKS} {ended[0][1]}: it never finished its calls{tail}"
    codes = {int(n): tuple(int(c, 16) for c in rvs) for n, *rvs, _s in children}
    assert sorted(codes) == list(range(FORKS)), tail
    failed = {n: rvs for n, rvs in codes.items() if rvs != CHILD_CODES}
    assert not failed, (f"children whose codes (C_GetSlotList, C_Initialize, C_GetSlotList, C_Finalize) are not "
                        f"{CHILD_CODES}: {failed}{tail}")
    loopers = re.search(r"^loopers calls=(\d+) rv=0x([0-9a-f]+)$", proc.stdout, re.M)
    assert loopers is not None, tail
    # The parent's threads kept their session (or library) through every fork, and really were calling in.
    assert int(loopers[2], 16) == CKR.OK and int(loopers[1]) > FORKS, tail
    assert re.search(r"^done 0x0$", proc.stdout, re.M), tail


#: A Python host (the project's interpreter, so the library runs embedded in it) that forks with os.fork
#: after importing a module whose before-fork hook takes a plain lock.
PYTHON_HOST = """
import concurrent.futures.thread, ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
lib.C_Initialize.restype = lib.C_Finalize.restype = ctypes.c_ulong
parent = lib.C_Initialize(None)
pid = os.fork()
if pid == 0:
    os.write(1, b"%d %d\\n" % (lib.C_Initialize(None), lib.C_Finalize(None)))
    os._exit(0)
os.waitpid(pid, 0)
print(parent, lib.C_Finalize(None))
"""


def test_a_python_host_forks_through_os_fork_alone(so_path: str) -> None:
    """In a Python host the library registers no fork handlers: os.fork already calls PyOS_BeforeFork,
    and a second call from the handler would run the before-fork hooks twice on one thread, where
    concurrent.futures' waits for its own lock and the fork never happens."""
    try:
        proc = subprocess.run([sys.executable, "-c", PYTHON_HOST, so_path], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("os.fork in a Python host never returned")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(int(CKR.OK))] * 4, proc.stdout + proc.stderr
