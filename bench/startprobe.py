"""Start-up cost of a PKCS#11 module: what a process pays before its first answer.

    .venv/bin/python bench/startprobe.py [MODULE] [--label NAME] [--runs 10] [--keys 100] [--header]
                                         [--env NAME=VALUE ...]

Makes a throw-away world (NFAST_KMDATA, and SOFTHSM2_CONF for SoftHSM2) with one token holding
`--keys` objects (AES keys plus the RSA-2048 key the sign uses), made through the module itself
(pkcs11-tool --init-token, then python-pkcs11 in a child process), then times whole process runs as a
test suite starts them: `pkcs11-tool --module MODULE -L` and one `pkcs11-tool --sign` (login, find,
C_Sign). Prints one markdown table row: the median and min of `--runs` runs of each, in seconds of
wall time, and the median CPU time (user + system) of the `-L` process, which a machine shared with
other work disturbs less; `--header` prints the table's header first. Any module works (ours embedded, ours forwarded with
`--env SOFTSHIELD_MODE=hardserver`: the library starts a server on a socket of the probe's own and
the probe stops it at the end, SoftHSM2), so one run can compare them row by row.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODULE = ROOT / "build" / "libsoftshield-pkcs11.so"
SO_PIN = "12345678"
USER_PIN = "1234"
TOKEN_LABEL = "startprobe"
SIGN_LABEL = "startprobe-sign"
HEADER = ("| module | keys | runs | `pkcs11-tool -L` median (s) | min (s) | one `--sign` median (s) | min (s) "
          "| `-L` CPU median (s) |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")


def pkcs11_tool(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        raise SystemExit("startprobe: pkcs11-tool (Debian package opensc) is not installed")
    result = subprocess.run([tool, "--module", module, *args], capture_output=True, text=True, env=env,
                            timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"startprobe: pkcs11-tool {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def spare_slot(module: str, env: dict[str, str]) -> str:
    """The first slot whose token is not initialised, as pkcs11-tool lists it."""
    slot = None
    for line in pkcs11_tool(module, env, "-L").stdout.splitlines():
        if line.startswith("Slot "):
            slot = line.split("(")[1].split(")")[0]
        elif "uninitialized" in line and slot is not None:
            return slot
    raise SystemExit("startprobe: the module offers no uninitialised token")


def populate(module: str, keys: int) -> None:
    """Child-process half of the set-up: `keys` token objects on the token, one of them RSA."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism

    token = pkcs11.lib(module).get_token(token_label=TOKEN_LABEL)
    with token.open(user_pin=USER_PIN, rw=True) as session:
        session.generate_keypair(KeyType.RSA, 2048, label=SIGN_LABEL, id=b"\x01", store=True,
                                 mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN)
        for i in range(keys - 1):
            session.generate_key(KeyType.AES, 256, label=f"startprobe-aes-{i}", store=True,
                                 template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})


def make_world(module: str, keys: int, env: dict[str, str]) -> None:
    slot = spare_slot(module, env)
    pkcs11_tool(module, env, "--init-token", "--slot", slot, "--label", TOKEN_LABEL, "--so-pin", SO_PIN)
    pkcs11_tool(module, env, "--init-pin", "--token-label", TOKEN_LABEL, "--login", "--login-type", "so",
                "--so-pin", SO_PIN, "--pin", USER_PIN)
    subprocess.run([sys.executable, __file__, module, "--populate", str(keys)], env=env, check=True, timeout=600)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"startprobe: {' '.join(argv)} failed:\n{result.stdout!r}{result.stderr!r}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def softhsm_env(folder: Path) -> dict[str, str]:
    """SoftHSM2 reads its token folder from a config file; harmless for every other module."""
    tokens = folder / "softhsm-tokens"
    tokens.mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    return {"SOFTHSM2_CONF": str(conf)}


def warn_without_bytecode() -> None:
    """The embedded interpreter compiles every module it imports that has no current .pyc and, with
    PYTHONDONTWRITEBYTECODE set, never keeps the result: each run would pay ~0.1 s of compiling."""
    import importlib.util

    for package in ("pkcs11_shim", "emulator"):
        source = ROOT / package / "__init__.py"
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file() or cached.stat().st_mtime < source.stat().st_mtime:
            print(f"startprobe: {package} has no compiled bytecode, so every run compiles its sources "
                  f"(PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}); "
                  f"`{sys.executable} -m compileall -q pkcs11_shim emulator` first measures what a user sees",
                  file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", nargs="?", default=str(DEFAULT_MODULE))
    parser.add_argument("--label", help="the row's first column (default: the module's file name)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--header", action="store_true", help="print the table header first")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for every run (e.g. SOFTSHIELD_MODE=hardserver)")
    parser.add_argument("--populate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    module = str(Path(args.module).resolve())
    if args.populate is not None:
        populate(module, args.populate)
        return 0
    if args.keys < 1 or args.runs < 1:
        parser.error("--keys and --runs must be at least 1")
    warn_without_bytecode()
    with tempfile.TemporaryDirectory(prefix="startprobe-") as tmp:
        folder = Path(tmp)
        kmdata = folder / "kmdata"
        kmdata.mkdir()
        env = {**os.environ, "NFAST_KMDATA": str(kmdata), **softhsm_env(folder)}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep:
                parser.error(f"--env {item}: expected NAME=VALUE")
            env[name] = value
        forwarded = env.get("SOFTSHIELD_MODE") == "hardserver"
        if forwarded:
            # The server the library starts opens this probe's world: give it a socket of its own.
            env.setdefault("SOFTSHIELD_HARDSERVER", str(folder / "run" / "hardserver.sock"))
        make_world(module, args.keys, env)
        message = folder / "message"
        message.write_bytes(b"startprobe message")
        list_argv = [shutil.which("pkcs11-tool") or "pkcs11-tool", "--module", module, "-L"]
        sign_argv = [list_argv[0], "--module", module, "--token-label", TOKEN_LABEL, "--login", "--pin", USER_PIN,
                     "--sign", "-m", "SHA256-RSA-PKCS", "--label", SIGN_LABEL,
                     "-i", str(message), "-o", str(folder / "signature")]
        timed(list_argv, env)  # warm the page cache: every measured run then starts alike
        list_runs = [timed(list_argv, env) for _ in range(args.runs)]
        signs = [timed(sign_argv, env)[0] for _ in range(args.runs)]
        if forwarded:
            subprocess.run([sys.executable, "-m", "softshield_cli.main", "hardserver", "--stop", "--socket",
                            env["SOFTSHIELD_HARDSERVER"]], cwd=ROOT, capture_output=True, timeout=60)
    lists = [wall for wall, _cpu in list_runs]
    list_cpu = statistics.median(cpu for _wall, cpu in list_runs)
    if args.header:
        print(HEADER)
    label = args.label or Path(module).name
    print(f"| {label} | {args.keys} | {args.runs} | {statistics.median(lists):.3f} | {min(lists):.3f} "
          f"| {statistics.median(signs):.3f} | {min(signs):.3f} | {list_cpu:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
