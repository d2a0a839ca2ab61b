"""Edwards and Montgomery curve mechanisms (PKCS#11 3.0 §2.3.5-2.3.14): key pair generation for
Ed25519/Ed448 and X25519/X448, and CKM_EDDSA.

CK_EDDSA_PARAMS is optional. Without it, or with phFlag FALSE and no context, the signature is pure
Ed25519 / Ed448 (SoftHSM2 treats every parameter so). Ed25519ph/Ed25519ctx and Ed448ph/contexts are
refused with CKR_MECHANISM_PARAM_INVALID, because `cryptography` does not implement them. Pure
EdDSA reads the message twice, so multi-part signing keeps the input until final (as Kryoptic).
Sizes in CK_MECHANISM_INFO are curve bits (255, 448), as Kryoptic reports.
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import edwards as edwards_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial

from ..constants import CKR, Attribute, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import numbers, params
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
    if not isinstance(param, params.EddsaParams):
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "CK_EDDSA_PARAMS expected")
    if param.prehash or param.context:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "EdDSA prehash and context variants are not supported")


def _key(material: Any, *, private: bool) -> Any:
    if private and not isinstance(material, PrivateMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an EdDSA private key is needed")
    if not isinstance(material, (PrivateMaterial, PublicMaterial)) or material.kind not in edwards_crypto.EDWARDS_KINDS:
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an Ed25519 or Ed448 key is needed")
    return material


def sign(material: Any, param: Any) -> BufferedSignOp:
    m = _key(material, private=True)
    return BufferedSignOp(lambda data: edwards_crypto.eddsa_sign(m, data))


def verify(material: Any, param: Any) -> BufferedVerifyOp:
    m = _key(material, private=False)
    return BufferedVerifyOp(lambda data, sig: edwards_crypto.eddsa_verify(m, data, sig),
                            edwards_crypto.SIGNATURE_LEN[m.kind])


def register(registry: Registry) -> None:
    sizes = {"min_key": MIN_BITS, "max_key": MAX_BITS}
    registry.add(MechanismSpec(
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR,
        generate_pair=_pair_generator(edwards_crypto.EDWARDS_KINDS), generated_key_types=(KeyType.EC_EDWARDS,),
        **sizes))
    registry.add(MechanismSpec(
        mechanism=numbers.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR,
        generate_pair=_pair_generator(edwards_crypto.MONTGOMERY_KINDS),
        generated_key_types=(numbers.CKK_EC_MONTGOMERY,), **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.EDDSA, flags=F.SIGN | F.VERIFY, key_types=frozenset({KeyType.EC_EDWARDS}),
        param_kind="eddsa", validate=validate_eddsa, sign=sign, verify=verify, **sizes))
