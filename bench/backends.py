"""The three things each benchmark runs against: our .so, SoftHSM2 (its own temporary token), and
`cryptography` in-process (the ceiling). Tokens are made the way their users make them
(pkcs11-tool for ours, softhsm2-util for SoftHSM2) before python-pkcs11 loads either library."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
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
    """One PKCS#11 library with its two tokens ("main" for the hot paths, "find" for the object
    count series), both made before python-pkcs11 loads the library."""

    TOKENS = ("main", "find")

    def __init__(self, name: str, so: str, init) -> None:
        self.name, self.so, self._init = name, so, init
        self._lib = None
        self.labels: dict[str, str] = {}

    @property
    def lib(self):
        if self._lib is None:
            for role in self.TOKENS:
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


def softhsm_version() -> str:
    try:
        return _run("softhsm2-util", "--version").strip()
    except Exception:  # noqa: BLE001 - only for the report
        return "?"
