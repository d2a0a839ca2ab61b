"""The wrap hot path in client mode (through `softshield hardserver` and the C-only client library)
beside in-process mode, on the same token: the difference is the cost of the socket hop.

python-pkcs11's wrap_key makes two C_WrapKey calls (length query, then the wrap); the client library
sends the length query as the wrap and holds the result for the data call (native/client/held.c), so
client mode pays one round trip per wrap. The note on each client-mode row states the added time per
wrap, and a row "client mode / in-process" gives the ratio of the two rates from the same run.

Many clients: 1 and 4 client processes (bench/clientprobe.py) wrapping at once through one
hardserver with 1 and with 2 worker processes, against the same processes each loading SoftHSM2;
the aggregate wraps/s of all processes, and the 4-process aggregate over one process's rate."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism

import backends
from conftest import measure
from report import record

CLIENT_SO = backends.ROOT / "build" / "libsoftshield-client.so"
MODES = ("in-process", "client mode")
CASES = ("wrap AES_KEY_WRAP_KWP AES-256", "wrap RSA_AES_KEY_WRAP RSA-2048 OAEP-SHA256")
SECONDS: dict[tuple[str, str], float] = {}


@contextlib.contextmanager
def _pointing_at(server: str):
    """SOFTSHIELD_HARDSERVER while a client library initializes (it reads it at C_Initialize), then as
    it was: left set, every later process of the run that loads our library would forward to a
    hardserver started on demand at that address, and time the wrong mode."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTSHIELD_HARDSERVER", server)
        yield


@pytest.fixture(scope="module")
def client_session(sessions):
    """A session on the same "main" token through a hardserver that shares the bench's kmdata."""
    if not CLIENT_SO.is_file():
        pytest.skip("no client library: make build")
    sock = backends.WORK / "hardserver" / "hs.sock"
    log = backends.WORK / "hardserver.log"
    env = {**os.environ, "NFAST_KMDATA": str(backends.KMDATA)}
    # The same server also listens on the loopback address over mutual TLS (tls_session's row).
    proc = subprocess.Popen([sys.executable, "-m", "softshield_cli.main", "hardserver", "--socket", str(sock),
                             "--listen", f"127.0.0.1:{TLS_PORT}"],
                            cwd=backends.ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while f"listening on {sock}" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    with _pointing_at(str(sock)):
        lib = pkcs11.lib(str(CLIENT_SO))
        session = lib.get_token(token_label=backends.OURS.labels["main"]).open(user_pin=backends.USER_PIN, rw=True)
    yield session
    session.close()
    proc.terminate()
    proc.wait(timeout=60)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


TLS_PORT = _free_port()
TLS = "client mode over TLS"


@pytest.fixture(scope="module")
def tls_session(client_session):
    """A session on the same token through the same hardserver, over mutual TLS 1.3 on 127.0.0.1: the
    bench's host enrolled as a network client of its own module (its [nethsm_imports] and
    [hs_clients] in the one kmdata config). A copy of the client library, so that its connections
    (chosen at C_Initialize) are its own."""
    def cli(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "softshield_cli.main", *args], cwd=backends.ROOT, check=True,
                              capture_output=True, text=True,
                              env={**os.environ, "NFAST_KMDATA": str(backends.KMDATA)}).stdout

    esn, kneti = cli("anonkneti", f"127.0.0.1:{TLS_PORT}").split()
    key_hash = re.search(r"client key hash: (\w+)", cli("nethsmenroll", f"127.0.0.1:{TLS_PORT}", esn, kneti)).group(1)
    cli("hardserver", "permit", "--kmdata", str(backends.KMDATA), key_hash)
    copy = backends.WORK / "libsoftshield-client-tls.so"
    copy.write_bytes(CLIENT_SO.read_bytes())
    with _pointing_at(f"tls://127.0.0.1:{TLS_PORT}"):
        lib = pkcs11.lib(str(copy))
        session = lib.get_token(token_label=backends.OURS.labels["main"]).open(user_pin=backends.USER_PIN, rw=True)
    yield session
    session.close()


