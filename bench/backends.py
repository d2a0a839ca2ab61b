"""What each benchmark runs against: our .so, SoftHSM2 (its own temporary token), opencryptoki's
soft token (a second C peer, where the package is installed and this process may set it up), and
`cryptography` in-process (the ceiling). Tokens are made the way their users make them
(pkcs11-tool for ours, softhsm2-util for SoftHSM2, pkcsconf for opencryptoki) before python-pkcs11
loads a library."""

from __future__ import annotations

import atexit
import ctypes
import grp
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pkcs11
from pkcs11 import Mechanism

ROOT = Path(__file__).resolve().parents[1]
OURS_SO = str(ROOT / "build" / "libsoftshield-pkcs11.so")
SOFTHSM_SO = next((p for p in ("/usr/lib/softhsm/libsofthsm2.so",
                               "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so") if os.path.exists(p)),
                  "/usr/lib/softhsm/libsofthsm2.so")
SO_PIN = "12345678"
USER_PIN = "1234"

#: Small sizes for the CI smoke run (tests/test_bench_smoke.py sets it).
SMOKE = os.environ.get("SOFTSHIELD_BENCH_SMOKE") == "1"

# The library reads NFAST_KMDATA at C_Initialize, SoftHSM2 reads SOFTHSM2_CONF: set both first.
WORK = Path(tempfile.mkdtemp(prefix="softshield-bench-"))
KMDATA = WORK / "kmdata"
os.environ["NFAST_KMDATA"] = str(KMDATA)
SOFTHSM_DIR = WORK / "softhsm-tokens"
SOFTHSM_DIR.mkdir()
SOFTHSM_CONF = WORK / "softhsm2.conf"
SOFTHSM_CONF.write_text(f"directories.tokendir = {SOFTHSM_DIR}\nobjectstore.backend = file\nlog.level = ERROR\n")
os.environ["SOFTHSM2_CONF"] = str(SOFTHSM_CONF)


def _mechanism(value: int, name: str) -> Mechanism:
    """A Mechanism member for a number python-pkcs11 0.10.1 lacks (it accepts only members)."""
    if value in Mechanism._value2member_map_:
        return Mechanism(value)
    member = int.__new__(Mechanism, value)
    member._name_, member._value_ = name, value
    Mechanism._value2member_map_[value] = member
    Mechanism._member_map_[name] = member
    return member


CKM_RSA_AES_KEY_WRAP = _mechanism(0x1054, "RSA_AES_KEY_WRAP")
CKM_SHA_1, CKM_SHA256 = 0x220, 0x250
CKG_MGF1_SHA1, CKG_MGF1_SHA256 = 1, 2
CKZ_DATA_SPECIFIED = 1


class _Oaep(ctypes.Structure):
    _fields_ = [("hashAlg", ctypes.c_ulong), ("mgf", ctypes.c_ulong), ("source", ctypes.c_ulong),
                ("pSourceData", ctypes.c_void_p), ("ulSourceDataLen", ctypes.c_ulong)]


class _RsaAesKeyWrap(ctypes.Structure):
    _fields_ = [("ulAESKeyBits", ctypes.c_ulong), ("pOAEPParams", ctypes.POINTER(_Oaep))]


_KEEP: list = []  # the OAEP structs the raw parameters point into


def rsa_aes_key_wrap_param(sha: str, aes_bits: int = 256) -> bytes:
    """CK_RSA_AES_KEY_WRAP_PARAMS as raw bytes (python-pkcs11's escape hatch for such mechanisms)."""
    hash_alg, mgf = (CKM_SHA_1, CKG_MGF1_SHA1) if sha == "sha1" else (CKM_SHA256, CKG_MGF1_SHA256)
    oaep = _Oaep(hash_alg, mgf, CKZ_DATA_SPECIFIED, None, 0)
    _KEEP.append(oaep)
    return bytes(_RsaAesKeyWrap(aes_bits, ctypes.pointer(oaep)))


