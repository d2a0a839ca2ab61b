"""AES key wrap known answers through the registry rows: NIST SP 800-38F KW-AE/KW-AD and KWP-AE/KWP-AD
(CAVS 17.4), and the RFC 5649 examples of `keywrap/kwp_botan.txt`.

Vectors run both as C_Encrypt/C_Decrypt (the rows are usable as ciphers) and as C_WrapKey/C_UnwrapKey
of a generic secret whose value is the vector's plaintext.
"""

from __future__ import annotations

import pytest
from vectorfiles import nist_records, sample, unhex

from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import CKR, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms.registry import REGISTRY

PER_FILE = 40


def _vectors(kind: str, direction: str) -> list:
    out = []
    for bits in (128, 192, 256):
        records = nist_records(f"keywrap/kwtestvectors/{kind}_{direction}_{bits}.txt", "COUNT")
        for r in sample(records, PER_FILE):
            out.append(pytest.param(r, id=f"{bits}-len{r['PLAINTEXT LENGTH']}-{r['COUNT']}"))
    return out


@pytest.mark.parametrize("vector", _vectors("KW", "AE"))
def test_kw_encrypt(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.AES_KEY_WRAP)
    kek = SecretMaterial("AES", unhex(vector["K"]))
    plain, wrapped = unhex(vector["P"]), unhex(vector["C"])
    assert spec.encrypt(kek, None).oneshot(plain) == wrapped
    # As C_WrapKey of a generic secret (already a multiple of 8 bytes, so no zero padding).
    assert spec.wrap(kek, None, SecretMaterial("GENERIC", plain)) == wrapped


@pytest.mark.parametrize("vector", _vectors("KW", "AD"))
def test_kw_decrypt(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.AES_KEY_WRAP)
    kek = SecretMaterial("AES", unhex(vector["K"]))
    wrapped = unhex(vector["C"])
    if vector.get("FAIL"):
        with pytest.raises(PKCS11Error) as err:
            spec.decrypt(kek, None).oneshot(wrapped)
        assert err.value.rv == CKR.ENCRYPTED_DATA_INVALID
        with pytest.raises(PKCS11Error) as err:
            spec.unwrap(kek, None, wrapped, "GENERIC", None)
        assert err.value.rv == CKR.WRAPPED_KEY_INVALID
        return
    plain = unhex(vector["P"])
    assert spec.decrypt(kek, None).oneshot(wrapped) == plain
    assert spec.unwrap(kek, None, wrapped, "GENERIC", len(plain)).value == plain


@pytest.mark.parametrize("mechanism", [Mechanism.AES_KEY_WRAP_KWP, Mechanism.AES_KEY_WRAP_PAD])
@pytest.mark.parametrize("vector", _vectors("KWP", "AE"))
def test_kwp_encrypt(vector: dict, mechanism: int) -> None:
    spec = REGISTRY.get(mechanism)
    kek = SecretMaterial("AES", unhex(vector["K"]))
    plain, wrapped = unhex(vector["P"]), unhex(vector["C"])
    assert spec.encrypt(kek, None).oneshot(plain) == wrapped
    assert spec.wrap(kek, None, SecretMaterial("GENERIC", plain)) == wrapped


@pytest.mark.parametrize("vector", _vectors("KWP", "AD"))
def test_kwp_decrypt(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.AES_KEY_WRAP_KWP)
    kek = SecretMaterial("AES", unhex(vector["K"]))
    wrapped = unhex(vector["C"])
    if vector.get("FAIL"):
        with pytest.raises(PKCS11Error) as err:
            spec.decrypt(kek, None).oneshot(wrapped)
        assert err.value.rv == CKR.ENCRYPTED_DATA_INVALID
        return
    plain = unhex(vector["P"])
    assert spec.decrypt(kek, None).oneshot(wrapped) == plain
    assert spec.unwrap(kek, None, wrapped, "GENERIC", None).value == plain


def _rfc5649_vectors() -> list:
    return [pytest.param(r, id=f"{r['COUNT']}") for r in nist_records("keywrap/kwp_botan.txt", "COUNT")]


@pytest.mark.parametrize("vector", _rfc5649_vectors())
def test_kwp_rfc5649(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.AES_KEY_WRAP_KWP)
    kek = SecretMaterial("AES", unhex(vector["Key"]))
    plain, wrapped = unhex(vector["Input"]), unhex(vector["Output"])
    assert spec.encrypt(kek, None).oneshot(plain) == wrapped
    assert spec.decrypt(kek, None).oneshot(wrapped) == plain