def _keys(session):
    wrapping = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
    target = session.generate_key(KeyType.AES, 256, store=False, template={Attribute.EXTRACTABLE: True})
    public, _private = session.generate_keypair(KeyType.RSA, 2048, store=False)
    param = backends.rsa_aes_key_wrap_param("sha256")
    return {
        CASES[0]: lambda: wrapping.wrap_key(target, mechanism=Mechanism.AES_KEY_WRAP_KWP),
        CASES[1]: lambda: public.wrap_key(target, mechanism=backends.CKM_RSA_AES_KEY_WRAP, mechanism_param=param),
    }


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_wrap_client_mode(benchmark, sessions, client_session, mode: str, case: str) -> None:
    benchmark.group = f"hardserver {case}"
    session = sessions["ours"] if mode == "in-process" else client_session
    fn = _keys(session)[case]
    assert len(fn()) == 40 or len(fn()) == 256 + 40  # warm, and a real wrap came back
    seconds = measure(benchmark, fn)
    SECONDS[(mode, case)] = seconds
    note = ""
    if mode == "client mode" and ("in-process", case) in SECONDS:
        hop = seconds - SECONDS[("in-process", case)]
        note = f"socket hop +{hop * 1e6:.0f} µs per wrap (1 round trip: the length query carries the wrap)"
    record(f"{case} ({mode})", "ours", 1 / seconds, note=note, group="hardserver")
    if mode == "client mode" and ("in-process", case) in SECONDS:
        record(f"{case}: client mode / in-process", "ours", SECONDS[("in-process", case)] / seconds, unit="x",
               group="hardserver")


def test_wrap_over_tls(benchmark, client_session, tls_session) -> None:
    """One AES-KWP wrap forwarded over mutual TLS on loopback, beside the same wrap over the Unix socket
    (test_wrap_client_mode's row, same server, same run)."""
    case = CASES[0]
    benchmark.group = f"hardserver {case}"
    fn = _keys(tls_session)[case]
    assert len(fn()) == 40
    seconds = measure(benchmark, fn)
    note = ""
    if ("client mode", case) in SECONDS:
        note = (f"TLS on loopback +{(seconds - SECONDS[('client mode', case)]) * 1e6:.0f} µs per wrap over the "
                "Unix socket (2 C_WrapKey round trips, relayed to the socket)")
    record(f"{case} ({TLS})", "ours", 1 / seconds, note=note, group="hardserver")


# ---- many client processes ------------------------------------------------------------------------
PROBE = Path(__file__).with_name("clientprobe.py")
CLIENT_SECONDS = 0.2 if backends.SMOKE else float(os.environ.get("SOFTSHIELD_BENCH_CLIENT_SECONDS", "2"))
ROUNDS = 1 if backends.SMOKE else int(os.environ.get("SOFTSHIELD_BENCH_CLIENT_ROUNDS", "3"))
PROCESSES = (1, 4)
KWP = {"ours": Mechanism.AES_KEY_WRAP_KWP, "softhsm": Mechanism.AES_KEY_WRAP_PAD}
WORKER_COUNTS = (1, 2)
MANY = "wrap AES_KEY_WRAP_KWP AES-256"


