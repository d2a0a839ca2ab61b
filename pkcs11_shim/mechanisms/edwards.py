"""Edwards and Montgomery curve mechanisms (PKCS#11 3.0 §2.3.5-2.3.14): key pair generation for
Ed25519/Ed448 and X25519/X448, and CKM_EDDSA.

CK_EDDSA_PARAMS (PKCS#11 3.0 §2.3.14, RFC 8032 §5): an Ed25519 key without it signs pure Ed25519;
with it, the variant is Ed25519ctx (phFlag FALSE, even with an empty context) or Ed25519ph, which
`cryptography` does not implement: refused. An Ed448 key needs it (Ed448 always has a context):
phFlag FALSE and an empty context is pure Ed448; a context or Ed448ph is refused for the same reason.
Every refusal is CKR_MECHANISM_PARAM_INVALID at C_SignInit / C_VerifyInit, never a silent fallback to
the pure variant (SoftHSM2 drops the parameter, which gives signatures no Ed25519ctx verifier takes). Pure
EdDSA reads the message twice, so multi-part signing keeps the input until final (as Kryoptic).
Sizes in CK_MECHANISM_INFO are curve bits (255, 448), as Kryoptic reports.
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import edwards as edwards_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial

from .. import constants
from ..constants import CKR, Attribute, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import params
from .ec import curve_of
from .ops import BufferedSignOp, BufferedVerifyOp
from .registry import MechanismSpec, Registry

F = MechanismFlag
MIN_BITS, MAX_BITS = 255, 448


def _pair_generator(kinds: frozenset[str]) -> Any:
    def generate_pair(param: Any, public_attrs: dict[int, Any], private_attrs: dict[int, Any]) -> PrivateMaterial:
        curve = curve_of(public_attrs if Attribute.EC_PARAMS in public_attrs else private_attrs)
        if curve not in kinds:
            raise PKCS11Error(CKR.CURVE_NOT_SUPPORTED, f"{curve} is not a curve of this mechanism")
        return edwards_crypto.generate(curve)

    return generate_pair


def validate_eddsa(param: Any) -> None:
    if param is None:
        return
    params.require(param, params.EddsaParams, "CK_EDDSA_PARAMS")
    if param.prehash or param.context:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "EdDSA prehash and context variants are not supported")


def _key(material: Any, *, private: bool) -> Any:
    if private and not isinstance(material, PrivateMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an EdDSA private key is needed")
    if not isinstance(material, (PrivateMaterial, PublicMaterial)) or material.kind not in edwards_crypto.EDWARDS_KINDS:
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an Ed25519 or Ed448 key is needed")
    return material


def _check_variant(material: Any, param: params.EddsaParams | None) -> None:
    """Only the pure variants are offered: Ed25519 without a parameter, Ed448 with one that names
    no prehash and no context (`validate_eddsa` has refused prehash and contexts already)."""
    if material.kind == "Ed25519" and param is not None:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_EDDSA_PARAMS with an Ed25519 key is Ed25519ctx/ph")
    if material.kind == "Ed448" and param is None:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "an Ed448 key needs CK_EDDSA_PARAMS")


def sign(material: Any, param: Any) -> BufferedSignOp:
    m = _key(material, private=True)
    _check_variant(m, param)
    return BufferedSignOp(lambda data: edwards_crypto.eddsa_sign(m, data))


def verify(material: Any, param: Any) -> BufferedVerifyOp:
    m = _key(material, private=False)
    _check_variant(m, param)
    return BufferedVerifyOp(lambda data, sig: edwards_crypto.eddsa_verify(m, data, sig),
                            edwards_crypto.SIGNATURE_LEN[m.kind])


def register(registry: Registry) -> None:
    sizes = {"min_key": MIN_BITS, "max_key": MAX_BITS}
    registry.add(MechanismSpec(
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR,
        generate_pair=_pair_generator(edwards_crypto.EDWARDS_KINDS), generated_key_types=(KeyType.EC_EDWARDS,),
        **sizes))
    registry.add(MechanismSpec(
        mechanism=constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR,
        generate_pair=_pair_generator(edwards_crypto.MONTGOMERY_KINDS),
        generated_key_types=(constants.CKK_EC_MONTGOMERY,), **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.EDDSA, flags=F.SIGN | F.VERIFY, key_types=frozenset({KeyType.EC_EDWARDS}),
        param_kind="eddsa", validate=validate_eddsa, sign=sign, verify=verify, **sizes))
