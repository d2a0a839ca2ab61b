"""Triple-DES known answers through the registry rows: NIST CAVP TDES MMT files for ECB and CBC
(keying options 1-3, all given as three 8-byte keys)."""

from __future__ import annotations

import pytest
from vectorfiles import nist_records, unhex

from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import Mechanism
from pkcs11_shim.mechanisms.registry import REGISTRY


def _vectors(mode: str) -> list:
    out = []
    for option in (1, 2, 3):
        for r in nist_records(f"ciphers/3DES/{mode}/T{mode}MMT{option}.rsp", "COUNT"):
            out.append(pytest.param(r, id=f"MMT{option}-{r['section']}-{r['COUNT']}"))
    return out


def _key(vector: dict) -> SecretMaterial:
    return SecretMaterial("DES3", unhex(vector["KEY1"] + vector["KEY2"] + vector["KEY3"]))


@pytest.mark.parametrize("vector", _vectors("ECB"))
def test_des3_ecb(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.DES3_ECB)
    plain, cipher = unhex(vector["PLAINTEXT"]), unhex(vector["CIPHERTEXT"])
    if vector["section"] == "ENCRYPT":
        assert spec.encrypt(_key(vector), None).oneshot(plain) == cipher
    else:
        assert spec.decrypt(_key(vector), None).oneshot(cipher) == plain


@pytest.mark.parametrize("vector", _vectors("CBC"))
def test_des3_cbc(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.DES3_CBC)
    iv = unhex(vector["IV"])
    spec.validate(iv)
    plain, cipher = unhex(vector["PLAINTEXT"]), unhex(vector["CIPHERTEXT"])
    if vector["section"] == "ENCRYPT":
        op = spec.encrypt(_key(vector), iv)
        assert op.update(plain[:5]) + op.update(plain[5:]) + op.final() == cipher
    else:
        assert spec.decrypt(_key(vector), iv).oneshot(cipher) == plain
