"""Several modules of one Security World sharing the load, as nShield's CKNFAST_LOADSHARING: two
hardservers with separate kmdata folders (A made the world with new-world, B joined it with
new-world --program) and a client library configured with both (SOFTSHIELD_HARDSERVER=A,B).
Copying A's key and token files into B's kmdata stands in for rfs-sync."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from ctypes import byref
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardserver"))

from hsenv import ROOT, USER_PIN, Server, init_token, venv_python  # noqa: E402
from p11ctypes import CK_ATTRIBUTE, CK_MECHANISM, CK_SESSION_INFO, CK_ULONG, RawClient  # noqa: E402

from emulator.kmdata import KmStore  # noqa: E402
from pkcs11_shim.constants import CKR, Attribute, Mechanism, NCipherAttribute, ObjectClass, UserType  # noqa: E402
from pkcs11_shim.handles import token_handle  # noqa: E402

FRONT_SO = ROOT / "build" / "libsoftshield-pkcs11.so"
WORKER = Path(__file__).with_name("ls_worker.py")
LABEL = "shared-rsa"
DATA = b"one world, two modules"
CKS_RW_PUBLIC_SESSION, CKS_RW_USER_FUNCTIONS = 2, 3  # PKCS#11 3.0 §5.6 session states


def cli(kmdata: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CKNFAST_", "NFAST_", "SOFTSHIELD_"))}
    env["NFAST_KMDATA"] = str(kmdata)
    subprocess.run([sys.executable, "-W", "ignore", "-m", "softshield_cli.main", *args], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=300)


def sync(source: Server, target: Server) -> None:
    """rfs-sync's stand-in: the key and token files of A's kmdata copied into B's, and the change
    counted there (each module keeps its own module file, world file and ledger)."""
    for path in (source.kmdata / "local").iterdir():
        if not path.name.startswith(("module_", "world", ".softshield")):
            shutil.copy2(path, target.kmdata / "local" / path.name)
    KmStore(target.kmdata / "local").bump()


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    root = tmp_path_factory.mktemp("ls")
    pins = root / "acs-pins"
    pins.write_text("acs-1.card 1111\n")
    a, b = root / "a", root / "b"
    cli(a / "kmdata", "new-world", "--initialize", "-Q", "1/1", "--cipher-suite=DLf1024s160mRijndael",
        "--pin-file", str(pins))
    # B's host receives the world and the ACS (as from the RFS) and programs its own module into it.
    for folder, names in (("local", ("world", "world_recovery")), ("reader", ("acs-1.card",))):
        (b / "kmdata" / folder).mkdir(parents=True, mode=0o700)
        for name in names:
            shutil.copy2(a / "kmdata" / folder / name, b / "kmdata" / folder / name)
    cli(b / "kmdata", "new-world", "--program", "--pin-file", str(pins))
    assert [p.name[:7] for p in (a / "kmdata" / "local").glob("module_*")] == ["module_"]
    assert {p.name for p in (a / "kmdata" / "local").glob("module_*")} != \
           {p.name for p in (b / "kmdata" / "local").glob("module_*")}
    servers = [Server(a, 1), Server(b, 1)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        if server.alive():
            server.terminate()


def worker(server: Server, *args: str, hardserver: str | None = None) -> list[str]:
    """ls_worker.py under Python 3.12's python-pkcs11, served by `server` alone (or by the list
    `hardserver`)."""
    env = {**server.env, **({"SOFTSHIELD_HARDSERVER": hardserver} if hardserver else {})}
    result = subprocess.run([str(venv_python("3.12")), str(WORKER), str(FRONT_SO), *args], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture(scope="module")
def shared_key(modules) -> tuple[rsa.RSAPublicKey, bytes]:
    """A module-protected RSA key made through module A by Python 3.12, synced to B: its public key
    and its SHA256_RSA_PKCS signature of DATA (PKCS#1 v1.5 is deterministic: one key, one signature)."""
    a, b = modules
    modulus, exponent, signature = worker(a, "genkey", LABEL, DATA.hex())
    public = rsa.RSAPublicNumbers(int(exponent, 16), int(modulus, 16)).public_key()
    public.verify(bytes.fromhex(signature), DATA, padding.PKCS1v15(), hashes.SHA256())
    sync(a, b)
    return public, bytes.fromhex(signature)


@pytest.fixture
def client(modules, monkeypatch):
    """The C client library in this process (no Python in it), configured with both modules."""
    a, b = modules
    monkeypatch.setenv("SOFTSHIELD_HARDSERVER", f"unix:{a.socket},{b.socket}")  # both address forms
    monkeypatch.setenv("SOFTSHIELD_HARDSERVER_AUTOSTART", "0")
    monkeypatch.setenv("SOFTSHIELD_HARDSERVER_TIMEOUT", "20")
    monkeypatch.setenv("SOFTSHIELD_HARDSERVER_RETRY", "0")  # a module that comes back is tried at once
    raw = RawClient()
    for name in ("C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_SignInit", "C_Sign", "C_Login",
                 "C_Logout", "C_CloseAllSessions", "C_GetAttributeValue"):
        getattr(raw.lib, name).restype = ctypes.c_ulong
    yield raw
    raw.finalize()


def open_session(raw: RawClient, slot: int = 0) -> int:
    rv, handle = raw.open_session(slot)
    assert rv == CKR.OK, hex(rv)
    return handle


def find(raw: RawClient, session: int, label: str) -> list[int]:
    value = ctypes.create_string_buffer(label.encode(), len(label))
    klass = CK_ULONG(ObjectClass.PRIVATE_KEY)
    template = (CK_ATTRIBUTE * 2)(CK_ATTRIBUTE(Attribute.LABEL, ctypes.cast(value, ctypes.c_void_p), len(label)),
                                  CK_ATTRIBUTE(Attribute.CLASS, ctypes.cast(byref(klass), ctypes.c_void_p),
                                               ctypes.sizeof(klass)))
    assert raw.lib.C_FindObjectsInit(CK_ULONG(session), template, CK_ULONG(2)) == CKR.OK
    found, count = (CK_ULONG * 8)(), CK_ULONG(0)
    assert raw.lib.C_FindObjects(CK_ULONG(session), found, CK_ULONG(8), byref(count)) == CKR.OK
    assert raw.lib.C_FindObjectsFinal(CK_ULONG(session)) == CKR.OK
    return list(found[: count.value])


def sign(raw: RawClient, session: int, key: int, data: bytes = DATA) -> bytes:
    mechanism = CK_MECHANISM(Mechanism.SHA256_RSA_PKCS, None, 0)
    assert raw.lib.C_SignInit(CK_ULONG(session), byref(mechanism), CK_ULONG(key)) == CKR.OK
    out, length = ctypes.create_string_buffer(512), CK_ULONG(512)
    assert raw.lib.C_Sign(CK_ULONG(session), data, CK_ULONG(len(data)), out, byref(length)) == CKR.OK
    return out.raw[: length.value]


def attribute(raw: RawClient, session: int, handle: int, attr: int) -> bytes:
    buf = ctypes.create_string_buffer(256)
    template = CK_ATTRIBUTE(attr, ctypes.cast(buf, ctypes.c_void_p), 256)
    assert raw.lib.C_GetAttributeValue(CK_ULONG(session), CK_ULONG(handle), byref(template), CK_ULONG(1)) == CKR.OK
    return buf.raw[: template.ulValueLen]


def state(raw: RawClient, session: int) -> int:
    info = CK_SESSION_INFO()
    assert raw.lib.C_GetSessionInfo(CK_ULONG(session), byref(info)) == CKR.OK
    return info.state


def test_a_key_made_through_module_a_is_used_through_module_b_by_python_312(modules, shared_key) -> None:
    a, b = modules
    public, signature = shared_key
    (through_b,) = worker(b, "sign", LABEL, DATA.hex())
    assert bytes.fromhex(through_b) == signature
    public.verify(bytes.fromhex(through_b), DATA, padding.PKCS1v15(), hashes.SHA256())
    # The same program with the library load-sharing over both (libsoftshield-pkcs11.so, forwarded).
    (through_both,) = worker(b, "sign", LABEL, DATA.hex(), hardserver=f"{b.socket},{a.socket}")
    assert bytes.fromhex(through_both) == signature


def test_a_token_key_has_one_handle_on_every_module(modules, shared_key, client) -> None:
    assert client.lib.C_Initialize(None) == CKR.OK
    on_a, on_b = open_session(client), open_session(client)  # sessions go to A, then B
    (handle,) = find(client, on_a, LABEL)
    assert find(client, on_b, LABEL) == [handle]
    # Derived from the key's identity (key_<app>_<ident>), not from the order a module loaded it in.
    app, ident = (attribute(client, on_b, handle, a).decode() for a in (NCipherAttribute.NFKM_APPNAME,
                                                                          NCipherAttribute.NFKM_ID))
    assert handle == token_handle(app, ident)
    # The handle found through A signs through B: the same key (deterministic signature).
    assert sign(client, on_b, handle) == sign(client, on_a, handle) == shared_key[1]


@pytest.fixture(scope="module")
def token(modules) -> str:
    """A token with a user PIN, made through A and synced to B."""
    a, b = modules
    label = init_token(a)
    sync(a, b)
    return label


def test_modules_with_different_slots_are_refused(modules, token, client, capfd) -> None:
    a, b = modules
    init_token(a)  # through A alone: B has not synced it yet
    capfd.readouterr()
    assert client.lib.C_Initialize(None) == CKR.DEVICE_ERROR
    assert capfd.readouterr().err == (f"softshield: hardservers {a.socket} and {b.socket} list different slots "
                                      "(4 and 3): load sharing needs modules of one world with the same tokens\n")
    sync(a, b)
    assert client.lib.C_Initialize(None) == CKR.OK


def test_login_fans_out_to_every_module(modules, token, client) -> None:
    assert client.lib.C_Initialize(None) == CKR.OK
    label = token
    slot = client.slot_of(label)
    on_a, on_b = open_session(client, slot), open_session(client, slot)
    assert client.lib.C_Login(CK_ULONG(on_a), CK_ULONG(UserType.USER), USER_PIN.encode(),
                              CK_ULONG(len(USER_PIN))) == CKR.OK
    assert [state(client, s) for s in (on_a, on_b)] == [CKS_RW_USER_FUNCTIONS] * 2
    # A session opened after the login, on either module, is logged in too (§5.6: one login state).
    later = [open_session(client, slot) for _ in range(2)]
    assert [state(client, s) for s in later] == [CKS_RW_USER_FUNCTIONS] * 2
    assert client.lib.C_Logout(CK_ULONG(on_b)) == CKR.OK
    assert [state(client, s) for s in (on_a, on_b, *later)] == [CKS_RW_PUBLIC_SESSION] * 4
    assert client.lib.C_Login(CK_ULONG(on_b), CK_ULONG(UserType.USER), USER_PIN.encode(),
                              CK_ULONG(len(USER_PIN))) == CKR.OK
    # Closing every session of the slot ends the login on both modules.
    assert client.lib.C_CloseAllSessions(CK_ULONG(slot)) == CKR.OK
    assert client.lib.C_GetSessionInfo(CK_ULONG(on_a), byref(CK_SESSION_INFO())) == CKR.SESSION_HANDLE_INVALID
    again = [open_session(client, slot) for _ in range(2)]
    assert [state(client, s) for s in again] == [CKS_RW_PUBLIC_SESSION] * 2
    # So does closing them one by one (§5.6.7: the application's last session with the token).
    assert client.lib.C_Login(CK_ULONG(again[1]), CK_ULONG(UserType.USER), USER_PIN.encode(),
                              CK_ULONG(len(USER_PIN))) == CKR.OK
    assert [client.lib.C_CloseSession(CK_ULONG(s)) for s in again] == [CKR.OK] * 2
    fresh = [open_session(client, slot) for _ in range(2)]
    assert [state(client, s) for s in fresh] == [CKS_RW_PUBLIC_SESSION] * 2


def test_a_module_that_comes_back_is_logged_in_again(modules, token, client) -> None:
    a, _b = modules
    assert client.lib.C_Initialize(None) == CKR.OK
    slot = client.slot_of(token)
    on_a, on_b = open_session(client, slot), open_session(client, slot)
    assert client.lib.C_Login(CK_ULONG(on_a), CK_ULONG(UserType.USER), USER_PIN.encode(),
                              CK_ULONG(len(USER_PIN))) == CKR.OK
    a.kill()
    assert client.random(on_a)[0] == CKR.DEVICE_REMOVED
    seen = len(a.log_text())
    a.start()
    # The next two sessions: one on the returned A, logged in again by the client, one on B.
    back = [open_session(client, slot) for _ in range(2)]
    assert f"client pid {os.getpid()} connected" in a.log_text()[seen:]
    assert [state(client, s) for s in (on_b, *back)] == [CKS_RW_USER_FUNCTIONS] * 3
    assert client.lib.C_Logout(CK_ULONG(back[0])) == CKR.OK
    assert [state(client, s) for s in (on_b, *back)] == [CKS_RW_PUBLIC_SESSION] * 3


def test_failover_when_a_module_is_killed_and_its_return(modules, shared_key, client) -> None:
    a, b = modules
    assert client.lib.C_Initialize(None) == CKR.OK
    sessions = [open_session(client) for _ in range(4)]  # A, B, A, B
    (handle,) = find(client, sessions[0], LABEL)
    assert [sign(client, s, handle) for s in sessions] == [shared_key[1]] * 4
    a.kill()
    # A's sessions (the 1st and 3rd): CKR_DEVICE_REMOVED on the call that finds A gone, then the
    # handle is invalid; B's (2nd and 4th) carry on. So the sessions were spread over both modules.
    first = [client.random(s)[0] for s in sessions]
    second = [client.random(s)[0] for s in sessions]
    assert first == [CKR.DEVICE_REMOVED, CKR.OK, CKR.DEVICE_REMOVED, CKR.OK]
    assert second == [CKR.SESSION_HANDLE_INVALID, CKR.OK, CKR.SESSION_HANDLE_INVALID, CKR.OK]
    assert [sign(client, s, handle) for s in sessions[1::2]] == [shared_key[1]] * 2
    # New sessions go to B alone while A is away.
    fresh = [open_session(client) for _ in range(2)]
    assert [sign(client, s, handle) for s in fresh] == [shared_key[1]] * 2
    seen = len(a.log_text())
    a.start()  # the same module comes back (same kmdata, same socket)
    back = [open_session(client) for _ in range(2)]
    assert [sign(client, s, handle) for s in back] == [shared_key[1]] * 2
    assert f"client pid {os.getpid()} connected" in a.log_text()[seen:]
    public = shared_key[0]
    public.verify(sign(client, back[0], handle, b"after"), b"after", padding.PKCS1v15(), hashes.SHA256())


def test_a_list_with_an_empty_address_is_refused(modules, monkeypatch, capfd) -> None:
    a, _b = modules
    monkeypatch.setenv("SOFTSHIELD_HARDSERVER", f"{a.socket},")
    raw = RawClient()
    assert raw.lib.C_Initialize(None) == CKR.DEVICE_ERROR
    assert capfd.readouterr().err == f"softshield: SOFTSHIELD_HARDSERVER={a.socket},: an empty server address\n"


def test_a_module_restarted_between_two_calls_ends_its_sessions(modules, shared_key, client) -> None:
    a, _b = modules
    assert client.lib.C_Initialize(None) == CKR.OK
    on_a, on_b = open_session(client), open_session(client)
    (handle,) = find(client, on_a, LABEL)
    a.kill()
    a.start()  # back before the client noticed: its pooled connection to A is closed, A answers again
    assert [client.random(on_a)[0] for _ in range(2)] == [CKR.DEVICE_REMOVED, CKR.SESSION_HANDLE_INVALID]
    assert client.random(on_b)[0] == CKR.OK
    # The restarted module takes sessions again at once: the next two go to A and B.
    assert [sign(client, open_session(client), handle) for _ in range(2)] == [shared_key[1]] * 2


def test_a_module_keeps_its_identity_when_the_other_modules_files_arrive(modules, tmp_path) -> None:
    """Another module's file copied into local/ (by an operator: rfs-sync never carries module files)
    does not change which module the host is: the one programmed there (`this-module`), not the
    first file by creation time."""
    from emulator.module import Module

    a, b = modules
    copy = tmp_path / "kmdata"
    shutil.copytree(b.kmdata, copy, ignore=shutil.ignore_patterns("*.sock", "*.pid", "*.lock", "*.log"))
    (own,) = [p.name for p in (copy / "local").glob("module_*")]
    (other,) = [p for p in (a.kmdata / "local").glob("module_*")]
    shutil.copy2(other, copy / "local" / other.name)
    assert sorted(p.name for p in (copy / "local").glob("module_*")) == sorted([own, other.name])
    assert (copy / "this-module").read_text().strip() == own[len("module_"):]
    assert Module.open(copy).esn == own[len("module_"):]
