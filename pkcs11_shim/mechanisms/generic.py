"""CKM_GENERIC_SECRET_KEY_GEN (PKCS#11 3.0 §2.29.x): generic secrets and HMAC keys of CKA_VALUE_LEN bytes.

CK_MECHANISM_INFO sizes for this mechanism are in bits (the specification says so explicitly).
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import mac as mac_crypto
from emulator.crypto.material import SecretMaterial

from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from .keybytes import HMAC_KEY_TYPES, secret_kind
from .registry import MechanismSpec, Registry

MIN_BITS, MAX_BITS = 8, 8 * 0x10000


def generate(param: Any, key_type: int, value_len: int | None) -> SecretMaterial:
    if value_len is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_VALUE_LEN is required")
    if not MIN_BITS <= 8 * value_len <= MAX_BITS:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"generic secret of {value_len} bytes")
    return SecretMaterial(secret_kind(key_type), mac_crypto.generate_secret(value_len))


def register(registry: Registry) -> None:
    registry.add(MechanismSpec(
        mechanism=Mechanism.GENERIC_SECRET_KEY_GEN, flags=MechanismFlag.GENERATE,
        min_key=MIN_BITS, max_key=MAX_BITS, generate=generate,
        generated_key_types=(KeyType.GENERIC_SECRET, *sorted(HMAC_KEY_TYPES))))
