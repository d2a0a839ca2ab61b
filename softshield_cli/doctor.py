"""`softshield doctor`: check an installation and print the fix for each problem.

Each check is a function returning (ok, what was found, the fix); the checks run in the order a
problem would block the next one: the library file, the library loading in a C host (pkcs11-tool
-I, a fresh process, the way any application loads it), the config file, the kmdata directory and
its Security World, then the tools the recipes (docs/recipes) use. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from .listing import emit
from .main import command

ENGINE = Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so")
P11_KIT_PROXY = Path("/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so")

Check = tuple[bool, str, str]


def _library() -> Path:
    from .p11client import ROOT

    return Path(os.environ.get("SOFTSHIELD_PKCS11_LIB") or ROOT / "build" / "libsoftshield-pkcs11.so")


def check_library_file() -> Check:
    so = _library()
    if so.is_file():
        return True, str(so), ""
    return False, f"no library at {so}", "build it: make (or set SOFTSHIELD_PKCS11_LIB to the .so)"


def check_c_host() -> Check:
    so = _library()
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        return False, "pkcs11-tool not installed", "apt-get install opensc"
    if not so.is_file():
        return False, "no library to load", "build it: make"
    import tempfile

    from emulator import paths
    from pkcs11_shim import config

    with tempfile.TemporaryDirectory(prefix="softshield-doctor-") as scratch:
        env = dict(os.environ)
        if not paths.world_exists(paths.resolve_kmdata(config.Config.load().kmdata)):
            # The library makes a world on first use; a check must not: it loads against a scratch kmdata.
            env.pop("NFAST_KMLOCAL", None)
            env["NFAST_KMDATA"] = scratch
        try:
            result = subprocess.run([tool, "--module", str(so), "-I"], capture_output=True, text=True, timeout=60,
                                    env=env)
        except subprocess.TimeoutExpired:
            return False, "pkcs11-tool -I did not finish in 60 s", "run it by hand with CKNFAST_DEBUG=10 to see where it stops"
    text = result.stdout + result.stderr
    if result.returncode == 0 and "Cryptoki version" in text:
        version = next((l.split("version", 1)[1].strip(" :") for l in text.splitlines() if "Cryptoki version" in l), "")
        served = next((l.split(None, 1)[1].rsplit(" (ver", 1)[0] for l in text.splitlines() if l.startswith("Library")), "")
        return True, f"C_Initialize/C_GetInfo ok from a C host (Cryptoki {version}, {served})", ""
    lines = [l.strip() for l in text.splitlines()]
    # The exception line of an embedded-Python traceback says most; else pkcs11-tool's own error.
    reason = next((l for l in lines if re.match(r"^\w+(Error|Exception): ", l)), None) or next(
        (l for l in lines if "error" in l.lower()), text.strip()[:200])
    if "no Python handler" in text:
        fix = "the library lists a function no Python handler answers: finish the handler or rebuild (make)"
    elif "No module named" in text or "Python failed" in text or "embedding" in text:
        fix = "the embedded Python cannot import the project: rebuild with the venv's python (make), or set SOFTSHIELD_PYTHONPATH"
    else:
        fix = "run `CKNFAST_DEBUG=10 pkcs11-tool --module SO -I` and read the log"
    return False, f"the library does not start in a C host: {reason}", fix


def check_config() -> Check:
    from pkcs11_shim import config, mechanism_policy

    path = config.toml_path()
    try:
        doc = config.read_toml(path)
    except ValueError as exc:
        return False, f"config file does not parse: {exc}", f"fix the TOML in {path} (see `softshield config example`)"
    loaded = config.Config.load()
    for entries in loaded.mechanism_rules.values():
        for entry in entries:
            try:
                mechanism_policy.mechanism_number(entry.lstrip("+-"))
            except ValueError:
                return False, f"{path}: unknown mechanism {entry}", "use CKM_ names (pkcs11-tool -M lists the library's)"
    return True, f"{path}" + ("" if doc else " (not present: defaults)"), ""


def check_kmdata() -> Check:
    from emulator import paths
    from pkcs11_shim import config

    kmdata = paths.resolve_kmdata(config.Config.load().kmdata)
    if not kmdata.exists():
        parent = kmdata.parent
        if os.access(parent if parent.exists() else Path.home(), os.W_OK):
            return True, f"{kmdata} (created on first use)", ""
        return False, f"{kmdata} does not exist and cannot be created", f"mkdir -p {kmdata}, or export NFAST_KMDATA=DIR"
    if not os.access(kmdata, os.R_OK | os.W_OK | os.X_OK):
        return False, f"{kmdata} is not readable and writable by this user", f"chown -R $USER {kmdata} (or chmod u+rwx)"
    local = paths.local_dir(kmdata)
    unreadable = [p.name for p in local.glob("*") if p.is_file() and not os.access(p, os.R_OK)] if local.is_dir() else []
    if unreadable:
        return False, f"{len(unreadable)} unreadable files in {local} (e.g. {unreadable[0]})", f"chmod u+r {local}/*"
    return True, str(kmdata), ""


def check_world() -> Check:
    from emulator import paths
    from pkcs11_shim import config

    kmdata = paths.resolve_kmdata(config.Config.load().kmdata)
    world = paths.local_dir(kmdata) / paths.WORLD_FILE
    if not world.is_file():
        return True, "no Security World yet: the library makes one on first use", "or: softshield new-world --initialize"
    modules = sorted(p.name for p in paths.local_dir(kmdata).glob("module_*"))
    if not modules:
        return False, "a world file but no module file", "softshield new-world --program (enrol this module)"
    return True, f"world present, module {modules[0].removeprefix('module_')}", ""


def check_tools() -> Check:
    missing = [f"{name} ({pkg})" for name, pkg, present in (
        ("openssl pkcs11 engine", "libengine-pkcs11-openssl", ENGINE.is_file()),
        ("p11-kit-proxy", "p11-kit", P11_KIT_PROXY.is_file()),
        ("p11tool", "gnutls-bin", shutil.which("p11tool") is not None),
    ) if not present]
    if missing:
        return False, "missing: " + ", ".join(missing), "apt-get install " + " ".join(m.split("(")[1][:-1] for m in missing)
    return True, "openssl engine, p11-kit-proxy, p11tool", ""


CHECKS: tuple[tuple[str, Callable[[], Check]], ...] = (
    ("library file", check_library_file),
    ("C host loads the library", check_c_host),
    ("config file", check_config),
    ("kmdata", check_kmdata),
    ("security world", check_world),
    ("ecosystem tools", check_tools),
)


@command("doctor", "setup", "check the installation and print the fix for each problem")
class Doctor:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        rows = []
        for name, check in CHECKS:
            try:
                ok, found, fix = check()
            except Exception as exc:  # a check that crashes is itself a finding
                ok, found, fix = False, f"{type(exc).__name__}: {exc}", "report this"
            rows.append({"check": name, "status": "ok" if ok else "FAIL", "found": found, "fix": fix})
        emit(rows, ("check", "status", "found", "fix"), args.json)
        return 0 if all(r["status"] == "ok" for r in rows) else 1