@contextlib.contextmanager
def _hardserver(workers: int):
    """A hardserver with `workers` worker processes over the bench's kmdata; yields its socket."""
    sock = backends.WORK / f"hs-w{workers}" / "hs.sock"
    log = backends.WORK / f"hardserver-w{workers}.log"
    env = {**os.environ, "NFAST_KMDATA": str(backends.KMDATA)}
    proc = subprocess.Popen([sys.executable, "-m", "softshield_cli.main", "hardserver", "--socket", str(sock),
                             "--workers", str(workers)], cwd=backends.ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        # Listening, and (with several) every worker taking clients, so that the clients spread.
        while not ("listening on" in log.read_text()
                   and (workers == 1 or len(set(re.findall(r"worker (\d+) \(pid \d+\) takes clients",
                                                           log.read_text()))) == workers)):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def start_clients(count: int, so: Path | str, label: str, mechanism: int, env: dict[str, str],
                  seconds: float = CLIENT_SECONDS) -> list[subprocess.Popen]:
    """`count` bench/clientprobe.py processes, each logged in with its keys made and a warm wrap done,
    waiting for `go`. They start one after the other: SoftHSM2 rewrites its token file in place at
    login, so processes that log in at the same moment can read it half written (CKR_GENERAL_ERROR,
    or no such token)."""
    procs = []
    for _ in range(count):
        proc = subprocess.Popen([sys.executable, str(PROBE), str(so), label, hex(mechanism), str(seconds)],
                                env={**os.environ, **env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready", (so, proc.communicate(timeout=60))
    return procs


def go(procs: list[subprocess.Popen]) -> None:
    """Start every waiting client at once."""
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _clients(count: int, so: Path | str, label: str, mechanism: int, env: dict[str, str]) -> float:
    """Aggregate wraps/s of `count` processes wrapping at once (each its own rate, summed)."""
    procs = start_clients(count, so, label, mechanism, env)
    go(procs)
    rate = 0.0
    for proc in procs:
        out, err = proc.communicate(timeout=60 + 4 * CLIENT_SECONDS)
        assert proc.returncode == 0, err
        wraps, seconds = out.split()
        rate += int(wraps) / float(seconds)
    return rate


def _plural(n: int, word: str, suffix: str = "s") -> str:
    return f"{n} {word}{suffix if n > 1 else ''}"


@pytest.fixture(scope="module")
def hardservers():
    """{workers: socket} for 1 and 2 workers, both running for the whole measurement (idle costs nothing)."""
    with contextlib.ExitStack() as stack:
        yield {w: stack.enter_context(_hardserver(w)) for w in WORKER_COUNTS}


def test_client_processes(sessions, hardservers) -> None:
    """1 and 4 python-pkcs11 processes wrapping at once: through one hardserver with 1 and with 2
    workers, and each process loading SoftHSM2 itself (the peer). The configurations take turns for
    ROUNDS rounds and each figure is the median, so that load from elsewhere on a shared machine
    falls on all of them alike."""
    if not CLIENT_SO.is_file():
        pytest.skip("no client library: make build")
    configs = {"softhsm": (backends.SOFTHSM_SO, backends.SOFTHSM.labels["main"], KWP["softhsm"], {})}
    for workers, sock in hardservers.items():
        configs[f"w{workers}"] = (CLIENT_SO, backends.OURS.labels["main"], KWP["ours"],
                                  {"SOFTSHIELD_HARDSERVER": str(sock)})
    rates: dict[tuple[str, int], list[float]] = {}
    load_before = os.getloadavg()[0]
    for _round in range(ROUNDS):
        for name, (so, label, mechanism, env) in configs.items():
            for processes in PROCESSES:
                rates.setdefault((name, processes), []).append(_clients(processes, so, label, mechanism, env))
    soft_note = "each process loads it; CKM_AES_KEY_WRAP_PAD"
    # The machine's 1-minute load average around the measurement (others' work on a shared machine).
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores"
    for workers in WORKER_COUNTS:
        server = f"hardserver, {_plural(workers, 'worker')}"
        for processes in PROCESSES:
            op = f"{MANY}, {_plural(processes, 'client process', 'es')} at once ({server})"
            record(op, "ours", statistics.median(rates[(f"w{workers}", processes)]), group="hardserver-clients")
            record(op, "softhsm", statistics.median(rates[("softhsm", processes)]), note=soft_note,
                   group="hardserver-clients")
        many, one = PROCESSES[-1], PROCESSES[0]
        op = f"{MANY}: {many} processes over 1, aggregate ({server})"
        for impl, name in (("ours", f"w{workers}"), ("softhsm", "softhsm")):
            scale = statistics.median(m / o for m, o in zip(rates[(name, many)], rates[(name, one)]))
            record(op, impl, scale, unit="x", group="hardserver-clients", note=load if impl == "ours" else "")
