"""ML-DSA mechanisms (PKCS#11 3.2 §6.x, FIPS 204): key pair generation, pure CKM_ML_DSA and the
pre-hash CKM_HASH_ML_DSA family.

Parameters (3.2): CKM_ML_DSA and CKM_HASH_ML_DSA_<hash> take an optional CK_SIGN_ADDITIONAL_CONTEXT
(hedging variant and a context of at most 255 bytes); CKM_HASH_ML_DSA takes a
CK_HASH_SIGN_ADDITIONAL_CONTEXT, which also names the hash the caller already applied, and signs
that digest (single-part only, as the 3.2 mechanism table says).

Hedging: `cryptography` always signs hedged (fresh rnd), so CKH_HEDGE_PREFERRED and
CKH_HEDGE_REQUIRED are served and C_SignInit with CKH_DETERMINISTIC_REQUIRED is refused with
CKR_MECHANISM_PARAM_INVALID (the deterministic variant cannot be computed here). Verification does
not depend on rnd, so every variant verifies, deterministic signatures included.

CK_MECHANISM_INFO sizes: the 3.2 tables give ML-DSA sizes as parameter sets, so min/max are the
CKP_ML_DSA_* codes we offer (1..3).
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import mldsa as mldsa_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial

from ..constants import (
    CKH_DETERMINISTIC_REQUIRED,
    CKH_HEDGE_PREFERRED,
    CKH_HEDGE_REQUIRED,
    CKM_HASH_ML_DSA,
    CKM_HASH_ML_DSA_SHA3_224,
    CKM_HASH_ML_DSA_SHA3_256,
    CKM_HASH_ML_DSA_SHA3_384,
    CKM_HASH_ML_DSA_SHA3_512,
    CKM_HASH_ML_DSA_SHA224,
    CKM_HASH_ML_DSA_SHA256,
    CKM_HASH_ML_DSA_SHA384,
    CKM_HASH_ML_DSA_SHA512,
    CKM_HASH_ML_DSA_SHAKE128,
    CKM_HASH_ML_DSA_SHAKE256,
    CKR,
    Attribute,
    KeyType,
    Mechanism,
    MechanismFlag,
)
from ..errors import PKCS11Error
from ..attributes import pqc as pqc_attrs
from .ops import BufferedSignOp, BufferedVerifyOp, SinglePartSignOp, SinglePartVerifyOp
from .params import SignAdditionalContext  # noqa: F401  (re-exported: the rows' parameter type)
from .registry import MechanismSpec, Registry

F = MechanismFlag


HEDGES = frozenset({CKH_HEDGE_PREFERRED, CKH_HEDGE_REQUIRED, CKH_DETERMINISTIC_REQUIRED})

#: CKM_HASH_ML_DSA_<hash> -> the pre-hash name of `emulator.crypto.mldsa.PREHASHES`.
HASH_ML_DSA: dict[int, str] = {
    CKM_HASH_ML_DSA_SHA224: "SHA224", CKM_HASH_ML_DSA_SHA256: "SHA256",
    CKM_HASH_ML_DSA_SHA384: "SHA384", CKM_HASH_ML_DSA_SHA512: "SHA512",
    CKM_HASH_ML_DSA_SHA3_224: "SHA3-224", CKM_HASH_ML_DSA_SHA3_256: "SHA3-256",
    CKM_HASH_ML_DSA_SHA3_384: "SHA3-384", CKM_HASH_ML_DSA_SHA3_512: "SHA3-512",
    CKM_HASH_ML_DSA_SHAKE128: "SHAKE128", CKM_HASH_ML_DSA_SHAKE256: "SHAKE256",
}
#: The hash mechanisms CK_HASH_SIGN_ADDITIONAL_CONTEXT.hash may name for CKM_HASH_ML_DSA.
PREHASH_OF_DIGEST: dict[int, str] = {
    Mechanism.SHA224: "SHA224", Mechanism.SHA256: "SHA256", Mechanism.SHA384: "SHA384",
    Mechanism.SHA512: "SHA512", Mechanism.SHA3_224: "SHA3-224", Mechanism.SHA3_256: "SHA3-256",
    Mechanism.SHA3_384: "SHA3-384", Mechanism.SHA3_512: "SHA3-512",
}


def _check_context(param: SignAdditionalContext) -> None:
    if param.hedge not in HEDGES:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"hedge variant 0x{param.hedge:x}")
    if len(param.context) > mldsa_crypto.MAX_CONTEXT_LEN:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"context of {len(param.context)} bytes")


def validate_optional_context(param: Any) -> None:
    if param is None:
        return
    if not isinstance(param, SignAdditionalContext) or param.hash_alg is not None:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_SIGN_ADDITIONAL_CONTEXT expected")
    _check_context(param)


def validate_hash_context(param: Any) -> None:
    if not isinstance(param, SignAdditionalContext) or param.hash_alg is None:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_HASH_SIGN_ADDITIONAL_CONTEXT required")
    if param.hash_alg not in PREHASH_OF_DIGEST:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"hash mechanism 0x{param.hash_alg:x}")
    _check_context(param)


def _context(param: SignAdditionalContext | None) -> bytes:
    return param.context if param is not None else b""


def _signing_context(param: SignAdditionalContext | None) -> bytes:
    if param is not None and param.hedge == CKH_DETERMINISTIC_REQUIRED:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "deterministic ML-DSA signing is not available")
    return _context(param)


def _key(material: Any, *, private: bool) -> Any:
    if private and not isinstance(material, PrivateMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an ML-DSA private key is needed")
    if not isinstance(material, (PrivateMaterial, PublicMaterial)) or material.kind != mldsa_crypto.KIND:
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an ML-DSA key is needed")
    return material


def generate_pair(param: Any, public_attrs: dict[int, Any], private_attrs: dict[int, Any]) -> PrivateMaterial:
    name = pqc_attrs.parameter_set_name(KeyType.ML_DSA, public_attrs[Attribute.PARAMETER_SET])
    return mldsa_crypto.generate(name)


# --- pure ML-DSA: the message is needed whole (mu covers tr || M'), so multi-part keeps it ---------

def sign(material: Any, param: Any) -> BufferedSignOp:
    m, ctx = _key(material, private=True), _signing_context(param)
    return BufferedSignOp(lambda data: mldsa_crypto.sign(m, data, ctx))


def verify(material: Any, param: Any) -> BufferedVerifyOp:
    m, ctx = _key(material, private=False), _context(param)
    return BufferedVerifyOp(lambda data, sig: mldsa_crypto.verify(m, data, sig, ctx),
                            mldsa_crypto.signature_len(m))


# --- HashML-DSA with the hash applied here (multi-part) -----------------------------------------

class PrehashSignOp:
    """Hash the input as it comes with the mechanism's PH, sign PH(M) at final (FIPS 204 Alg. 4)."""

    def __init__(self, material: PrivateMaterial, hash_name: str, context: bytes) -> None:
        self._material, self._hash_name, self._context = material, hash_name, context
        self._hash = mldsa_crypto.prehash(hash_name)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def final(self) -> bytes:
        return mldsa_crypto.sign_prehashed(self._material, self._hash_name, self._hash.finalize(), self._context)

    def oneshot(self, data: bytes) -> bytes:
        self.update(data)
        return self.final()


