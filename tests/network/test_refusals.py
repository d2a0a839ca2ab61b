"""What the network listener refuses, each with the line it logs, and nothing served: a client not on the
permitted list, a connection without a client certificate, a certificate the module did not issue, a
module whose key is not the pinned one (the client refuses), a plain-TCP client, a TLS 1.2 client, an
expired and a revoked client key; and world administration from an unprivileged client."""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import struct
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from netenv import new_client, pkcs11_tool, start_server

from pkcs11_shim.constants import CKR
from pkcs11_shim.hardserver import netconfig, protocol

SO_PIN, USER_PIN = "12345678", "1234"


@pytest.fixture(scope="module")
def guard(workdir):
    server = start_server(workdir, "guard")
    yield server
    server.stop()


def _hello() -> bytes:
    payload = protocol.HELLO_PAYLOAD.pack(8, 8, 4242, b"t" * 16)
    return protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, protocol.HELLO, 0, len(payload)) + payload


def _lists_slots(host) -> tuple[bool, str]:
    result = pkcs11_tool(host, "-L", check=False)
    return result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def _refused_lines(server, count: int) -> list[str]:
    return [line for line in server.log_text().splitlines() if " refused " in line][count:]


def test_a_client_not_on_the_permitted_list_is_refused(guard, workdir):
    host = new_client(workdir, guard, "unlisted")
    host.enroll()
    ok, output = _lists_slots(host)
    assert not ok
    assert ("softshield: the hardserver at tls://" + guard.address + " refused this client: this module does not serve "
            f"this client: client key {host.key_hash} is not in [hs_clients] (an unenrolled client)") in output
    assert "C_Initialize failed: rv = CKR_DEVICE_ERROR" in output
    guard.wait_for_log(rf"WARNING refused 127\.0\.0\.1: client key {host.key_hash} is not in \[hs_clients\] "
                       r"\(an unenrolled client\); nothing served$")


def _tls(port: int, cert_and_key: tuple[bytes, bytes] | None = None, version=ssl.TLSVersion.TLSv1_3) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if cert_and_key is not None:
        with tempfile.TemporaryDirectory() as tmp:
            pem = Path(tmp) / "id.pem"
            pem.write_bytes(cert_and_key[1] + cert_and_key[0])
            ctx.load_cert_chain(pem)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))


def test_a_connection_without_a_client_certificate_gets_no_session(guard):
    with _tls(guard.port) as tls:
        tls.sendall(_hello())
        header = tls.recv(protocol.HEADER.size)
        _magic, _version, ftype, _fid, length = protocol.HEADER.unpack(header)
        payload = tls.recv(length)
    assert ftype == protocol.ERROR and struct.unpack_from("<Q", payload)[0] == CKR.DEVICE_ERROR
    assert payload[9:].decode() == ("this module does not serve this client: no client certificate "
                                    "(an unenrolled client)")
    guard.wait_for_log(r"WARNING refused 127\.0\.0\.1: no client certificate \(an unenrolled client\); nothing served$")


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not issued by the module")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_a_certificate_the_module_did_not_issue_fails_the_handshake(guard):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with _tls(guard.port, _self_signed()) as tls:
            tls.sendall(_hello())  # TLS 1.3: the client learns of the refusal on its first read
            assert tls.recv(16) == b""
    guard.wait_for_log(r"WARNING refused 127\.0\.0\.1: TLS handshake failed: .*CERTIFICATE_VERIFY_FAILED")


def test_the_client_refuses_a_module_whose_key_is_not_the_pinned_one(guard, workdir):
    host = new_client(workdir, guard, "wrong-server-key")
    host.enroll()
    guard.permit(host.key_hash)
    assert _lists_slots(host)[0]
    esn, kneti = guard.identity()
    wrong = "1" * 40
    with netconfig.editing(host.kmdata / "config" / "config") as config:
        config.entries("nethsm_imports")[0]["keyhash"] = wrong
    ok, output = _lists_slots(host)
    assert not ok
    assert (f"softshield: tls://{guard.address} presented KNETI hash {kneti}, not the pinned {wrong}: pin mismatch, "
            "refused") in output
    guard.wait_for_log(r"WARNING refused 127\.0\.0\.1: TLS handshake failed: the client refused the module's "
                       r"certificate \(.*ALERT.*; a pinned KNETI hash that is not this module's\?\)$")


def test_a_plain_tcp_client_is_refused(guard):
    with socket.create_connection(("127.0.0.1", guard.port), timeout=10) as raw:
        raw.sendall(_hello())
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass  # the server closed with our HELLO unread
    assert not answer.startswith(protocol.MAGIC)  # at most a TLS alert, never a frame
    guard.wait_for_log(r"WARNING refused 127\.0\.0\.1: not a TLS 1\.3 client \(TLS handshake failed: ")


def test_a_tls_12_client_is_refused(guard):
    with pytest.raises(ssl.SSLError):
        _tls(guard.port, version=ssl.TLSVersion.TLSv1_2)
    guard.wait_for_log(r"WARNING refused 127\.0\.0\.1: not a TLS 1\.3 client "
                       r"\(TLS handshake failed: UNSUPPORTED_PROTOCOL\)$")


