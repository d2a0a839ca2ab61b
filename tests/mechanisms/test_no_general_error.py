"""No CKR_GENERAL_ERROR is reachable from a parameter a row accepts at Init.

Every registry row is walked with its round-trip cases (`mechcases.CASES`) and, for the parameter
structures that name hashes, MGFs, KDFs or flags, every value of the tables those names come from
(`hashes.DIGEST_MECHANISMS`, `MGF1_HASHES`, `X963_KDF_HASHES`, EdDSA's phFlag/context, AES key
sizes). A combination the row's validator refuses must be refused with a PKCS#11 code; one it
accepts must then run every operation the row offers (encrypt, decrypt, sign, verify, wrap, unwrap,
derive) and end in a result or a PKCS11Error with a code the spec names. Anything else (a
`cryptography` UnsupportedAlgorithm, a ValueError) is what the C boundary turns into
CKR_GENERAL_ERROR and a traceback on stderr.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from mechcases import CASES, Case, public_of

from emulator.crypto import ec as ec_crypto
from pkcs11_shim.constants import CKR, KDF, KeyType, Mechanism, MechanismFlag
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim.mechanisms.hashes import DIGEST_MECHANISMS, MGF1_HASHES, X963_KDF_HASHES
from pkcs11_shim.mechanisms.registry import REGISTRY

F = MechanismFlag
#: A number no table has: the validators must refuse it with a code, not a KeyError.
UNKNOWN = 0x7FFFFFF0


def _oaep_variants(oaep: params.OaepParams) -> list[params.OaepParams]:
    return [dataclasses.replace(oaep, hash_alg=h, mgf=m)
            for h, m in itertools.product([*DIGEST_MECHANISMS, UNKNOWN], [*MGF1_HASHES, UNKNOWN])]


def _variants(param: Any) -> list[Any]:
    """The parameter and its table-driven neighbours."""
    if isinstance(param, params.OaepParams):
        return _oaep_variants(param)
    if isinstance(param, params.RsaAesKeyWrapParams):
        return [params.RsaAesKeyWrapParams(bits, oaep) for bits in (128, 192, 256)
                for oaep in _oaep_variants(param.oaep)]
    if isinstance(param, params.PssParams):
        return [dataclasses.replace(param, hash_alg=h, mgf=m, salt_len=s)
                for h, m, s in itertools.product([*DIGEST_MECHANISMS, UNKNOWN], [*MGF1_HASHES, UNKNOWN],
                                                 (0, param.salt_len, 300))]
    if isinstance(param, params.Ecdh1DeriveParams):
        return [dataclasses.replace(param, kdf=k, shared_data=d)
                for k, d in itertools.product([KDF.NULL, *X963_KDF_HASHES, UNKNOWN], (b"", b"info"))]
    if isinstance(param, params.EddsaParams):
        return [params.EddsaParams(ph, ctx) for ph in (False, True) for ctx in (b"", b"context")]
    if isinstance(param, params.HkdfParams):
        return [dataclasses.replace(param, prf_hash=h) for h in [*DIGEST_MECHANISMS, UNKNOWN]]
    return [param]


def _case_variants() -> list:
    out = []
    for case in CASES:
        variants = _variants(case.param)
        if case.mechanism == Mechanism.EDDSA and case.param is None:  # also with every params structure
            variants += _variants(params.EddsaParams(False, b""))
        out.append(pytest.param(case, variants, id=case.id()))
    return out


def _no_general_error(fn: Any, *args: Any) -> Any:
    """Run one call; None when it raised a PKCS#11 error (asserting it is not CKR_GENERAL_ERROR)."""
    try:
        return fn(*args)
    except PKCS11Error as err:
        assert err.rv != CKR.GENERAL_ERROR, f"{fn} gave CKR_GENERAL_ERROR: {err}"
        return None
    # Any other exception propagates and fails the test: at the C boundary it is CKR_GENERAL_ERROR.


def _exercise(case: Case, param: Any, keys: dict) -> None:
    spec = REGISTRY.get(case.mechanism)
    key = keys.get(case.key)
    flags = spec.flags
    if flags & F.ENCRYPT:
        op = _no_general_error(spec.encrypt, public_of(key), param)
        out = op and _no_general_error(op.oneshot, case.data)
        if flags & F.DECRYPT:
            dec = _no_general_error(spec.decrypt, key, param)
            if dec is not None:
                _no_general_error(dec.oneshot, out if out is not None else bytes(256))
    if flags & F.SIGN:
        op = _no_general_error(spec.sign, key, param)
        signature = op and _no_general_error(op.oneshot, case.data)
        if flags & F.VERIFY:
            ver = _no_general_error(spec.verify, public_of(key), param)
            if ver is not None:
                _no_general_error(ver.oneshot, case.data, signature if signature is not None else bytes(64))
    if flags & F.WRAP:
        target = keys["aes128"]
        wrapped = _no_general_error(spec.wrap, public_of(key), param, target)
        if flags & F.UNWRAP:
            _no_general_error(spec.unwrap, key, param, wrapped if wrapped is not None else bytes(272), "AES", None)
    if flags & F.DERIVE and key is not None:
        other = keys["generic32"]
        _no_general_error(spec.derive, key, param, KeyType.GENERIC_SECRET, 16, lambda handle: other)


@pytest.mark.parametrize("case,variants", _case_variants())
def test_accepted_parameters_never_give_general_error(case: Case, variants: list, keys: dict,
                                                     second_keys: dict) -> None:
    spec = REGISTRY.get(case.mechanism)
    for param in variants:
        if isinstance(param, params.Ecdh1DeriveParams):
            other = second_keys[case.key]
            public = other.public().key.public_bytes_raw() if other.kind == "X25519" else ec_crypto.point(other)
            param = dataclasses.replace(param, public_data=public)
        try:
            spec.validate(param)
        except PKCS11Error as err:
            assert err.rv != CKR.GENERAL_ERROR
            continue
        _exercise(case, param, keys)


def test_oaep_with_sha3_is_refused_at_init() -> None:
    """`cryptography` has no OAEP over SHA-3 or SHA-512/t: the parameter is refused when the
    operation starts (CKR_MECHANISM_PARAM_INVALID), never at C_Encrypt with CKR_GENERAL_ERROR."""
    from pkcs11_shim.constants import MGF
    from pkcs11_shim import constants

    for hash_alg, mgf in ((Mechanism.SHA3_256, MGF.SHA256), (Mechanism.SHA256, MGF.SHA3_256),
                          (constants.CKM_SHA512_224, MGF.SHA1)):
        oaep = params.OaepParams(hash_alg, mgf, constants.CKZ_DATA_SPECIFIED, b"")
        for mechanism, param in ((Mechanism.RSA_PKCS_OAEP, oaep),
                                 (constants.CKM_RSA_AES_KEY_WRAP, params.RsaAesKeyWrapParams(256, oaep))):
            with pytest.raises(PKCS11Error) as err:
                REGISTRY.get(mechanism).validate(param)
            assert err.value.rv == CKR.MECHANISM_PARAM_INVALID