class PrehashVerifyOp:
    def __init__(self, material: Any, hash_name: str, context: bytes) -> None:
        self._material, self._hash_name, self._context = material, hash_name, context
        self._hash = mldsa_crypto.prehash(hash_name)
        self._sig_len = mldsa_crypto.signature_len(material)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def final(self, signature: bytes) -> None:
        if len(signature) != self._sig_len:
            raise PKCS11Error(CKR.SIGNATURE_LEN_RANGE, f"signature of {len(signature)} bytes")
        mldsa_crypto.verify_prehashed(self._material, self._hash_name, self._hash.finalize(), signature,
                                      self._context)

    def oneshot(self, data: bytes, signature: bytes) -> None:
        self.update(data)
        self.final(signature)


def _prehash_sign(hash_name: str) -> Any:
    def sign_factory(material: Any, param: Any) -> PrehashSignOp:
        return PrehashSignOp(_key(material, private=True), hash_name, _signing_context(param))

    return sign_factory


def _prehash_verify(hash_name: str) -> Any:
    def verify_factory(material: Any, param: Any) -> PrehashVerifyOp:
        return PrehashVerifyOp(_key(material, private=False), hash_name, _context(param))

    return verify_factory


# --- CKM_HASH_ML_DSA: the caller hashed; single-part over the digest -----------------------------

def _digest_check(hash_name: str) -> Any:
    length = mldsa_crypto.digest_len(hash_name)

    def check(data: bytes) -> None:
        if len(data) != length:
            raise PKCS11Error(CKR.DATA_LEN_RANGE, f"a {hash_name} digest is {length} bytes, not {len(data)}")

    return check


def hash_sign(material: Any, param: SignAdditionalContext) -> SinglePartSignOp:
    m, name, ctx = _key(material, private=True), PREHASH_OF_DIGEST[param.hash_alg], _signing_context(param)
    return SinglePartSignOp(lambda digest: mldsa_crypto.sign_prehashed(m, name, digest, ctx),
                            _digest_check(name))


def hash_verify(material: Any, param: SignAdditionalContext) -> SinglePartVerifyOp:
    m, name = _key(material, private=False), PREHASH_OF_DIGEST[param.hash_alg]
    return SinglePartVerifyOp(
        lambda digest, sig: mldsa_crypto.verify_prehashed(m, name, digest, sig, param.context),
        mldsa_crypto.signature_len(m), _digest_check(name))


def register(registry: Registry) -> None:
    low, high = min(pqc_attrs.ML_DSA_SETS), max(pqc_attrs.ML_DSA_SETS)
    sizes = {"min_key": low, "max_key": high}
    key_types = frozenset({KeyType.ML_DSA})
    registry.add(MechanismSpec(
        mechanism=Mechanism.ML_DSA_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR, generate_pair=generate_pair,
        generated_key_types=(KeyType.ML_DSA,), **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.ML_DSA, flags=F.SIGN | F.VERIFY, key_types=key_types,
        param_kind="sign_additional_context", validate=validate_optional_context, sign=sign, verify=verify,
        **sizes))
    registry.add(MechanismSpec(
        mechanism=CKM_HASH_ML_DSA, flags=F.SIGN | F.VERIFY, key_types=key_types,
        param_kind="hash_sign_additional_context", validate=validate_hash_context, sign=hash_sign,
        verify=hash_verify, name="CKM_HASH_ML_DSA", **sizes))
    for mechanism, hash_name in HASH_ML_DSA.items():
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=F.SIGN | F.VERIFY, key_types=key_types,
            param_kind="sign_additional_context", validate=validate_optional_context,
            sign=_prehash_sign(hash_name), verify=_prehash_verify(hash_name),
            name="CKM_HASH_ML_DSA_" + hash_name.replace("-", "_"), **sizes))
