"""The README's five-minute tour (docs/recipes/tour.sh), run verbatim from an empty folder with the
project's environment on PATH: a world, a key, a signature from pkcs11-tool checked by OpenSSL, one
from Python, and a .byok that the vault's KEK (plain `cryptography`) opens to the same key."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from ecoenv import ROOT, SO, run

TOUR = ROOT / "docs" / "recipes" / "tour.sh"


def test_tour(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NFAST_", "SOFTSHIELD_", "CKNFAST_"))}
    env.update({"SO": str(SO), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    out = run("sh", "-e", str(TOUR), env=env, cwd=tmp_path, timeout=300).stdout
    assert "Verified OK" in out
    assert "softshield embedded: 256-byte signature" in out
    assert out.rstrip().endswith("Result: SUCCESS")
    doc = json.loads((tmp_path / "tourkey.byok").read_text())
    assert doc["header"] == {"kid": "https://myvault.vault.azure.net/keys/KEK/1", "alg": "dir",
                             "enc": "CKM_RSA_AES_KEY_WRAP"}
    # The vault's side: RSA-OAEP(SHA-1) of the ephemeral AES key, then RFC 5649 of the PKCS#8 key.
    kek = serialization.load_pem_private_key((tmp_path / "vault-kek.key").read_bytes(), None)
    blob = base64.urlsafe_b64decode(doc["ciphertext"] + "=" * (-len(doc["ciphertext"]) % 4))
    aes = kek.decrypt(blob[:384], padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    key = serialization.load_der_private_key(aes_key_unwrap_with_padding(aes, blob[384:]), None)
    token_public = serialization.load_der_public_key((tmp_path / "tourkey.der").read_bytes())
    assert key.public_key().public_numbers() == token_public.public_numbers()
