"""An ML-DSA key through the BYOK transfer, like any other key: generated in a source world with
`generatekey type=ML-DSA`, ACL-reduced with the ACS quorum (`keytransfer -ModifyAcls`), packaged
(`-Package`: CKM_RSA_AES_KEY_WRAP of its PKCS#8) for a KEK whose private key the test holds, and the
package decoded with plain `cryptography` gives the same ML-DSA key."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, padding
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "byok"))

from byokenv import SO, Env, rsa_pem  # noqa: E402


def test_ml_dsa_key_transfer(tmp_path: Path) -> None:
    env = Env(tmp_path / "vendor-root", tmp_path / "work")
    env.work.mkdir()
    source, target, packages = tmp_path / "source", tmp_path / "target", tmp_path / "packages"
    kek, kek_pem = rsa_pem()
    (env.work / "kek.pem").write_bytes(kek_pem)
    env.run(target, "byok", "export-kek", "--name", "PQ", "--import-key", "kek.pem", "--out-dir", str(packages))
    env.run(source, "new-world", "--initialize", "-Q", "2/3", "--pin-file", env.pin_file("pins-3", [1, 2, 3]))
    env.run(source, "generatekey", "--batch", "simple", "type=ML-DSA", "paramset=ML-DSA-65", "protect=module",
            "ident=pqkey", "plainname=pqkey", "nvram=no")
    public = bytes.fromhex(env.python(source, f"""
        import pkcs11
        from pkcs11 import Attribute as A, ObjectClass
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open() as s:
            [pub] = list(s.get_objects({{A.CLASS: ObjectClass.PUBLIC_KEY, A.LABEL: "pqkey"}}))
            print(pub[A.VALUE].hex())
    """).strip())
    assert len(public) == 1952
    transfer = ["-ExchangeKeyPackage", str(packages / "BYOK-KEK-pkg-PQ-1"),
                "-NewSecurityWorldPackage", str(packages / "BYOK-SecurityWorld-pkg-PQ-1")]
    env.run(source, "keytransfer", "-ModifyAcls", "-KeyAppName", "simple", "-KeyIdentifier", "pqkey", *transfer,
            "--pin-file", env.pin_file("pins-1-3", [1, 3]))
    env.run(source, "keytransfer", "-Package", "-KeyIdentifier", "pqkey", *transfer, "-SubscriptionId", "sub-1",
            "-KeyFriendlyName", "PQ")
    doc = json.loads((env.work / "TransferPackage-PQ.byok").read_text())
    raw = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
    n = kek.key_size // 8
    sha1 = hashes.SHA1()  # the package's default OAEP hash, as the published format says
    aes_key = kek.decrypt(raw[:n], padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None))
    key = serialization.load_der_private_key(aes_key_unwrap_with_padding(aes_key, raw[n:]), password=None)
    assert isinstance(key, mldsa.MLDSA65PrivateKey)
    assert key.public_key().public_bytes_raw() == public
