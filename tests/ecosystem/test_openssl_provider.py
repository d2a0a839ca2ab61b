"""OpenSSL 3 through its PKCS#11 provider (Debian's pkcs11-provider): `openssl dgst -sign` with keys
that pkcs11-tool made in another process, both ways libsoftshield-pkcs11.so serves a C host:
the module embedded, and forwarded to a hardserver the library starts (SOFTSHIELD_MODE=hardserver)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from ecoenv import KMDATA, SO, USER_PIN, pkcs11_tool, run

PROVIDER = Path("/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so")

pytestmark = pytest.mark.skipif(not PROVIDER.is_file() and not os.environ.get("CI"),
                                reason="pkcs11-provider not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module", params=["embedded", "hardserver"])
def served(request, tmp_path_factory) -> dict:
    """OPENSSL_CONF loading the provider over our library, and how the library serves OpenSSL."""
    work = tmp_path_factory.mktemp("provider")
    pin = work / "pin"
    pin.write_text(USER_PIN)
    conf = work / "openssl.cnf"
    conf.write_text(f"""openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
module = {PROVIDER}
pkcs11-module-path = {SO}
pkcs11-module-token-pin = file:{pin}
activate = 1
""")
    env = {"OPENSSL_CONF": str(conf), "NFAST_KMDATA": KMDATA, "SOFTSHIELD_MODE": request.param}
    run_dir = Path(tempfile.mkdtemp(prefix="ss-ossl-"))  # a short socket path
    if request.param == "hardserver":
        env["SOFTSHIELD_HARDSERVER"] = str(run_dir / "hardserver.sock")
    yield env
    pid_file = run_dir / "hardserver.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ec_key(token_label: str) -> str:
    pkcs11_tool("--token-label", token_label, "--login", "--pin", USER_PIN, "--keypairgen",
                "--key-type", "EC:prime256v1", "--label", "ossl-ec", "--id", "0e")
    return f"pkcs11:token={token_label};object=ossl-ec;type=private"


def _public_pem(uri: str) -> bytes:
    """The public key as PEM, from the token's public attributes. (`openssl pkey -in <public URI>`
    does not load public keys with pkcs11-provider 1.0 on OpenSSL 3.0, against SoftHSM2 either; and
    pkcs11-tool 0.23's --read-object of an EC key uses parameters it has freed, which fails or not
    depending on what else the process allocated.)"""
    import pkcs11
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_ec_public_key

    token = uri.split("token=")[1].split(";")[0]
    label = uri.split("object=")[1].split(";")[0]
    with pkcs11.lib(str(SO)).get_token(token_label=token).open() as session:
        key = session.get_key(ObjectClass.PUBLIC_KEY, label=label)
        if key.key_type == KeyType.RSA:
            public = rsa.RSAPublicNumbers(int.from_bytes(key[Attribute.PUBLIC_EXPONENT], "big"),
                                          int.from_bytes(key[Attribute.MODULUS], "big")).public_key()
        else:
            public = serialization.load_der_public_key(encode_ec_public_key(key))
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("key", ["rsa_key", "ec_key"])
def test_dgst_sign_with_a_key_made_by_another_process(key: str, served: dict, request, tmp_path: Path) -> None:
    uri = request.getfixturevalue(key)
    data = tmp_path / "data.txt"
    data.write_text("signed through OpenSSL 3's pkcs11 provider\n")
    (tmp_path / "pub.pem").write_bytes(_public_pem(uri))
    run("openssl", "dgst", "-sha256", "-sign", uri, "-out", str(tmp_path / "sig"), str(data), env=served)
    # Verified by OpenSSL's default provider alone, from the exported public key.
    ok = run("openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
             str(tmp_path / "sig"), str(data))
    assert ok.stdout.strip() == "Verified OK"
    data.write_text("something else\n")
    bad = run("openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
              str(tmp_path / "sig"), str(data), check=False)
    assert bad.returncode == 1 and "Verification failure" in bad.stdout
    if served["SOFTSHIELD_MODE"] == "hardserver":
        log = Path(served["SOFTSHIELD_HARDSERVER"]).with_name("hardserver.log").read_text()
        assert "client pid" in log  # OpenSSL's calls reached the server
