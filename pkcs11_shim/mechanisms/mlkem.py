"""ML-KEM mechanisms (PKCS#11 3.2 §6.x, FIPS 203): key pair generation and CKM_ML_KEM for
C_EncapsulateKey / C_DecapsulateKey.

CKM_ML_KEM takes no parameter. The row's `encapsulate(public, param) -> (ciphertext, secret)` and
`decapsulate(private, param, ciphertext) -> secret` give the 32-byte shared secret; `pkcs11_shim.kem`
turns it into the secret-key object the caller's template describes. `ciphertext_len(public)`
answers the length query of the two-call convention without encapsulating.

`cryptography` offers ML-KEM-768 and ML-KEM-1024: CKP_ML_KEM_512 is refused with
CKR_PARAMETER_SET_NOT_SUPPORTED. CK_MECHANISM_INFO sizes are the CKP_ML_KEM_* codes offered (2..3).
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import mlkem as mlkem_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial

from ..attributes import pqc as pqc_attrs
from ..constants import CKR, Attribute, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from .registry import MechanismSpec, Registry

F = MechanismFlag


def _key(material: Any, cls: type, what: str) -> Any:
    if not isinstance(material, cls) or material.kind != mlkem_crypto.KIND:
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, f"an ML-KEM {what} key is needed")
    return material


def generate_pair(param: Any, public_attrs: dict[int, Any], private_attrs: dict[int, Any]) -> PrivateMaterial:
    name = pqc_attrs.parameter_set_name(KeyType.ML_KEM, public_attrs[Attribute.PARAMETER_SET])
    return mlkem_crypto.generate(name)


def encapsulate(material: Any, param: Any) -> tuple[bytes, bytes]:
    return mlkem_crypto.encapsulate(_key(material, PublicMaterial, "public"))


def decapsulate(material: Any, param: Any, ciphertext: bytes) -> bytes:
    m = _key(material, PrivateMaterial, "private")
    if len(ciphertext) != mlkem_crypto.ciphertext_len(m):
        # 3.2 C_DecapsulateKey: a ciphertext of the wrong size is CKR_ENCRYPTED_DATA_LEN_RANGE.
        raise PKCS11Error(CKR.ENCRYPTED_DATA_LEN_RANGE, f"ciphertext of {len(ciphertext)} bytes")
    return mlkem_crypto.decapsulate(m, ciphertext)


def ciphertext_len(material: Any) -> int:
    return mlkem_crypto.ciphertext_len(_key(material, PublicMaterial, "public"))


def register(registry: Registry) -> None:
    offered = [code for code, name in pqc_attrs.ML_KEM_SETS.items() if name in mlkem_crypto.PARAMETER_SETS]
    sizes = {"min_key": min(offered), "max_key": max(offered)}
    registry.add(MechanismSpec(
        mechanism=Mechanism.ML_KEM_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR, generate_pair=generate_pair,
        generated_key_types=(KeyType.ML_KEM,), **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.ML_KEM, flags=F.ENCAPSULATE | F.DECAPSULATE, key_types=frozenset({KeyType.ML_KEM}),
        encapsulate=encapsulate, decapsulate=decapsulate, encapsulated_len=ciphertext_len, **sizes))
