"""Triple-DES mechanisms (PKCS#11 3.0 §2.x): key generation (parity bits set), ECB, CBC, CBC-PAD.

DES3 key sizes are fixed (24 bytes), so CK_MECHANISM_INFO carries 0/0 as SoftHSM2 reports: the
specification says these fields are not used for DES3.
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import des3 as des3_crypto
from emulator.crypto.material import SecretMaterial

from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from .blockcipher import BlockCipher, iv_validator, mode
from .registry import MechanismSpec, Registry

DES3 = BlockCipher("DES3", des3_crypto.BLOCK_SIZE, des3_crypto.ecb, des3_crypto.cbc)
FLAGS = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT | MechanismFlag.WRAP | MechanismFlag.UNWRAP


def generate(param: Any, key_type: int, value_len: int | None) -> SecretMaterial:
    if value_len not in (None, des3_crypto.KEY_SIZE):
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, "a DES3 key is 24 bytes")
    return SecretMaterial("DES3", des3_crypto.generate_key())


def register(registry: Registry) -> None:
    registry.add(MechanismSpec(
        mechanism=Mechanism.DES3_KEY_GEN, flags=MechanismFlag.GENERATE, generate=generate,
        generated_key_types=(KeyType.DES3,)))
    for mechanism, cbc, pad in ((Mechanism.DES3_ECB, False, False), (Mechanism.DES3_CBC, True, False),
                                (Mechanism.DES3_CBC_PAD, True, True)):
        impls = mode(DES3, cbc=cbc, pad=pad)
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=FLAGS, key_types=frozenset({KeyType.DES3}),
            param_kind="bytes" if cbc else "none",
            **({"validate": iv_validator(des3_crypto.BLOCK_SIZE)} if cbc else {}),
            encrypt=impls.encrypt, decrypt=impls.decrypt, wrap=impls.wrap, unwrap=impls.unwrap))