def _run(*cmd: str, env: dict | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def _init_ours(label: str) -> None:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        raise RuntimeError("pkcs11-tool (opensc) is needed to initialise our token")
    slots = _run(tool, "--module", OURS_SO, "--list-slots")
    slot = None
    for line in slots.splitlines():
        if line.startswith("Slot "):
            current = int(line.split("(")[1].split(")")[0], 16)
        if "uninitialized" in line and slot is None:
            slot = current
    if slot is None:
        raise RuntimeError(f"no uninitialised slot:\n{slots}")
    _run(tool, "--module", OURS_SO, "--init-token", "--slot", str(slot), "--label", label, "--so-pin", SO_PIN)
    _run(tool, "--module", OURS_SO, "--init-pin", "--token-label", label, "--login", "--login-type", "so",
         "--so-pin", SO_PIN, "--pin", USER_PIN)


def _init_softhsm(label: str) -> None:
    _run("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", USER_PIN)


class Backend:
    """One PKCS#11 library with its tokens ("main" for the hot paths, "find" for the object count
    series), all made before python-pkcs11 loads the library."""

    def __init__(self, name: str, so: str, init, tokens: tuple[str, ...] = ("main", "find")) -> None:
        self.name, self.so, self._init, self.tokens = name, so, init, tokens
        self._lib = None
        self.labels: dict[str, str] = {}

    @property
    def lib(self):
        if self._lib is None:
            for role in self.tokens:
                self.labels[role] = f"bench-{role}-{uuid.uuid4().hex[:6]}"
                self._init(self.labels[role])
            self._lib = pkcs11.lib(self.so)
        return self._lib

    def token(self, role: str):
        lib = self.lib
        return lib.get_token(token_label=self.labels[role])


OURS = Backend("ours", OURS_SO, _init_ours)
SOFTHSM = Backend("softhsm", SOFTHSM_SO, _init_softhsm)
BACKENDS = {"ours": OURS, "softhsm": SOFTHSM}


# --- opencryptoki's soft token ---------------------------------------------------------------------
# opencryptoki 3.8 (Debian 12) compiles its paths in: token data under /var/lib/opencryptoki/swtok,
# the slot daemon's socket and pid file in /run, locks in /run/lock/opencryptoki, and one soft
# token (slot 3 in the packaged opencryptoki.conf). A fresh token under a temporary directory is
# made by giving this process (and the pkcsslotd it starts) mount and IPC namespaces of their own
# and bind-mounting temporary directories over those paths: nothing of the machine's own
# opencryptoki (or another run's) is seen or touched, and the mounts end with the process. That
# needs root (CAP_SYS_ADMIN) and a single-threaded process (the conftest imports this first);
# without either, or without the package, the column is skipped with the reason.
OPENCRYPTOKI_SO = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"
OPENCRYPTOKI_CONF = "/etc/opencryptoki/opencryptoki.conf"
OPENCRYPTOKI_DEFAULT_SO_PIN = "87654321"  # what a fresh soft token's SO PIN is
_CLONE_NEWNS, _CLONE_NEWIPC = 0x00020000, 0x08000000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 1 << 18


class OpencryptokiSoftToken:
    """A private pkcsslotd with a fresh soft token in a temporary data dir; `reason` says why not."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.slot: int | None = None
        self.pid: int | None = None
        self.dir: Path | None = None

    @staticmethod
    def _mount(libc, source: str | None, target: str, flags: int) -> None:
        if libc.mount(source.encode() if source else None, target.encode(), None, flags, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {source or ''} on {target}: {os.strerror(err)}")

    @staticmethod
    def _soft_slot() -> int:
        """The slot whose stdll is the soft token, from the package's opencryptoki.conf."""
        slot = None
        for line in Path(OPENCRYPTOKI_CONF).read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "slot" and words[1].isdigit():
                slot = int(words[1])
            elif "libpkcs11_sw.so" in line and slot is not None:
                return slot
        raise RuntimeError(f"{OPENCRYPTOKI_CONF} names no slot with libpkcs11_sw.so")

    def _private_run(self, libc, gid: int) -> None:
        """A /run of our own: the machine's entries bound in again, but an empty lock directory and
        room for pkcsslotd's socket and pid file."""
        run = self.dir / "run"
        run.mkdir(mode=0o755)
        for entry in os.scandir("/run"):
            if entry.name == "lock":
                continue
            target = run / entry.name
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir():
                target.mkdir()
                self._mount(libc, entry.path, str(target), _MS_BIND | _MS_REC)
            else:
                target.touch()
                self._mount(libc, entry.path, str(target), _MS_BIND)
        (run / "lock/opencryptoki").mkdir(parents=True)
        (run / "lock").chmod(0o1777)
        os.chown(run / "lock/opencryptoki", 0, gid)
        (run / "lock/opencryptoki").chmod(0o770)
        self._mount(libc, str(run), "/run", _MS_BIND | _MS_REC)

    def prepare(self) -> bool:
        """The namespaces, the temporary directories and pkcsslotd; False (and `reason`) if not.
        Call while the process has one thread (unshare refuses a mount namespace otherwise)."""
        missing = [p for p in (OPENCRYPTOKI_SO, "/usr/sbin/pkcsslotd", "/usr/sbin/pkcsconf", OPENCRYPTOKI_CONF)
                   if not os.path.exists(p)]
        if missing:
            self.reason = f"opencryptoki is not installed (Debian package opencryptoki; no {missing[0]})"
            return False
        if os.geteuid() != 0:
            self.reason = "opencryptoki's pkcsslotd and the private mounts of its temporary token need root"
            return False
        try:
            self.slot = self._soft_slot()
            gid = grp.getgrnam("pkcs11").gr_gid
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNS | _CLONE_NEWIPC) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare: {os.strerror(err)}")
            self._mount(libc, None, "/", _MS_REC | _MS_PRIVATE)  # nothing below propagates out
            self.dir = Path(tempfile.mkdtemp(prefix="opencryptoki-", dir=WORK))
            for sub in ("lib", "lib/swtok", "lib/swtok/TOK_OBJ", "log"):
                (self.dir / sub).mkdir()
                os.chown(self.dir / sub, 0, gid)
                (self.dir / sub).chmod(0o770)
            self._mount(libc, str(self.dir / "lib"), "/var/lib/opencryptoki", _MS_BIND)
            if os.path.isdir("/var/log/opencryptoki"):
                self._mount(libc, str(self.dir / "log"), "/var/log/opencryptoki", _MS_BIND)
            self._private_run(libc, gid)
            _run("/usr/sbin/pkcsslotd")
            deadline = time.monotonic() + 10
            while not (os.path.exists("/run/pkcsslotd.socket") and os.path.exists("/run/pkcsslotd.pid")):
                if time.monotonic() > deadline:
                    raise RuntimeError("pkcsslotd did not come up within 10 s")
                time.sleep(0.05)
            self.pid = int(Path("/run/pkcsslotd.pid").read_text().strip())
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            self.stop()
            self.reason = f"opencryptoki soft token not set up: {exc}"
            return False
        return True

    def init_token(self, label: str) -> None:
        """pkcsconf as its users run it: init the token (default SO PIN), set the SO PIN, init the
        user PIN."""
        if self.pid is None:
            raise RuntimeError(self.reason or "opencryptoki soft token not prepared")
        slot = str(self.slot)
        _run_input(label + "\n", "pkcsconf", "-I", "-c", slot, "-S", OPENCRYPTOKI_DEFAULT_SO_PIN)
        _run("pkcsconf", "-P", "-c", slot, "-S", OPENCRYPTOKI_DEFAULT_SO_PIN, "-n", SO_PIN)
        _run("pkcsconf", "-u", "-c", slot, "-S", SO_PIN, "-n", USER_PIN)

    def stop(self) -> None:
        """Stop the pkcsslotd this process started, by its pid (the mounts end with the process).
        pkcsslotd ignores SIGTERM while a process still has the library loaded, which this one
        has until it exits: after a short grace it is killed (its shared memory is in this
        process's own IPC namespace, and its token in a temporary directory)."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        for sig, grace in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 2.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not _alive(pid):
                    return
                time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def _run_input(text: str, *cmd: str) -> str:
    out = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


OPENCRYPTOKI_TOKEN = OpencryptokiSoftToken()
if os.environ.get("SOFTSHIELD_BENCH_OPENCRYPTOKI", "1") != "0" and OPENCRYPTOKI_TOKEN.prepare():
    atexit.register(OPENCRYPTOKI_TOKEN.stop)


#: Only "main": the soft token is one token per data dir.
OPENCRYPTOKI = Backend("opencryptoki", OPENCRYPTOKI_SO, OPENCRYPTOKI_TOKEN.init_token, tokens=("main",))


def softhsm_version() -> str:
    try:
        return _run("softhsm2-util", "--version").strip()
    except Exception:  # noqa: BLE001 - only for the report
        return "?"


def opencryptoki_session_or_skip(sessions: dict):
    """The opencryptoki session of the run, or a pytest skip saying why there is none."""
    import pytest

    session = sessions.get("opencryptoki")
    if session is None:
        pytest.skip(OPENCRYPTOKI_TOKEN.reason or "opencryptoki soft token not available")
    return session