def test_an_expired_client_key_is_refused(guard, workdir):
    host = new_client(workdir, guard, "expired")
    host.enroll()
    assert guard.permit(host.key_hash, "--until", "2020-01-01") == (
        f"client key {host.key_hash} permitted (unpriv) from 0.0.0.0 until 2020-01-01T00:00:00Z\n")
    ok, output = _lists_slots(host)
    assert not ok and f"client key {host.key_hash} expired" in output
    guard.wait_for_log(rf"WARNING refused 127\.0\.0\.1: client key {host.key_hash} expired: its validity ended at "
                       r"2020-01-01T00:00:00Z; nothing served$")


def test_a_revoked_client_key_is_refused(guard, workdir):
    host = new_client(workdir, guard, "revoked")
    host.enroll()
    guard.permit(host.key_hash)
    assert _lists_slots(host)[0]
    assert guard.permit("--revoke", host.key_hash) == f"client key {host.key_hash} revoked\n"
    config = netconfig.read(guard.kmdata / "config" / "config")
    assert host.key_hash not in [e["keyhash"] for e in config.entries("hs_clients")]
    ok, output = _lists_slots(host)
    assert not ok
    line = guard.wait_for_log(rf"WARNING refused 127\.0\.0\.1: client key {host.key_hash} was revoked at "
                              r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; nothing served$")
    assert re.search(r"revoked at (\S+);", line).group(1) == config.entries("revoked_clients")[-1]["revoked"]


def test_world_administration_needs_a_privileged_client(guard, workdir):
    admin = new_client(workdir, guard, "admin")
    admin.enroll("--privileged")
    guard.permit(admin.key_hash, "--privileged")
    user = new_client(workdir, guard, "user")
    user.enroll()
    guard.permit(user.key_hash)

    slots = pkcs11_tool(admin, "--list-slots").stdout.decode()
    free = re.search(r"Slot (\d+) \(0x[0-9a-f]+\): [^\n]*\n\s+token state:\s+uninitialized", slots)
    assert free, slots
    refused = pkcs11_tool(user, "--init-token", "--slot", free.group(1), "--label", "netadmin", "--so-pin", SO_PIN,
                          check=False)
    assert refused.returncode != 0 and b"CKR_TOKEN_WRITE_PROTECTED" in refused.stdout + refused.stderr
    guard.wait_for_log(rf"WARNING refused C_InitToken from unprivileged network client 127\.0\.0\.1 \(client key "
                       rf"{user.key_hash}\): world administration needs clientperm=priv$")

    pkcs11_tool(admin, "--init-token", "--slot", free.group(1), "--label", "netadmin", "--so-pin", SO_PIN)
    so_login = pkcs11_tool(user, "--token-label", "netadmin", "--login", "--login-type", "so", "--so-pin", SO_PIN,
                           "--init-pin", "--pin", USER_PIN, check=False)
    assert so_login.returncode != 0 and b"CKR_USER_TYPE_INVALID" in so_login.stdout + so_login.stderr
    guard.wait_for_log(r"WARNING refused C_Login as Security Officer from unprivileged network client")
    pkcs11_tool(admin, "--token-label", "netadmin", "--login", "--login-type", "so", "--so-pin", SO_PIN,
                "--init-pin", "--pin", USER_PIN)
    # The unprivileged client uses the token as its user.
    listed = pkcs11_tool(user, "--token-label", "netadmin", "--login", "--pin", USER_PIN, "-O").returncode
    assert listed == 0


def test_permit_lists_and_refuses_a_malformed_hash(guard):
    listed = guard.permit("--list").splitlines()
    assert listed
    assert all(re.fullmatch(r"[0-9a-f]{40} (priv|unpriv) from \S+ until \S+( \S+)?", line) for line in listed)
    from netenv import softshield

    bad = softshield("hardserver", "permit", "--kmdata", str(guard.kmdata), "not-a-hash", env=guard.env, check=False)
    assert bad.returncode == 1
    assert bad.stderr == ("softshield hardserver: give the client's key hash (40 lowercase hex digits): "
                          "permit KEYHASH or --revoke KEYHASH\n")


def test_an_unreadable_permitted_client_list_refuses_every_client(guard, workdir):
    host = new_client(workdir, guard, "broken-config")
    host.enroll()
    guard.permit(host.key_hash)
    config = guard.kmdata / "config" / "config"
    saved = config.read_text()
    try:
        config.write_text(saved + "\nthis line is not a field\n")
        assert not _lists_slots(host)[0]
        guard.wait_for_log(r"WARNING refused 127\.0\.0\.1: the permitted-client list is unreadable: .*config: "
                           r"line \d+: 'this line is not a field' is not a field=value line of a \[section\]; "
                           r"nothing served$")
    finally:
        config.write_text(saved)
    assert _lists_slots(host)[0]
