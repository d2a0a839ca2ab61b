"""The AES key wrap family (PKCS#11 3.0 §2.14.x).

- CKM_AES_KEY_WRAP (0x2109): RFC 3394 / SP 800-38F KW. Secret keys only, zero-padded to a multiple
  of 8 bytes (unwrap takes CKA_VALUE_LEN or the key type's length back).
- CKM_AES_KEY_WRAP_KWP (0x210B): RFC 5649 / SP 800-38F KWP; secret keys and PKCS#8 private keys.
- CKM_AES_KEY_WRAP_PKCS7 (0x210C): PKCS#7 padding to the 8-byte semiblock, then KW; secret keys and
  PKCS#8 private keys (8 bytes and up).
- CKM_AES_KEY_WRAP_PAD (0x210A, deprecated): the same RFC 5649 here. nShield (and SoftHSM2) give
  _PAD the RFC 5649 meaning, not the 2.x prose "pad, then KW"; we mirror nShield.

All four are single-part and serve encrypt/decrypt as well as wrap/unwrap. The optional parameter
is the initial value (8 bytes for KW, 4 for KWP); `cryptography` implements only the default ones
(A6A6A6A6A6A6A6A6, A65959A6), so any other value is CKR_MECHANISM_PARAM_INVALID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.crypto import keywrap as kw_crypto

from ..constants import CKR, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import keybytes
from .aes import AES, MAX_KEY, MIN_KEY
from .ops import SinglePartCipherOp, require_length
from .registry import MechanismSpec, Registry

FLAGS = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT | MechanismFlag.WRAP | MechanismFlag.UNWRAP


@dataclass(frozen=True)
class Variant:
    default_iv: bytes
    wrap: Callable[[bytes, bytes], bytes]
    wrapper: Callable[[bytes], Callable[[bytes], bytes]]  # `wrap` under one key, checked once
    unwrap: Callable[[bytes, bytes], bytes]
    plaintext_ok: Callable[[int], bool]  # acceptable input lengths
    wrapped_ok: Callable[[int], bool]  # acceptable output lengths
    pads_secrets: bool  # KW: secrets zero-padded to 8, private keys refused


KW = Variant(kw_crypto.KW_DEFAULT_IV, kw_crypto.kw_wrap, kw_crypto.kw_wrapper, kw_crypto.kw_unwrap,
             plaintext_ok=lambda n: n >= 16 and n % 8 == 0,
             wrapped_ok=lambda n: n >= 24 and n % 8 == 0, pads_secrets=True)
PKCS7 = Variant(kw_crypto.KW_DEFAULT_IV, kw_crypto.kw_pkcs7_wrap, kw_crypto.kw_pkcs7_wrapper,
                kw_crypto.kw_pkcs7_unwrap,
                plaintext_ok=lambda n: n >= 8,
                wrapped_ok=lambda n: n >= 24 and n % 8 == 0, pads_secrets=False)
KWP = Variant(kw_crypto.KWP_DEFAULT_IV, kw_crypto.kwp_wrap, kw_crypto.kwp_wrapper, kw_crypto.kwp_unwrap,
              plaintext_ok=lambda n: n >= 1,
              wrapped_ok=lambda n: n >= 16 and n % 8 == 0, pads_secrets=False)


def _validator(variant: Variant) -> Callable[[Any], None]:
    def validate(param: Any) -> None:
        if param is not None and param != variant.default_iv:
            raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID,
                              f"only the default initial value {variant.default_iv.hex()} is supported")

    return validate


def _impls(variant: Variant) -> dict[str, Any]:
    def encrypt(material: Any, param: Any) -> SinglePartCipherOp:
        key = AES.key(material)
        return SinglePartCipherOp(lambda data: variant.wrap(key, data),
                                  require_length(variant.plaintext_ok, CKR.DATA_LEN_RANGE, "key wrap input"))

    def decrypt(material: Any, param: Any) -> SinglePartCipherOp:
        key = AES.key(material)
        return SinglePartCipherOp(lambda data: variant.unwrap(key, data),
                                  require_length(variant.wrapped_ok, CKR.ENCRYPTED_DATA_LEN_RANGE, "key wrap input"))

    def prepare_wrap(wrapping: Any, param: Any) -> Callable[[Any], bytes]:
        """`wrap` under one wrapping key: its material checks once (keymgmt keeps the result only
        while the key is the same object), the target's on every call."""
        wrap_value = variant.wrapper(AES.key(wrapping))
        private_allowed, pads = not variant.pads_secrets, variant.pads_secrets

        def wrap_target(target: Any) -> bytes:
            value = keybytes.wrappable(target, private_allowed=private_allowed)
            if pads:
                value = keybytes.zero_padded(value, kw_crypto.SEMIBLOCK)
            if not variant.plaintext_ok(len(value)):
                raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"a {len(value)}-byte key cannot be wrapped with this mechanism")
            return wrap_value(value)

        return wrap_target

    def wrap(wrapping: Any, param: Any, target: Any) -> bytes:
        return prepare_wrap(wrapping, param)(target)

    def unwrap(unwrapping: Any, param: Any, wrapped: bytes, target_kind: str, value_len: int | None) -> Any:
        if not variant.wrapped_ok(len(wrapped)):
            raise PKCS11Error(CKR.WRAPPED_KEY_LEN_RANGE, f"wrapped key of {len(wrapped)} bytes")
        value = variant.unwrap(AES.key(unwrapping), wrapped)
        return keybytes.unwrapped(value, target_kind, value_len, padded=variant.pads_secrets)

    return {"encrypt": encrypt, "decrypt": decrypt, "wrap": wrap, "prepare_wrap": prepare_wrap, "unwrap": unwrap}


def register(registry: Registry) -> None:
    for mechanism, variant in ((Mechanism.AES_KEY_WRAP, KW), (Mechanism.AES_KEY_WRAP_PAD, KWP),
                               (Mechanism.AES_KEY_WRAP_KWP, KWP), (Mechanism.AES_KEY_WRAP_PKCS7, PKCS7)):
        registry.add(MechanismSpec(
            mechanism=mechanism, flags=FLAGS, min_key=MIN_KEY, max_key=MAX_KEY,
            key_types=frozenset({KeyType.AES}), param_kind="bytes", validate=_validator(variant),
            **_impls(variant)))
