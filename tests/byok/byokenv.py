"""Helpers for the BYOK tests: each step a separate `softshield` process, the way a user types it,
with its own kmdata (NFAST_KMDATA), a private emulated vendor root store and a work folder."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
SO = ROOT / "build" / "libsoftshield-pkcs11.so"
ACS_PINS = {1: "1111", 2: "2222", 3: "3333"}
ACCELERATOR = "pkcs11:token=loadshared%20accelerator"


@dataclass
class Env:
    """One user's machine: the vendor root store every tool trusts, and a work folder."""

    root_store: Path
    work: Path

    def run(self, kmdata: Path, *argv: str, check: bool = True, extra: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "NFAST_KMDATA": str(kmdata), "SOFTSHIELD_ROOT_STORE": str(self.root_store),
               "SOFTSHIELD_PKCS11_LIB": str(SO), "PYTHONPATH": str(ROOT), **(extra or {})}
        for name in ("SOFTSHIELD_READER", "SOFTSHIELD_ROOT_HASH", "SOFTSHIELD_PIN_FILE", "SOFTSHIELD_CARD_SLOT"):
            if name not in (extra or {}):
                env.pop(name, None)
        result = subprocess.run([sys.executable, "-m", "softshield_cli.main", *argv], capture_output=True,
                                text=True, cwd=self.work, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"softshield {' '.join(argv)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def python(self, kmdata: Path, code: str) -> str:
        """Run `code` in a fresh process whose PKCS#11 library sees `kmdata` (tests/p11ctypes importable);
        its stdout."""
        env = {**os.environ, "NFAST_KMDATA": str(kmdata), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                                cwd=self.work, env=env, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"probe failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def pin_file(self, name: str, cards: list[int], pins: dict[int, str] | None = None) -> str:
        pins = pins or ACS_PINS
        path = self.work / name
        path.write_text("".join(f"acs-{n}.card {pins[n]}\n" for n in cards))
        return str(path)


def public_pem(env: Env, kmdata: Path, label: str) -> bytes:
    """The RSA public key object labelled `label` on the accelerator slot, read over PKCS#11."""
    out = env.python(kmdata, f"""
        import pkcs11
        from pkcs11 import Attribute as A, ObjectClass
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
        from cryptography.hazmat.primitives import serialization
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open() as s:
            [pub] = list(s.get_objects({{A.CLASS: ObjectClass.PUBLIC_KEY, A.LABEL: {label!r}}}))
            key = RSAPublicNumbers(int.from_bytes(pub[A.PUBLIC_EXPONENT], "big"),
                                   int.from_bytes(pub[A.MODULUS], "big")).public_key()
            print(key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    """)
    return out.encode()


def rsa_pem(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(65537, bits)
    return key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


def holder_certificate(folder: Path, index: int) -> tuple[Path, Path]:
    """cert_i.cer and cert_i.key as `openssl req -newkey rsa:2048 -nodes -x509` makes them (S8)."""
    key, pem = rsa_pem()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"security domain holder {index}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
    cer, keyfile = folder / f"cert_{index}.cer", folder / f"cert_{index}.key"
    cer.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(pem)
    return cer, keyfile
