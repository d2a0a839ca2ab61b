"""docs/recipes/byok-to-a-cloud-vault.md, every `sh` block run verbatim in one shell, in a world made
with an ACS. `az` is a stand-in vault: it hands out a KEK made here with plain `cryptography`
(RSA-3072) and imports a .byok by opening it with that KEK (RSA-OAEP-SHA1, then RFC 5649), as the
BYOK specification describes; the test then checks the imported key is the key softshield made."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ecoenv import ROOT, SO

RECIPE = ROOT / "docs" / "recipes" / "byok-to-a-cloud-vault.md"
ACS_PINS = {1: "1111", 2: "2222", 3: "3333"}

#: The stand-in `az`: the few `az keyvault key` calls the recipe makes, answered from AZ_VAULT.
AZ = textwrap.dedent('''\
    #!PYTHON
    import base64, json, os, sys
    from pathlib import Path
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

    vault = Path(os.environ["AZ_VAULT"])
    args = sys.argv[1:]
    opt = lambda name: args[args.index(name) + 1]
    b64 = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    kek = serialization.load_pem_private_key((vault / "kek.pem").read_bytes(), None)
    kid = f"https://{opt('--vault-name').lower()}.vault.azure.net/keys/KEK-BYOK/7d1a0f3c5e9b4c2a8f6e1d0b9a8c7e6f"
    numbers = kek.public_key().public_numbers()
    show = {"key": {"kid": kid, "kty": "RSA-HSM", "key_ops": ["import"], "n": b64(numbers.n), "e": b64(numbers.e)},
            "attributes": {"enabled": True, "exportable": False}}
    if args[:3] == ["keyvault", "key", "create"]:
        print(json.dumps(show, indent=2))
    elif args[:3] == ["keyvault", "key", "download"]:
        Path(opt("--file")).write_bytes(kek.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    elif args[:3] == ["keyvault", "key", "show"]:
        print(json.dumps(show, indent=2))
    elif args[:3] == ["keyvault", "key", "import"]:
        doc = json.loads(Path(opt("--byok-file")).read_text())
        if doc["header"] != {"kid": kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}:
            sys.exit(f"(BadParameter) the byok file's header does not name this vault's KEK: {doc['header']}")
        raw = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
        aes = kek.decrypt(raw[:384], padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
        key = serialization.load_der_private_key(aes_key_unwrap_with_padding(aes, raw[384:]), None)
        (vault / (opt("--name") + ".pem")).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        n = key.public_key().public_numbers()
        print(json.dumps({"key": {"kid": kid.replace("KEK-BYOK", opt("--name")), "kty": "RSA-HSM",
                                  "n": b64(n.n), "e": b64(n.e)}}, indent=2))
    else:
        sys.exit("az stand-in: unexpected call " + " ".join(args))
''')


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_recipe_runs_verbatim_to_a_key_the_vault_imports(tmp_path):
    assert SO.exists(), "build the library first: make"
    kmdata, work, tools, vault = (tmp_path / n for n in ("kmdata", "work", "bin", "vault"))
    for folder in (work, tools, vault):
        folder.mkdir()
    kek = rsa.generate_private_key(65537, 3072)
    (vault / "kek.pem").write_bytes(kek.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    (tools / "az").write_text(AZ.replace("PYTHON", sys.executable))
    # `softshield` as installed: the same entry point as the console script, from this checkout.
    (tools / "softshield").write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                                      "from softshield_cli.main import main\nsys.exit(main())\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    (work / "acs-new").write_text("".join(f"acs-{n}.card {pin}\n" for n, pin in ACS_PINS.items()))
    (work / "acs-quorum").write_text("acs-3.card 3333\nacs-1.card 1111\n")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "NFAST_KMDATA": str(kmdata),
           "SOFTSHIELD_PKCS11_LIB": str(SO), "SOFTSHIELD_ROOT_STORE": str(tmp_path / "root"), "AZ_VAULT": str(vault),
           "PYTHONWARNINGS": "ignore"}
    subprocess.run(["softshield", "new-world", "--initialize", "-Q", "2/3", "--pin-file", "acs-new"], cwd=work,
                   env=env, check=True, capture_output=True)
    blocks = sh_blocks(RECIPE.read_text())
    assert len(blocks) == 3 and "az keyvault key download" in blocks[0] and "byok package" in blocks[1]
    result = subprocess.run(["sh", "-e", "-c", "\n".join(blocks)], cwd=work, capture_output=True, text=True,
                            env={**env, "SOFTSHIELD_PIN_FILE": str(work / "acs-quorum")}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    imported = json.loads(result.stdout[result.stdout.rindex('{\n  "key"'):])
    assert imported["key"]["kty"] == "RSA-HSM" and imported["key"]["kid"].endswith(
        "/keys/contosokey/7d1a0f3c5e9b4c2a8f6e1d0b9a8c7e6f")
    # The vault's copy signs; the public key softshield holds verifies: the same key moved.
    vault_key = serialization.load_pem_private_key((vault / "contosokey.pem").read_bytes(), None)
    signature = vault_key.sign(b"signed in the vault", padding.PKCS1v15(), hashes.SHA256())
    probe = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import pkcs11
        from pkcs11 import Attribute as A, Mechanism, ObjectClass
        token = pkcs11.lib({str(SO)!r}).get_token(token_label="loadshared accelerator")
        with token.open() as s:
            [pub] = list(s.get_objects({{A.CLASS: ObjectClass.PUBLIC_KEY, A.LABEL: "contosokey"}}))
            print(pub.verify(b"signed in the vault", {signature!r}, mechanism=Mechanism.SHA256_RSA_PKCS))
    """)], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "True", probe.stderr
    doc = json.loads((work / "contosokey.byok").read_text())
    assert doc["header"]["kid"].startswith("https://contosovault.vault.azure.net/keys/KEK-BYOK/")
    assert (kmdata / "local" / "key_xferacld_contosokey").is_file()
