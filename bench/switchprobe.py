"""What contention costs per wrap: wraps/s, CPU time and context switches per wrap, for in-process
threads or for client processes through one hardserver. No profiler needed: getrusage(2) counts
the switches of every thread of this process; for client processes, os.wait4 gives each one's CPU
time, /proc the server's CPU time and the machine's context switches (clients and server together).

    .venv/bin/python bench/switchprobe.py threads kw-wrap|rsa-wrap|rsa-unwrap 1,2,4 [seconds]
    .venv/bin/python bench/switchprobe.py clients 1,4 [workers] [seconds]

"threads": one session per thread on our main token, as bench/test_threads.py. "clients":
python-pkcs11 processes (bench/clientprobe.py) wrapping AES-256 KWP at once through a hardserver
with `workers` worker processes (default 2); the server's CPU is its dispatcher and workers'.
SOFTSHIELD_SPIN_US in the environment reaches the server and the clients alike."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _switches(usage: resource.struct_rusage) -> int:
    return usage.ru_nvcsw + usage.ru_nivcsw


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def threads(case: str, counts: list[int], seconds: float) -> None:
    import wrapcases
    from test_threads import _thread_keys, throughput
    from threadprobe import CASES

    make = CASES[case]
    token = backends.OURS.token("main")
    sessions = [token.open(user_pin=backends.USER_PIN, rw=True)] + [token.open(rw=True) for _ in range(max(counts))]
    base = wrapcases.make_keys("ours", sessions[0])
    fns = [make(_thread_keys(base, s)) for s in sessions[1:]]
    for fn in fns:
        fn()
    for n in counts:
        before = resource.getrusage(resource.RUSAGE_SELF)
        rate = throughput(fns[:n], seconds)
        after = resource.getrusage(resource.RUSAGE_SELF)
        wraps = rate * seconds
        print(f"{case}, {n} thread(s): {rate:,.0f}/s, CPU {(_cpu(after) - _cpu(before)) / wraps * 1e6:.1f} us "
              f"and {(_switches(after) - _switches(before)) / wraps:.2f} context switches per wrap")


def _server_ticks(pids: list[int]) -> int:
    """CPU ticks of the server's processes (their ended connection threads included)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks


def _machine_switches() -> int:
    """Context switches on the whole machine since boot (/proc/stat)."""
    line = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("ctxt "))
    return int(line.split()[1])


def clients(counts: list[int], workers: int, seconds: float) -> None:
    import test_bench_hardserver as hs

    backends.OURS.lib  # the tokens, before the server reads the kmdata
    label = backends.OURS.labels["main"]
    with hs._hardserver(workers) as sock:
        out = subprocess.run(["pgrep", "-f", "--", f"--socket {sock}"], capture_output=True, text=True).stdout
        server = [int(p) for p in out.split()]
        for n in counts:
            procs = hs.start_clients(n, hs.CLIENT_SO, label, hs.KWP["ours"], {"SOFTSHIELD_HARDSERVER": str(sock)},
                                     seconds)
            ticks, switches = _server_ticks(server), _machine_switches()
            hs.go(procs)
            wraps = rate = client_cpu = 0.0
            for proc in procs:
                line = proc.stdout.read()
                _pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                assert proc.returncode == 0, proc.stderr.read()
                count, elapsed = line.split()
                wraps += int(count)
                rate += int(count) / float(elapsed)
                client_cpu += _cpu(usage)  # start-up and login included
            ticks, switches = _server_ticks(server) - ticks, _machine_switches() - switches
            print(f"{n} client(s), {workers} worker(s): {rate:,.0f}/s; per wrap: server CPU "
                  f"{ticks / TICK / wraps * 1e6:.1f} us, clients' CPU {client_cpu / wraps * 1e6:.1f} us (their "
                  f"start-up included), {switches / wraps:.2f} context switches on the machine")


def main(argv: list[str]) -> None:
    if argv[0] == "threads":
        threads(argv[1], [int(n) for n in argv[2].split(",")], float(argv[3]) if len(argv) > 3 else 2.0)
    elif argv[0] == "clients":
        clients([int(n) for n in argv[1].split(",")], int(argv[2]) if len(argv) > 2 else 2,
                float(argv[3]) if len(argv) > 3 else 2.0)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
