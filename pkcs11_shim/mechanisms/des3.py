"""Triple-DES and single-DES mechanisms (PKCS#11 3.0 §2.x): key generation (parity bits set), ECB,
CBC, CBC-PAD.

DES and DES3 key sizes are fixed (8 and 24 bytes), so CK_MECHANISM_INFO carries 0/0 as SoftHSM2
reports: the specification says these fields are not used for them. Single DES (CKM_DES_*) is the
legacy set nShield keeps behind its weak-algorithm assurances for payment and PKI applications;
`emulator.crypto.des` runs it as three-key EDE with one key repeated.
"""

from __future__ import annotations

from typing import Any

from emulator.crypto import des as des_crypto
from emulator.crypto import des3 as des3_crypto
from emulator.crypto.material import SecretMaterial

from .. import constants
from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from .blockcipher import BlockCipher, iv_validator, mode
from .registry import MechanismSpec, Registry

DES3 = BlockCipher("DES3", des3_crypto.BLOCK_SIZE, des3_crypto.ecb, des3_crypto.cbc)
DES = BlockCipher("DES", des_crypto.BLOCK_SIZE, des_crypto.ecb, des_crypto.cbc)
FLAGS = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT | MechanismFlag.WRAP | MechanismFlag.UNWRAP


def _generator(kind: str, size: int, make: Any) -> Any:
    def generate(param: Any, key_type: int, value_len: int | None) -> SecretMaterial:
        if value_len not in (None, size):
            raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"a {kind} key is {size} bytes")
        return SecretMaterial(kind, make())

    return generate


generate = _generator("DES3", des3_crypto.KEY_SIZE, des3_crypto.generate_key)

#: (cipher, key type, key generation row, (ECB, CBC, CBC-PAD) rows)
FAMILIES = (
    (DES3, KeyType.DES3, Mechanism.DES3_KEY_GEN, generate,
     (Mechanism.DES3_ECB, Mechanism.DES3_CBC, Mechanism.DES3_CBC_PAD)),
    (DES, constants.CKK_DES, constants.CKM_DES_KEY_GEN, _generator("DES", des_crypto.KEY_SIZE, des_crypto.generate_key),
     (constants.CKM_DES_ECB, constants.CKM_DES_CBC, constants.CKM_DES_CBC_PAD)),
)


def register(registry: Registry) -> None:
    for cipher, key_type, key_gen, make, (ecb, cbc_row, cbc_pad) in FAMILIES:
        registry.add(MechanismSpec(
            mechanism=key_gen, flags=MechanismFlag.GENERATE, generate=make, generated_key_types=(key_type,)))
        for mechanism, cbc, pad in ((ecb, False, False), (cbc_row, True, False), (cbc_pad, True, True)):
            impls = mode(cipher, cbc=cbc, pad=pad)
            registry.add(MechanismSpec(
                mechanism=mechanism, flags=FLAGS, key_types=frozenset({key_type}),
                param_kind="bytes" if cbc else "none",
                **({"validate": iv_validator(cipher.block_size)} if cbc else {}),
                encrypt=impls.encrypt, decrypt=impls.decrypt, wrap=impls.wrap, unwrap=impls.unwrap))
