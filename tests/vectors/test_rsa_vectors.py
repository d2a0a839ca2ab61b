"""RSA known answers through the registry rows: PKCS#1 v2.1 OAEP and PSS vectors, the SHA-2 OAEP vectors
pyca built (oaep-custom), PKCS#1 v1.5 encryption and signature vectors, and NIST FIPS 186-3 SigVer
(PKCS#1 v1.5 and PSS, including the failing cases) and SigGen15 (as verification)."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from vectorfiles import nist_records, pkcs1_vectors, sample, unhex

from emulator.crypto import digest as digest_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial
from pkcs11_shim.constants import CKR, MGF, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY

HASH_MECHANISMS = {"SHA1": Mechanism.SHA_1, "SHA224": Mechanism.SHA224, "SHA256": Mechanism.SHA256,
                   "SHA384": Mechanism.SHA384, "SHA512": Mechanism.SHA512}
MGFS = {"SHA1": MGF.SHA1, "SHA224": MGF.SHA224, "SHA256": MGF.SHA256, "SHA384": MGF.SHA384, "SHA512": MGF.SHA512}
PKCS_ROWS = {"SHA1": Mechanism.SHA1_RSA_PKCS, "SHA224": Mechanism.SHA224_RSA_PKCS,
             "SHA256": Mechanism.SHA256_RSA_PKCS, "SHA384": Mechanism.SHA384_RSA_PKCS,
             "SHA512": Mechanism.SHA512_RSA_PKCS}
PSS_ROWS = {"SHA1": Mechanism.SHA1_RSA_PKCS_PSS, "SHA224": Mechanism.SHA224_RSA_PKCS_PSS,
            "SHA256": Mechanism.SHA256_RSA_PKCS_PSS, "SHA384": Mechanism.SHA384_RSA_PKCS_PSS,
            "SHA512": Mechanism.SHA512_RSA_PKCS_PSS}


_KEYS: dict[int, PrivateMaterial] = {}


def _private(key: dict) -> PrivateMaterial:
    # Loading an RSA private key validates it (~30 ms); vectors share keys, so load each once.
    if key["n"] in _KEYS:
        return _KEYS[key["n"]]
    numbers_ = rsa.RSAPrivateNumbers(key["p"], key["q"], key["d"], key["dmp1"], key["dmq1"], key["iqmp"],
                                     rsa.RSAPublicNumbers(key["e"], key["n"]))
    # Known-good vector keys: skip the (slow) consistency check.
    _KEYS[key["n"]] = PrivateMaterial(numbers_.private_key(unsafe_skip_rsa_key_validation=True))
    return _KEYS[key["n"]]


def _public(n: int, e: int) -> PublicMaterial:
    return PublicMaterial(rsa.RSAPublicNumbers(e, n).public_key())


def _examples(path: str) -> list:
    out = []
    for k, key in enumerate(pkcs1_vectors(path)):
        for i, example in enumerate(key["examples"]):
            out.append(pytest.param(key, example, id=f"key{k + 1}-{i + 1}"))
    return out


# --- OAEP ----------------------------------------------------------------------------------------

def _oaep_vectors() -> list:
    out = [pytest.param("SHA1", "SHA1", p.values[0], p.values[1], id=f"sha1-sha1-{p.id}")
           for p in _examples("asymmetric/RSA/pkcs-1v2-1d2-vec/oaep-vect.txt")]
    for mgf in MGFS:
        for alg in MGFS:
            if (mgf, alg) == ("SHA1", "SHA1"):
                continue
            path = f"asymmetric/RSA/oaep-custom/oaep-{mgf.lower()}-{alg.lower()}.txt"
            for p in sample(_examples(path), 6):
                key = p.values[0]
                # The file's header names both hashes: "alg=sha512 mgf1=sha256".
                found = re.search(r"alg=(\w+) mgf1=(\w+)", key["alg"])
                assert found is not None
                out.append(pytest.param(found.group(1).upper(), found.group(2).upper(), key, p.values[1],
                                        id=f"{alg}-{mgf}-{p.id}"))
    return out


@pytest.mark.parametrize(("hash_name", "mgf_name", "key", "example"), _oaep_vectors())
def test_oaep_decrypt(hash_name: str, mgf_name: str, key: dict, example: dict) -> None:
    spec = REGISTRY.get(Mechanism.RSA_PKCS_OAEP)
    param = params.OaepParams(HASH_MECHANISMS[hash_name], MGFS[mgf_name], constants.CKZ_DATA_SPECIFIED, b"")
    spec.validate(param)
    private = _private(key)
    assert spec.decrypt(private, param).oneshot(example["encryption"]) == example["message"]
    # And our encryption decrypts back (OAEP is randomised, so no fixed answer to compare).
    again = spec.encrypt(private.public(), param).oneshot(example["message"])
    assert spec.decrypt(private, param).oneshot(again) == example["message"]


# --- PKCS#1 v1.5 encryption and signatures ---------------------------------------------------

@pytest.mark.parametrize(("key", "example"),
                         sample(_examples("asymmetric/RSA/pkcs1v15crypt-vectors.txt"), 60))
def test_pkcs1v15_decrypt(key: dict, example: dict) -> None:
    spec = REGISTRY.get(Mechanism.RSA_PKCS)
    assert spec.decrypt(_private(key), None).oneshot(example["encryption"]) == example["message"]


@pytest.mark.parametrize(("key", "example"),
                         sample(_examples("asymmetric/RSA/pkcs1v15sign-vectors.txt"), 60))
def test_pkcs1v15_sign(key: dict, example: dict) -> None:
    # The file signs with SHA-1: CKM_SHA1_RSA_PKCS must give the same (deterministic) signature.
    spec = REGISTRY.get(Mechanism.SHA1_RSA_PKCS)
    private = _private(key)
    assert spec.sign(private, None).oneshot(example["message"]) == example["signature"]
    spec.verify(private.public(), None).oneshot(example["message"], example["signature"])
    # CKM_RSA_PKCS over the DigestInfo, and C_VerifyRecover giving the DigestInfo back.
    digest_info = bytes.fromhex("3021300906052b0e03021a05000414") + digest_crypto.digest("SHA1", example["message"])
    raw = REGISTRY.get(Mechanism.RSA_PKCS)
    assert raw.sign(private, None).oneshot(digest_info) == example["signature"]
    assert raw.verify_recover(private.public(), None).oneshot(example["signature"]) == digest_info


# --- PSS -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "example"), _examples("asymmetric/RSA/pkcs-1v2-1d2-vec/pss-vect.txt"))
def test_pss_verify(key: dict, example: dict) -> None:
    public = _public(key["n"], key["e"])
    param = params.PssParams(Mechanism.SHA_1, MGF.SHA1, len(example["salt"]))
    hashed = REGISTRY.get(Mechanism.SHA1_RSA_PKCS_PSS)
    hashed.validate(param)
    hashed.verify(public, param).oneshot(example["message"], example["signature"])
    raw = REGISTRY.get(Mechanism.RSA_PKCS_PSS)
    raw.verify(public, param).oneshot(digest_crypto.digest("SHA1", example["message"]), example["signature"])
    tampered = bytes([example["signature"][0] ^ 1]) + example["signature"][1:]
    with pytest.raises(PKCS11Error) as err:
        hashed.verify(public, param).oneshot(example["message"], tampered)
    assert err.value.rv == CKR.SIGNATURE_INVALID


# --- NIST FIPS 186-3 -------------------------------------------------------------------------

def _nist(path: str, cap: int) -> list:
    records = nist_records(path, "SHAAlg", context_keys=("n", "p", "q") if "SigVer" in path else ("n", "e"))
    return [pytest.param(r, id=f"mod{r['mod']}-{r['SHAAlg']}-{i}") for i, r in enumerate(sample(records, cap))]


@pytest.mark.parametrize("vector", _nist("asymmetric/RSA/FIPS_186-2/SigVer15_186-3.rsp", 150))
def test_sigver_pkcs1v15(vector: dict) -> None:
    spec = REGISTRY.get(PKCS_ROWS[vector["SHAAlg"]])
    public = _public(int(vector["n"], 16), int(vector["e"], 16))
    message, signature = unhex(vector["Msg"]), unhex(vector["S"])
    if vector["Result"].startswith("F"):
        with pytest.raises(PKCS11Error) as err:
            spec.verify(public, None).oneshot(message, signature)
        assert err.value.rv == CKR.SIGNATURE_INVALID
    else:
        spec.verify(public, None).oneshot(message, signature)


@pytest.mark.parametrize("vector", _nist("asymmetric/RSA/FIPS_186-2/SigVerPSS_186-3.rsp", 150))
def test_sigver_pss(vector: dict) -> None:
    name = vector["SHAAlg"]
    spec = REGISTRY.get(PSS_ROWS[name])
    # The file's salt is 10 bytes (its header says "Salt len: 10"), MGF1 with the message hash.
    param = params.PssParams(HASH_MECHANISMS[name], MGFS[name], len(unhex(vector["SaltVal"])))
    spec.validate(param)
    public = _public(int(vector["n"], 16), int(vector["e"], 16))
    message, signature = unhex(vector["Msg"]), unhex(vector["S"])
    if vector["Result"].startswith("F"):
        with pytest.raises(PKCS11Error) as err:
            spec.verify(public, param).oneshot(message, signature)
        assert err.value.rv == CKR.SIGNATURE_INVALID
    else:
        spec.verify(public, param).oneshot(message, signature)


@pytest.mark.parametrize("vector", _nist("asymmetric/RSA/FIPS_186-2/SigGen15_186-3.rsp", 90))
def test_siggen_pkcs1v15_verifies(vector: dict) -> None:
    spec = REGISTRY.get(PKCS_ROWS[vector["SHAAlg"]])
    public = _public(int(vector["n"], 16), int(vector["e"], 16))
    op = spec.verify(public, None)
    message = unhex(vector["Msg"])
    op.update(message[:3])
    op.update(message[3:])
    op.final(unhex(vector["S"]))
