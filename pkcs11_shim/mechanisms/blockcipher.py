"""ECB, CBC and CBC-PAD rows shared by the AES and DES3 families.

PKCS#11 3.0 §2.14 (AES) and §2.x (DES3): ECB and CBC take whole blocks (encrypt: CKR_DATA_LEN_RANGE,
decrypt: CKR_ENCRYPTED_DATA_LEN_RANGE) and wrap secret keys zero-padded to the block; CBC-PAD adds
PKCS#7 padding, so any input length encrypts, a bad pad is CKR_ENCRYPTED_DATA_INVALID, and private
keys (PKCS#8) can be wrapped too. CBC takes the IV (one block) as its parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.crypto.material import SecretMaterial

from ..constants import CKR
from ..errors import PKCS11Error
from . import keybytes
from .ops import StreamCipherOp


@dataclass(frozen=True)
class BlockCipher:
    """A block cipher as the rows need it; `ecb(key, encrypt)` and `cbc(key, iv, encrypt, pad)`
    return `emulator.crypto.aes.CipherContext`s."""

    kind: str  # the secret material kind the key must be
    block_size: int
    ecb: Callable[[bytes, bool], Any]
    cbc: Callable[[bytes, bytes, bool, bool], Any]

    def key(self, material: Any) -> bytes:
        if not isinstance(material, SecretMaterial):
            raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "a secret key is needed")
        keybytes.check_secret_length(self.kind, len(material.value))
        return material.value


def iv_validator(size: int) -> Callable[[Any], None]:
    def validate(param: Any) -> None:
        if not isinstance(param, bytes) or len(param) != size:
            raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, f"the IV must be {size} bytes")

    return validate


def _run(ctx: Any, data: bytes) -> bytes:
    return ctx.update(data) + ctx.finalize()


@dataclass(frozen=True)
class ModeImpls:
    encrypt: Callable[..., Any]
    decrypt: Callable[..., Any]
    wrap: Callable[..., bytes]
    unwrap: Callable[..., Any]


def mode(cipher: BlockCipher, *, cbc: bool, pad: bool) -> ModeImpls:
    """The implementations of one row: ECB (cbc=False), CBC, or CBC-PAD (cbc=True, pad=True)."""
    block = cipher.block_size

    def context(material: Any, param: Any, encrypt: bool) -> Any:
        key = cipher.key(material)
        return cipher.cbc(key, param, encrypt, pad) if cbc else cipher.ecb(key, encrypt)

    def encrypt(material: Any, param: Any) -> StreamCipherOp:
        return StreamCipherOp(context(material, param, True), block_size=block, whole_blocks=not pad,
                              length_error=CKR.DATA_LEN_RANGE)

    def decrypt(material: Any, param: Any) -> StreamCipherOp:
        return StreamCipherOp(context(material, param, False), block_size=block, whole_blocks=True,
                              min_total=block if pad else 0, length_error=CKR.ENCRYPTED_DATA_LEN_RANGE)

    def wrap(wrapping: Any, param: Any, target: Any) -> bytes:
        value = keybytes.wrappable(target, private_allowed=pad)
        if not pad:
            value = keybytes.zero_padded(value, block)
        return _run(context(wrapping, param, True), value)

    def unwrap(unwrapping: Any, param: Any, wrapped: bytes, target_kind: str, value_len: int | None) -> Any:
        if not wrapped or len(wrapped) % block:
            raise PKCS11Error(CKR.WRAPPED_KEY_LEN_RANGE, f"wrapped key of {len(wrapped)} bytes")
        value = _run(context(unwrapping, param, False), wrapped)
        return keybytes.unwrapped(value, target_kind, value_len, padded=not pad)

    return ModeImpls(encrypt, decrypt, wrap, unwrap)
