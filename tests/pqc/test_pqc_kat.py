"""Known answers for ML-DSA (FIPS 204) and ML-KEM (FIPS 203) through PKCS#11, from the KAT files the
`cryptography-vectors` package ships (asymmetric/MLDSA/kat_MLDSA_*_det_pure.rsp,
asymmetric/MLKEM/kat_MLKEM_*.rsp).

ML-DSA: the private key is imported by its seed (CKA_SEED = xi) and must give the file's public key
(in its CKA_PUBLIC_KEY_INFO); the public key is imported by CKA_VALUE = pk and must accept the
file's signature over msg with its context (CK_SIGN_ADDITIONAL_CONTEXT), through C_Verify and
C_VerifySignature, and refuse it for any other message. The files' signatures are deterministic
(rnd = 0), which `cryptography` cannot produce, so signing is checked by verification against pk.
ML-KEM: the private key is imported by CKA_SEED = d || z and must give pk; C_DecapsulateKey of ct
gives ss, and of the file's invalid ciphertext ct_n the implicit-rejection secret ss_n.
"""

from __future__ import annotations

from pathlib import Path

import cryptography_vectors
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from pkcs11_shim.constants import CKA_PUBLIC_KEY_INFO, CKH_DETERMINISTIC_REQUIRED, CKH_HEDGE_PREFERRED, CKR

VECTORS = Path(cryptography_vectors.__file__).parent / "asymmetric"
#: Vectors per file: each costs a few C calls; the first ones of every file are enough to catch a
#: wrong encoding, and every parameter set is covered.
PER_FILE = 25


def read_rsp(path: Path, limit: int) -> list[dict[str, str]]:
    cases, current = [], {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            if current:
                cases.append(current)
                current = {}
                if len(cases) == limit:
                    break
            continue
        key, _, value = line.partition(" = ")
        current[key] = value
    if current and len(cases) < limit:
        cases.append(current)
    return cases


MLDSA = [(code, f"MLDSA/kat_MLDSA_{n}_det_pure.rsp", sig_len) for code, n, sig_len in
         ((1, 44, 2420), (2, 65, 3309), (3, 87, 4627))]


def _public(raw, session: int, key_type: int, code: int, pk: bytes) -> int:
    return raw.create(session, {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: key_type,
                                Attribute.PARAMETER_SET: code, Attribute.VALUE: pk})


def _private(raw, session: int, key_type: int, code: int, seed: bytes) -> int:
    return raw.create(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: key_type,
                                Attribute.PARAMETER_SET: code, Attribute.SEED: seed})


@pytest.mark.parametrize("code, relative, sig_len", MLDSA, ids=["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"])
def test_ml_dsa_kat(raw, raw_session, code: int, relative: str, sig_len: int) -> None:
    for case in read_rsp(VECTORS / relative, PER_FILE):
        pk, msg, ctx = bytes.fromhex(case["pk"]), bytes.fromhex(case["msg"]), bytes.fromhex(case["ctx"])
        sig = bytes.fromhex(case["sm"])[:sig_len]
        assert bytes.fromhex(case["sm"])[sig_len:] == msg  # sm = signature || message
        priv = _private(raw, raw_session, KeyType.ML_DSA, code, bytes.fromhex(case["xi"]))
        assert raw.get(raw_session, priv, CKA_PUBLIC_KEY_INFO).endswith(pk), case["count"]
        pub = _public(raw, raw_session, KeyType.ML_DSA, code, pk)
        mech = lambda: raw.mechanism(Mechanism.ML_DSA, raw.context(CKH_HEDGE_PREFERRED, ctx))  # noqa: E731
        assert raw.verify(raw_session, mech(), pub, msg, sig) == CKR.OK, case["count"]
        # The files' signatures are deterministic: verifying under that variant works as well.
        deterministic = raw.mechanism(Mechanism.ML_DSA, raw.context(CKH_DETERMINISTIC_REQUIRED, ctx))
        assert raw.verify(raw_session, deterministic, pub, msg, sig) == CKR.OK
        assert raw.verify_signature(raw_session, mech(), pub, sig, data=msg) == CKR.OK
        assert raw.verify(raw_session, mech(), pub, msg + b"\0", sig) == CKR.SIGNATURE_INVALID
        # Our own (hedged) signature with the KAT private key verifies under the KAT public key.
        ours = raw.sign(raw_session, mech(), priv, msg)
        assert ours != sig and raw.verify(raw_session, mech(), pub, msg, ours) == CKR.OK


@pytest.mark.parametrize("code, relative", [(2, "MLKEM/kat_MLKEM_768.rsp"), (3, "MLKEM/kat_MLKEM_1024.rsp")],
                         ids=["ML-KEM-768", "ML-KEM-1024"])
def test_ml_kem_kat(raw, raw_session, code: int, relative: str) -> None:
    secret = raw.secret_template(KeyType.GENERIC_SECRET, 32)
    for case in read_rsp(VECTORS / relative, PER_FILE):
        pk = bytes.fromhex(case["pk"])
        priv = _private(raw, raw_session, KeyType.ML_KEM, code, bytes.fromhex(case["d"] + case["z"]))
        assert raw.get(raw_session, priv, CKA_PUBLIC_KEY_INFO).endswith(pk), case["count"]
        mech = raw.mechanism(Mechanism.ML_KEM)
        key = raw.decapsulate(raw_session, mech, priv, bytes.fromhex(case["ct"]), secret)
        assert raw.get(raw_session, key, Attribute.VALUE).hex() == case["ss"], case["count"]
        rejected = raw.decapsulate(raw_session, mech, priv, bytes.fromhex(case["ct_n"]), secret)
        assert raw.get(raw_session, rejected, Attribute.VALUE).hex() == case["ss_n"], case["count"]
        pub = _public(raw, raw_session, KeyType.ML_KEM, code, pk)
        assert raw.get(raw_session, pub, Attribute.VALUE) == pk
