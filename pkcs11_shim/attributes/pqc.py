"""PKCS#11 3.2 ML-DSA and ML-KEM key attributes <-> key material (the PQC part of `keyparts`).

Encodings (3.2 §6.x, "ML-DSA/ML-KEM public and private key objects"):
- CKA_PARAMETER_SET: CKP_ML_DSA_44/65/87, CKP_ML_KEM_512/768/1024 (1, 2, 3).
- public keys: CKA_VALUE is the encoded public key (FIPS 204 pkEncode, FIPS 203 ek).
- private keys: CKA_SEED is the seed the key is made from (FIPS 204 xi, 32 bytes; FIPS 203 d || z,
  64 bytes). 3.2 also lets a private key carry CKA_VALUE, the expanded secret key; `cryptography`
  keeps and imports private keys in seed form only, so this token makes and accepts private keys by
  CKA_SEED and does not offer the expanded form (a template giving it is CKR_TEMPLATE_INCONSISTENT,
  the code for an attribute this kind of object does not have here).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from emulator.crypto import mldsa as mldsa_crypto
from emulator.crypto import mlkem as mlkem_crypto
from emulator.crypto.material import Material, PrivateMaterial, PublicMaterial

from ..constants import CKR, Attribute, KeyType, ObjectClass
from ..errors import PKCS11Error
from .templates import required

#: CKP_* code -> FIPS parameter set name (pkcs11t.h 3.2 CK_ML_DSA/ML_KEM_PARAMETER_SET_TYPE).
ML_DSA_SETS: dict[int, str] = {1: "ML-DSA-44", 2: "ML-DSA-65", 3: "ML-DSA-87"}
ML_KEM_SETS: dict[int, str] = {1: "ML-KEM-512", 2: "ML-KEM-768", 3: "ML-KEM-1024"}

#: key type -> (material kind, CKP table, crypto module).
FAMILIES: dict[int, tuple[str, dict[int, str], Any]] = {
    KeyType.ML_DSA: (mldsa_crypto.KIND, ML_DSA_SETS, mldsa_crypto),
    KeyType.ML_KEM: (mlkem_crypto.KIND, ML_KEM_SETS, mlkem_crypto),
}
#: For `keyparts`: key type -> material kind, and back.
ASYMMETRIC_KINDS: dict[int, str] = {key_type: family[0] for key_type, family in FAMILIES.items()}
KEY_TYPE_OF_KIND: dict[str, int] = {family[0]: key_type for key_type, family in FAMILIES.items()}
_BY_KIND = {family[0]: family for family in FAMILIES.values()}


def parameter_set_name(key_type: int, code: int) -> str:
    """The FIPS name of a CKA_PARAMETER_SET value; one FIPS defines but `cryptography` lacks is
    CKR_PARAMETER_SET_NOT_SUPPORTED (3.2 §5.1), an unknown one CKR_ATTRIBUTE_VALUE_INVALID."""
    _, sets, crypto = FAMILIES[key_type]
    name = sets.get(int(code))
    if name is None:
        raise PKCS11Error(CKR.ATTRIBUTE_VALUE_INVALID, f"CKA_PARAMETER_SET {code} is not defined")
    if name not in crypto.PARAMETER_SETS:
        raise PKCS11Error(CKR.PARAMETER_SET_NOT_SUPPORTED, f"{name} is not available")
    return name


def parameter_set_code(material: PrivateMaterial | PublicMaterial) -> int:
    _, sets, crypto = _BY_KIND[material.kind]
    name = crypto.parameter_set_of(material)
    return next(code for code, known in sets.items() if known == name)


#: Key class -> (the attribute holding the material, the crypto module's loader taking it).
_MATERIAL: dict[int, tuple[int, str]] = {
    ObjectClass.PRIVATE_KEY: (Attribute.SEED, "from_seed"),
    ObjectClass.PUBLIC_KEY: (Attribute.VALUE, "from_public_bytes"),
}


def material_from_attributes(attrs: dict, key_type: int, object_class: int) -> Material:
    """A key half from its CKA_PARAMETER_SET and its CKA_SEED (private) or CKA_VALUE (public)."""
    attr, loader = _MATERIAL[object_class]
    name = parameter_set_name(key_type, required(attrs, Attribute.PARAMETER_SET))
    raw = bytes(required(attrs, attr))
    # Bytes that are not a key of the set are CKR_ATTRIBUTE_VALUE_INVALID (keyparts.COMPONENT_CODES).
    return getattr(FAMILIES[key_type][2], loader)(name, raw)


#: (class, key type) -> builder, for `keyparts._BUILDERS`.
BUILDERS: dict[tuple[int, int], Callable[[dict, int], Material]] = {
    (cls, kt): functools.partial(material_from_attributes, object_class=cls) for cls in _MATERIAL for kt in FAMILIES
}


def public_attrs(material: PrivateMaterial | PublicMaterial) -> dict[int, Any]:
    """CKA_PARAMETER_SET of either half; CKA_VALUE (the encoded public key) of the public half."""
    out: dict[int, Any] = {Attribute.PARAMETER_SET: parameter_set_code(material)}
    if isinstance(material, PublicMaterial):
        out[Attribute.VALUE] = _BY_KIND[material.kind][2].public_bytes(material)
    return out


def secret_attrs(material: PrivateMaterial) -> dict[int, Any]:
    return {Attribute.SEED: _BY_KIND[material.kind][2].seed_of(material)}


#: material kind -> attribute makers, for `keyparts._PUBLIC_ATTRS` / `_SECRET_ATTRS`.
PUBLIC_ATTRS: dict[str, Callable[[Any], dict[int, Any]]] = {kind: public_attrs for kind in KEY_TYPE_OF_KIND}
SECRET_ATTRS: dict[str, Callable[[PrivateMaterial], dict[int, Any]]] = {kind: secret_attrs for kind in KEY_TYPE_OF_KIND}
