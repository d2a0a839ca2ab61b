"""Known answers for the SHA-512/t HMACs and the legacy set (MD5, HMAC-MD5, single DES) through the
registry rows:

- CKM_MD5: RFC 1321 appendix A.5 (`hashes/MD5/rfc-1321.txt`);
- CKM_MD5_HMAC(_GENERAL): RFC 2202 §2 (`HMAC/rfc-2202-md5.txt`; test case 5's 96-bit MAC through
  the _GENERAL row);
- CKM_DES_ECB / CKM_DES_CBC: the NIST CAVP TDES known-answer files, whose `KEYs` lines are one DES key
  used for all three TDEA keys, that is single DES (SP 800-20 variable key/text, permutation and
  substitution-table tests);
- CKM_SHA512_224_HMAC / CKM_SHA512_256_HMAC: `cryptography-vectors` has no file for them; RFC 4231's
  inputs are checked against Python's own `hmac` module (OpenSSL through hashlib, not our path).
"""

from __future__ import annotations

import hmac

import pytest
from vectorfiles import nist_records, unhex

from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import Mechanism
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY


@pytest.mark.parametrize("vector", nist_records("hashes/MD5/rfc-1321.txt", "Len"), ids=lambda r: r["Len"])
def test_md5(vector: dict) -> None:
    message = unhex(vector["Msg"])[:int(vector["Len"]) // 8]
    op = REGISTRY.get(constants.CKM_MD5).digest(None)
    op.update(message)
    assert op.final() == unhex(vector["MD"])


@pytest.mark.parametrize("vector", nist_records("HMAC/rfc-2202-md5.txt", "Len"), ids=lambda r: r["Len"])
def test_hmac_md5(vector: dict) -> None:
    key = SecretMaterial("HMAC", unhex(vector["Key"]))
    message, expected = unhex(vector["Msg"]), unhex(vector["MD"])
    assert REGISTRY.get(constants.CKM_MD5_HMAC).sign(key, None).oneshot(message) == expected
    general = REGISTRY.get(constants.CKM_MD5_HMAC_GENERAL)
    general.validate(12)
    assert general.sign(key, 12).oneshot(message) == expected[:12]
    REGISTRY.get(constants.CKM_MD5_HMAC).verify(key, None).oneshot(message, expected)


def _single_des(mode: str) -> list:
    out = []
    for test in ("varkey", "vartext", "invperm", "permop", "subtab"):
        for r in nist_records(f"ciphers/3DES/{mode}/T{mode}{test}.rsp", "COUNT"):
            out.append(pytest.param(r, id=f"{test}-{r['section']}-{r['COUNT']}"))
    return out


def _run(mechanism: int, vector: dict) -> None:
    spec = REGISTRY.get(mechanism)
    key = SecretMaterial("DES", unhex(vector["KEYs"]))
    iv = unhex(vector["IV"]) if "IV" in vector else None
    spec.validate(iv)
    plain, cipher = unhex(vector["PLAINTEXT"]), unhex(vector["CIPHERTEXT"])
    if vector["section"] == "ENCRYPT":
        assert spec.encrypt(key, iv).oneshot(plain) == cipher
    else:
        assert spec.decrypt(key, iv).oneshot(cipher) == plain


@pytest.mark.parametrize("vector", _single_des("ECB"))
def test_des_ecb(vector: dict) -> None:
    _run(constants.CKM_DES_ECB, vector)


@pytest.mark.parametrize("vector", _single_des("CBC"))
def test_des_cbc(vector: dict) -> None:
    _run(constants.CKM_DES_CBC, vector)


def test_des_cbc_pad_and_keygen() -> None:
    key = REGISTRY.get(constants.CKM_DES_KEY_GEN).generate(None, constants.CKK_DES, None)
    assert key.kind == "DES" and len(key.value) == 8
    assert all(bin(b).count("1") % 2 == 1 for b in key.value)  # odd parity (FIPS 46-3)
    spec, iv = REGISTRY.get(constants.CKM_DES_CBC_PAD), bytes(8)
    ciphertext = spec.encrypt(key, iv).oneshot(b"thirteen byte")
    assert len(ciphertext) == 16 and spec.decrypt(key, iv).oneshot(ciphertext) == b"thirteen byte"
    # One DES key repeated is three-key TDEA with k1 = k2 = k3: the DES3 row agrees.
    des3 = REGISTRY.get(Mechanism.DES3_CBC_PAD)
    assert des3.encrypt(SecretMaterial("DES3", key.value * 3), iv).oneshot(b"thirteen byte") == ciphertext


@pytest.mark.parametrize("mechanism,general,name", [
    (constants.CKM_SHA512_224_HMAC, constants.CKM_SHA512_224_HMAC_GENERAL, "sha512_224"),
    (constants.CKM_SHA512_256_HMAC, constants.CKM_SHA512_256_HMAC_GENERAL, "sha512_256"),
])
@pytest.mark.parametrize("vector", nist_records("HMAC/rfc-4231-sha512.txt", "Len"), ids=lambda r: r["Len"])
def test_sha512_t_hmac(mechanism: int, general: int, name: str, vector: dict) -> None:
    key_bytes, message = unhex(vector["Key"]), unhex(vector["Msg"])
    expected = hmac.new(key_bytes, message, name).digest()  # hmac takes a hashlib name
    key = SecretMaterial("HMAC", key_bytes)
    assert REGISTRY.get(mechanism).sign(key, None).oneshot(message) == expected
    assert REGISTRY.get(general).sign(key, 16).oneshot(message) == expected[:16]
