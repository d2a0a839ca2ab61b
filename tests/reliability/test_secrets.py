"""Secrets: PINs, passphrases and key bytes appear in no log, stderr, stdout, exception text or
kmdata file, even at the highest debug level; sensitive values are never readable; a forked child
never inherits the parent's library state or logged-in sessions."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.module import Module
from pkcs11_shim.constants import CKR, SessionState
from relenv import HERE, PY, child_env

SO_PIN, USER_PIN, WRONG_PIN = "SoPin-9f3a7c1e", "UsrPin-4b1e22", "WrongPin-77aa0d"
CARD_PASSPHRASE, WRONG_PASSPHRASE = "CardPass-5d2e91", "NotThePass-0c3b"
UNAVAILABLE = (1 << 64) - 1


def _forms(secret: bytes) -> list[bytes]:
    """Every spelling a leak could take: raw, hex (both cases), base64, Python's bytes repr."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret),
            repr(secret).encode()[2:-1]]


def _assert_absent(secrets: dict[str, bytes], haystacks: dict[str, bytes]) -> None:
    for where, data in haystacks.items():
        for name, secret in secrets.items():
            for form in _forms(secret):
                assert form not in data, f"{name} appears in {where}"


@pytest.fixture
def debug_run(kmdata: Path, tmp_path: Path) -> dict:
    key, wrapping = os.urandom(32), os.urandom(32)
    log = tmp_path / "cknfast.log"
    softshield_log = tmp_path / "softshield.log"
    env = child_env(kmdata, CKNFAST_DEBUG="10", CKNFAST_DEBUGFILE=str(log))
    result = subprocess.run([PY, str(HERE / "secrets_child.py"), SO_PIN, USER_PIN, WRONG_PIN, key.hex(),
                             wrapping.hex()], env=env, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    # The same again under our own variable names, at DEBUG, to stderr (no file).
    env2 = child_env(kmdata, SOFTSHIELD_LOG_LEVEL="DEBUG", SOFTSHIELD_LOG_FILE=str(softshield_log))
    result2 = subprocess.run([PY, "-c", textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(HERE.parent)!r}); import p11ctypes as ck
        c = ck.Client(ck.load()); c.initialize()
        s = c.open(c.slot_by_label("secrets"))
        print(hex(ck.raw(c.lib, "C_Login", ck.CK_ULONG(s), ck.CK_ULONG(1), {WRONG_PIN!r}.encode(), ck.CK_ULONG({len(WRONG_PIN)}))))
        c.login(s, 1, {USER_PIN!r}.encode()); c.finalize()
        """)], env=env2, capture_output=True, timeout=120)
    assert result2.returncode == 0, result2.stderr.decode(errors="replace")
    return {"kmdata": kmdata, "log": log, "softshield_log": softshield_log, "key": key, "wrapping": wrapping,
            "runs": [result, result2], "seen": json.loads(result.stdout.decode().strip().splitlines()[-1])}


def test_debug_log_was_really_written(debug_run: dict) -> None:
    """The search below means something only if the log holds the calls (and the failures)."""
    text = debug_run["log"].read_text()
    for function in ("C_Login", "C_InitPIN", "C_CreateObject", "C_WrapKey", "C_GetAttributeValue"):
        assert function in text, function
    assert f"{CKR.PIN_INCORRECT:#x}" in text  # the wrong PINs were logged as failures...
    assert debug_run["softshield_log"].read_text().count("C_Login") >= 2


def test_no_pin_or_key_in_logs_output_or_kmdata(debug_run: dict) -> None:
    secrets = {"SO PIN": SO_PIN.encode(), "user PIN": USER_PIN.encode(), "wrong PIN": WRONG_PIN.encode(),
               "key value": debug_run["key"], "wrapping key value": debug_run["wrapping"]}
    haystacks = {"CKNFAST_DEBUGFILE": debug_run["log"].read_bytes(),
                 "SOFTSHIELD_LOG_FILE": debug_run["softshield_log"].read_bytes()}
    for i, run in enumerate(debug_run["runs"]):
        haystacks[f"stdout {i}"] = run.stdout.replace(debug_run["seen"]["wrapped"].encode(), b"")
        haystacks[f"stderr {i}"] = run.stderr
    for path in debug_run["kmdata"].rglob("*"):
        if path.is_file():
            haystacks[f"kmdata {path.name}"] = path.read_bytes()
    _assert_absent(secrets, haystacks)


def test_sensitive_values_are_never_readable(debug_run: dict) -> None:
    seen = debug_run["seen"]
    assert seen["login_so_wrong"] == seen["login_user_wrong"] == seen["setpin_wrong_old"] == CKR.PIN_INCORRECT
    assert seen["get_value"] == CKR.ATTRIBUTE_SENSITIVE and seen["get_value_len"] == UNAVAILABLE
    assert seen["get_value_buffer"] == CKR.ATTRIBUTE_SENSITIVE and seen["buffer_untouched"] is True
    assert seen["get_wrapping_value"] == CKR.ATTRIBUTE_SENSITIVE
    # PKCS#11 3.0 §4.9: CKA_SENSITIVE can only go from FALSE to TRUE, on set and on copy.
    assert seen["unset_sensitive"] == seen["copy_unsensitive"] == CKR.ATTRIBUTE_READ_ONLY
    # An AES value of 7 bytes (§2.14: 16, 24 or 32); CKA_VALUE_LEN given to C_CreateObject (footnote 2).
    assert seen["create_bad_length"] == CKR.ATTRIBUTE_VALUE_INVALID
    assert seen["create_conflict"] == CKR.ATTRIBUTE_READ_ONLY
    assert seen["wrap_self_unextractable"] == CKR.KEY_UNEXTRACTABLE  # CKA_EXTRACTABLE=FALSE holds
    # The one way out is encrypted: the wrapped bytes are not the key (RFC 3394 adds 8 bytes).
    wrapped = bytes.fromhex(seen["wrapped"])
    assert len(wrapped) == 40 and debug_run["key"] not in wrapped


def test_emulator_errors_and_reprs_carry_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOFTSHIELD_READER", raising=False)
    module = Module.open(tmp_path / "world")
    info = module.init_token("t", SO_PIN.encode())
    so = module.login(info.hash, "so", SO_PIN.encode())
    module.init_user_pin(info.hash, so, USER_PIN.encode())
    texts = [repr(so), str(so), repr(module.login(info.hash, "user", USER_PIN.encode()))]
    for call in (lambda: module.login(info.hash, "user", WRONG_PIN.encode()),
                 lambda: module.set_pin(info.hash, "user", WRONG_PIN.encode(), USER_PIN.encode()),
                 lambda: module.init_token("t", WRONG_PIN.encode(), info.hash)):
        with pytest.raises(EmulatorError) as caught:
            call()
        texts.append(str(caught.value))
    cardset = module.cardsets.create("secretset", 1, 1, [CARD_PASSPHRASE.encode()])
    card = module.reader.folder / "secretset-1.card"
    with pytest.raises(EmulatorError) as caught:
        module.cardsets.login(cardset.hash, [(card, WRONG_PASSPHRASE.encode())])
    texts.append(str(caught.value))
    auth = module.cardsets.login(cardset.hash, [(card, CARD_PASSPHRASE.encode())])
    texts += [repr(auth), repr(cardset)]
    haystacks = {f"text {i}": t.encode() for i, t in enumerate(texts)}
    haystacks.update({f"file {p.name}": p.read_bytes() for p in (tmp_path / "world").rglob("*") if p.is_file()})
    secrets = {"SO PIN": SO_PIN.encode(), "user PIN": USER_PIN.encode(), "wrong PIN": WRONG_PIN.encode(),
               "card passphrase": CARD_PASSPHRASE.encode(), "wrong passphrase": WRONG_PASSPHRASE.encode(),
               "token logical key": so.logical_key, "card set logical key": auth.logical_key}
    _assert_absent(secrets, haystacks)


FORK_SCRIPT = """
import json, os, sys
sys.path.insert(0, {here!r})
import p11ctypes as ck
from pkcs11_shim.constants import Attribute, Mechanism, UserType
from ctypes import byref, c_ubyte
lib = ck.load(); c = ck.Client(lib); c.initialize()
slot = c.slot_by_label("forked")
s = c.open(slot); c.login(s, UserType.USER, b"1234")
info = (c_ubyte * 64)()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    out = {{}}
    out["get_info"] = ck.raw(lib, "C_GetInfo", info)
    out["session_info"] = ck.raw(lib, "C_GetSessionInfo", ck.CK_ULONG(s), info)
    out["open"] = ck.raw(lib, "C_OpenSession", ck.CK_ULONG(slot), ck.CK_ULONG(6), None, None, byref(ck.CK_ULONG()))
    out["find_init"] = ck.raw(lib, "C_FindObjectsInit", ck.CK_ULONG(s), None, ck.CK_ULONG(0))
    out["initialize"] = ck.raw(lib, "C_Initialize", None)
    out["parent_session_after_init"] = ck.raw(lib, "C_GetSessionInfo", ck.CK_ULONG(s), info)
    fresh = c.open(slot)
    sinfo = ck.CK_ULONG * 4
    state = sinfo()
    ck.call(lib, "C_GetSessionInfo", ck.CK_ULONG(fresh), state)
    out["fresh_state"] = state[1]  # CK_SESSION_INFO.state: 2 = CKS_RW_PUBLIC_SESSION, 3 = RW_USER
    out["private_visible"] = len(c.find(fresh, [(Attribute.LABEL, "parent-secret")]))
    os.write(w, json.dumps(out).encode()); os._exit(0)
os.close(w)
_, status = os.waitpid(pid, 0)
child = json.loads(os.read(r, 65536))
# The parent's session is untouched by the child's life.
ck.call(lib, "C_GetSessionInfo", ck.CK_ULONG(s), info)
parent_found = len(c.find(s, [(Attribute.LABEL, "parent-secret")]))
print(json.dumps({{"child": child, "status": status, "parent_found": parent_found}}))
"""


def test_forked_child_gets_no_parent_state(kmdata: Path) -> None:
    from relenv import p11cli

    p11cli(kmdata, "mktoken", "forked")
    setup = (f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); import p11ctypes as ck\n"
             "from pkcs11_shim.constants import Attribute, Mechanism, UserType\n"
             "c = ck.Client(ck.load()); c.initialize(); s = c.open(c.slot_by_label('forked'))\n"
             "c.login(s, UserType.USER, b'1234')\n"
             "c.generate_key(s, Mechanism.AES_KEY_GEN, [(Attribute.TOKEN, True), (Attribute.PRIVATE, True),"
             " (Attribute.VALUE_LEN, 16), (Attribute.LABEL, 'parent-secret')]); c.finalize()\n")
    subprocess.run([PY, "-c", setup], env=child_env(kmdata), check=True, timeout=60)
    result = subprocess.run([PY, "-c", FORK_SCRIPT.format(here=str(HERE.parent))], env=child_env(kmdata),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    child = out["child"]
    assert out["status"] == 0
    not_initialized = CKR.CRYPTOKI_NOT_INITIALIZED
    assert child["get_info"] == child["session_info"] == child["open"] == child["find_init"] == not_initialized
    assert child["initialize"] == CKR.OK
    assert child["parent_session_after_init"] == CKR.SESSION_HANDLE_INVALID
    assert child["fresh_state"] == SessionState.RW_PUBLIC_SESSION  # the parent's login did not carry over
    assert child["private_visible"] == 0
    assert out["parent_found"] == 1
