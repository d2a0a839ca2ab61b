"""Elliptic-curve mechanisms over prime curves (PKCS#11 3.0 §2.3): key pair generation (P-256, P-384,
P-521, secp256k1), raw ECDSA, ECDSA with SHA-1/SHA-2, and ECDH1 derivation (also for X25519/X448
keys, which 3.0 §2.3.15 allows).

Sizes in CK_MECHANISM_INFO are bits of the curve order. Raw CKM_ECDSA is single-part (its input is
the hash); the ECDSA_SHA* rows hash as the data comes (multi-part, unlike SoftHSM2).
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import ec as ec_crypto
from emulator.crypto import edwards as edwards_crypto
from emulator.crypto import kdf
from emulator.crypto.material import PrivateMaterial, PublicMaterial, SecretMaterial

from .. import constants
from ..constants import CKR, KDF, Attribute, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import keybytes, params
from .hashes import X963_KDF_HASHES
from .ops import SinglePartSignOp, SinglePartVerifyOp, hash_then_sign_ops
from .registry import MechanismSpec, Registry

F = MechanismFlag
EC_FLAGS = F.EC_F_P | F.EC_NAMEDCURVE | F.EC_UNCOMPRESS
MIN_BITS, MAX_BITS = 192, 521
KEY_TYPES = frozenset({KeyType.EC})


def curve_of(attrs: dict[int, Any]) -> str:
    """The curve CKA_EC_PARAMS names (material kind for Edwards/Montgomery curves)."""
    der = attrs.get(Attribute.EC_PARAMS)
    if der is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_EC_PARAMS is required")
    try:
        return ec_crypto.curve_from_ec_params(bytes(der))
    except ValueError as exc:
        raise PKCS11Error(CKR.CURVE_NOT_SUPPORTED, str(exc)) from None


def generate_pair(param: Any, public_attrs: dict[int, Any], private_attrs: dict[int, Any]) -> PrivateMaterial:
    curve = curve_of(public_attrs if Attribute.EC_PARAMS in public_attrs else private_attrs)
    if curve not in ec_crypto.WEIERSTRASS_CURVES:
        raise PKCS11Error(CKR.CURVE_NOT_SUPPORTED, f"{curve} keys are made by their own key-pair mechanism")
    return ec_crypto.generate(curve)


def _key(material: Any, *, private: bool) -> Any:
    if private and not isinstance(material, PrivateMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an EC private key is needed")
    if not isinstance(material, (PrivateMaterial, PublicMaterial)) or material.kind != "EC":
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an EC key is needed")
    return material


# --- ECDSA ---------------------------------------------------------------------------------------

def _raw_sign(material: Any, param: Any) -> SinglePartSignOp:
    m = _key(material, private=True)

    def sign(data: bytes) -> bytes:
        try:
            return ec_crypto.ecdsa_sign_raw(m, data)
        except ValueError as exc:
            raise PKCS11Error(CKR.DATA_LEN_RANGE, str(exc)) from None

    return SinglePartSignOp(sign)


def _raw_verify(material: Any, param: Any) -> SinglePartVerifyOp:
    m = _key(material, private=False)

    def verify(data: bytes, signature: bytes) -> None:
        try:
            ec_crypto.ecdsa_verify_raw(m, data, signature)
        except ValueError as exc:
            raise PKCS11Error(CKR.DATA_LEN_RANGE, str(exc)) from None

    return SinglePartVerifyOp(verify, ec_crypto.signature_len(m))


def _hashed_ops(hash_name: str) -> tuple[Any, Any]:
    return hash_then_sign_ops(hash_name, _key, ec_crypto.ecdsa_sign_digest, ec_crypto.ecdsa_verify_digest,
                              ec_crypto.signature_len)


# --- ECDH1 ---------------------------------------------------------------------------------------

def validate_ecdh1(param: Any) -> None:
    params.require(param, params.Ecdh1DeriveParams, "CK_ECDH1_DERIVE_PARAMS")
    if param.kdf != KDF.NULL and param.kdf not in X963_KDF_HASHES:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"KDF 0x{param.kdf:x} not supported")
    # PKCS#11 3.0 §2.3.10: with CKD_NULL there is no shared data.
    if param.kdf == KDF.NULL and param.shared_data:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CKD_NULL takes no shared data")
    if not param.public_data:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "the other party's public value is missing")


def _shared_secret(base: Any, public_data: bytes) -> bytes:
    if not isinstance(base, PrivateMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "ECDH needs a private key")
    if base.kind == "EC":
        return ec_crypto.ecdh(base, public_data)
    if base.kind in edwards_crypto.MONTGOMERY_KINDS:
        return edwards_crypto.exchange(base, public_data)
    raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, f"ECDH with a {base.kind} key")


def derive_ecdh1(base: Any, param: params.Ecdh1DeriveParams, key_type: int, value_len: int | None,
                 resolve_key: Any = None) -> SecretMaterial:
    secret = _shared_secret(base, param.public_data)
    if param.kdf == KDF.NULL:
        return keybytes.derived(key_type, secret, value_len, keep="trailing")
    kind = keybytes.secret_kind(key_type)
    length = value_len
    if length is None:
        fixed = keybytes.VALID_LENGTHS[kind]
        if fixed is not None and len(fixed) > 1:
            raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, f"CKA_VALUE_LEN needed to derive a {kind} key")
        length = fixed[0] if fixed else len(secret)
    keybytes.check_secret_length(kind, length, CKR.TEMPLATE_INCONSISTENT)
    return SecretMaterial(kind, kdf.x963(X963_KDF_HASHES[param.kdf], secret, length, param.shared_data))


#: (ECDSA_SHA* mechanism, hash)
HASHED_ROWS = (
    (Mechanism.ECDSA_SHA1, "SHA1"),
    (Mechanism.ECDSA_SHA224, "SHA224"),
    (Mechanism.ECDSA_SHA256, "SHA256"),
    (Mechanism.ECDSA_SHA384, "SHA384"),
    (Mechanism.ECDSA_SHA512, "SHA512"),
    (constants.CKM_ECDSA_SHA3_224, "SHA3_224"),
    (constants.CKM_ECDSA_SHA3_256, "SHA3_256"),
    (constants.CKM_ECDSA_SHA3_384, "SHA3_384"),
    (constants.CKM_ECDSA_SHA3_512, "SHA3_512"),
)


def register(registry: Registry) -> None:
    sizes = {"min_key": MIN_BITS, "max_key": MAX_BITS}
    registry.add(MechanismSpec(
        mechanism=Mechanism.EC_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR | EC_FLAGS, generate_pair=generate_pair,
        generated_key_types=(KeyType.EC,), **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.ECDSA, flags=F.SIGN | F.VERIFY | EC_FLAGS, key_types=KEY_TYPES,
        sign=_raw_sign, verify=_raw_verify, **sizes))
    for mechanism, hash_name in HASHED_ROWS:
        sign, verify = _hashed_ops(hash_name)
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=F.SIGN | F.VERIFY | EC_FLAGS, key_types=KEY_TYPES,
            sign=sign, verify=verify, **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.ECDH1_DERIVE, flags=F.DERIVE | EC_FLAGS, min_key=255, max_key=MAX_BITS,
        key_types=frozenset({KeyType.EC, constants.CKK_EC_MONTGOMERY}), param_kind="ecdh1",
        validate=validate_ecdh1, derive=derive_ecdh1))
    # PKCS#11 3.0 §2.3.16: cofactor ECDH multiplies by the curve's cofactor h. Every prime curve we
    # offer (P-256/384/521, secp256k1, and the legacy P-192/224) has h = 1, so the shared value is
    # the plain ECDH one; Montgomery keys are not accepted here (X25519/X448 clamp instead).
    registry.add(MechanismSpec(
        mechanism=Mechanism.ECDH1_COFACTOR_DERIVE, flags=F.DERIVE | EC_FLAGS, min_key=MIN_BITS, max_key=MAX_BITS,
        key_types=KEY_TYPES, param_kind="ecdh1", validate=validate_ecdh1, derive=derive_ecdh1))
