"""A module served over mutual TLS 1.3 on the loopback address: anonkneti and nethsmenroll as a user runs
them, then signatures through `SOFTSHIELD_HARDSERVER=tls://127.0.0.1:PORT` from pkcs11-tool (a C host)
and from python-pkcs11 under Python 3.12 (another Python than the module's), checked with the public
key; with one server process and with a dispatcher and two workers."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography import x509
from netenv import FRONT_SO, HASH, PY312, new_client, pkcs11_tool, softshield, start_server

from pkcs11_shim.hardserver import netconfig

MESSAGE = "signed over the network"


def _verify(public_key, signature: bytes) -> None:
    public_key.verify(signature, MESSAGE.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_anonkneti_prints_the_esn_and_the_hash_of_the_key_the_module_presents(signing_server):
    remote = softshield("anonkneti", signing_server.address).stdout
    local = softshield("anonkneti", "--kmdata", str(signing_server.kmdata), env=signing_server.env).stdout
    esn, kneti = remote.split()
    assert remote == local == f"{esn} {kneti}\n"
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", esn) and HASH.match(kneti)
    assert (signing_server.kmdata / "network" / f"kneti_{esn}").is_file()
    # The hash is SHA-1 of the SubjectPublicKeyInfo of the certificate TLS presents, read here with
    # the standard library alone.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", signing_server.port)) as raw, ctx.wrap_socket(raw) as tls:
        assert tls.version() == "TLSv1.3"
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha1(spki).hexdigest() == kneti
    assert cert.subject.rfc4514_string().startswith(f"OU=softshield KNETI,CN={esn}")


def test_nethsmenroll_pins_the_module_writes_the_config_and_prints_the_client_key_hash(signing_server, workdir):
    host = new_client(workdir, signing_server, f"enrol-{signing_server.workers}")
    esn, kneti = signing_server.identity()
    out = host.enroll("--privileged")
    key = serialization.load_pem_private_key((host.kmdata / "config" / "client" / "key.pem").read_bytes(), None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_hash = hashlib.sha1(spki).hexdigest()
    assert out == ("OK configuring hardserver's nethsm imports\n"
                   f"client key hash: {key_hash}\n"
                   f"on the module: softshield hardserver permit {key_hash} --privileged\n")
    config = netconfig.read(host.kmdata / "config" / "config")
    assert config.entries("nethsm_imports") == [{
        "local_module": "1", "remote_esn": esn, "remote_ip": "127.0.0.1", "remote_port": str(signing_server.port),
        "keyhash": kneti, "privileged": "yes"}]
    assert (host.kmdata / "config" / "config").read_text().startswith("syntax-version=1\n\n[nethsm_imports]\n")
    # The certificate the module issued is for the client's own key, and chains to the KNETI.
    cert = x509.load_pem_x509_certificate((host.kmdata / "config" / "client" / f"cert_{esn}.pem").read_bytes())
    assert cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == spki
    assert cert.issuer.rfc4514_string() == f"OU=softshield KNETI,CN={esn}"
    assert oct((host.kmdata / "config" / "client" / "key.pem").stat().st_mode & 0o777) == "0o600"
    # Enrolling again keeps one entry and the same client key.
    assert host.enroll("--privileged").splitlines()[1] == f"client key hash: {key_hash}"
    assert len(netconfig.read(host.kmdata / "config" / "config").entries("nethsm_imports")) == 1


def test_nethsmenroll_refuses_a_module_whose_key_is_not_the_pinned_one(signing_server, workdir):
    host = new_client(workdir, signing_server, f"wrong-pin-{signing_server.workers}")
    esn, kneti = signing_server.identity()
    wrong = "0" * 40
    result = softshield("nethsmenroll", signing_server.address, esn, wrong, env=host.env, check=False)
    assert result.returncode == 1
    assert result.stderr == (f"softshield nethsmenroll: {signing_server.address} presented KNETI hash {kneti}, not the "
                             f"pinned {wrong}: pin mismatch, refused\n")
    assert not (host.kmdata / "config" / "config").exists()
    other = "0000-0000-0000"
    result = softshield("nethsmenroll", signing_server.address, other, kneti, env=host.env, check=False)
    assert (result.returncode, result.stderr) == (
        1, f"softshield nethsmenroll: {signing_server.address} is module {esn}, not {other}: refused\n")
    assert not (host.kmdata / "config" / "config").exists()


def test_pkcs11_tool_signs_through_tls(enrolled, tmp_path: Path):
    msg, sig, pub = tmp_path / "msg.txt", tmp_path / "msg.sig", tmp_path / "pub.der"
    msg.write_text(MESSAGE)
    pkcs11_tool(enrolled, "--slot-index", "0", "--sign", "-m", "SHA256-RSA-PKCS", "--label", "netkey",
                "-i", str(msg), "-o", str(sig))
    pkcs11_tool(enrolled, "--slot-index", "0", "--read-object", "--type", "pubkey", "--label", "netkey", "-o", str(pub))
    _verify(serialization.load_der_public_key(pub.read_bytes()), sig.read_bytes())
    enrolled.server.wait_for_log(rf"network client 127\.0\.0\.1 \(client key {enrolled.key_hash}\) admitted "
                                 r"\(unprivileged\)")


def test_python_pkcs11_under_python_312_signs_through_tls(enrolled):
    if not PY312.is_file():
        pytest.skip("no .venv312 (scripts/setup.sh makes it when python3.12 is installed)")
    result = subprocess.run([str(PY312), str(Path(__file__).with_name("p11sign.py")), str(FRONT_SO), "netkey", MESSAGE],
                            capture_output=True, text=True, env=enrolled.env, timeout=120)
    assert result.returncode == 0, result.stderr
    description, signature, modulus, exponent = result.stdout.split("\n")[:4]
    assert description == "softshield via hardserver"
    public = rsa.RSAPublicNumbers(int(exponent), int(modulus, 16)).public_key()
    _verify(public, bytes.fromhex(signature))


def test_cknfastrc_names_the_network_module(enrolled, tmp_path: Path):
    """The config-file equivalent: SOFTSHIELD_HARDSERVER and NFAST_KMDATA (where the pin and the client
    key are) from a cknfastrc file, nothing in the environment."""
    rc = tmp_path / "cknfastrc"
    rc.write_text(f"SOFTSHIELD_HARDSERVER=tls://{enrolled.server.address}\nNFAST_KMDATA={enrolled.kmdata}\n")
    env = {k: v for k, v in enrolled.env.items() if k not in ("SOFTSHIELD_HARDSERVER", "NFAST_KMDATA")}
    result = subprocess.run(["pkcs11-tool", "--module", str(FRONT_SO), "-I"], capture_output=True, text=True,
                            env={**env, "SOFTSHIELD_CKNFASTRC": str(rc)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "softshield via hardserver" in result.stdout


def test_a_client_enrolled_with_two_modules_is_served_by_both(workdir):
    """One client key, a certificate from each module (each admits only what its own KNETI issued)."""
    servers = [start_server(workdir, f"pair-{i}") for i in range(2)]
    try:
        host = new_client(workdir, servers[0], "two-modules")
        for server in servers:
            host.server = server
            host.enroll()
            server.permit(host.key_hash)
        for server in servers:
            host.server = server
            esn, _kneti = server.identity()
            out = pkcs11_tool(host, "-L").stdout.decode()
            assert f"serial num         : {esn.replace('-', '')}" in out
        certs = sorted(p.name for p in (host.kmdata / "config" / "client").glob("cert_*.pem"))
        assert certs == sorted(f"cert_{s.identity()[0]}.pem" for s in servers)
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_or_rfs_without_listen_is_one_line(workdir, workers: str):
    import socket as sockets

    from netenv import free_port

    busy = sockets.socket()
    busy.bind(("127.0.0.1", free_port()))
    busy.listen(1)
    port = busy.getsockname()[1]
    kmdata = workdir / f"busy-{workers}"
    base = ["hardserver", "--socket", str(workdir / f"busy-{workers}.sock"), "--kmdata", str(kmdata),
            "--workers", workers]
    try:
        result = softshield(*base, "--listen", f"127.0.0.1:{port}", check=False)
    finally:
        busy.close()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == \
        f"softshield hardserver: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not (workdir / f"busy-{workers}.sock").exists()
    alone = softshield(*base, "--rfs", check=False)
    assert (alone.returncode, alone.stderr) == (1, "softshield hardserver: --rfs needs --listen HOST[:PORT]: the RFS "
                                                   "is served over the network channel\n")


def test_softshield_client_dir_holds_the_client_key(signing_server, workdir):
    host = new_client(workdir, signing_server, f"own-dir-{signing_server.workers}")
    keys = workdir / f"client-keys-{signing_server.workers}"
    import os

    os.environ["SOFTSHIELD_CLIENT_DIR"] = str(keys)  # ClientHost.env copies this process's environment
    try:
        host.enroll()
        signing_server.permit(host.key_hash)
        assert pkcs11_tool(host, "-L").returncode == 0
    finally:
        del os.environ["SOFTSHIELD_CLIENT_DIR"]
    esn, _kneti = signing_server.identity()
    assert sorted(p.name for p in keys.iterdir() if not p.name.startswith(".")) == ["cert_" + esn + ".pem", "key.pem"]
    assert not (host.kmdata / "config" / "client").exists()
