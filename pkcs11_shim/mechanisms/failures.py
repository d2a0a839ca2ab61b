"""What a primitive's failure means to PKCS#11, by the operation it failed in: the one table.

Primitives (`emulator.crypto`) raise `emulator.errors.CryptoFailure` when a check on the data fails
(padding, tag, signature, a peer's public value) and `InvalidKeyMaterial` when bytes are not a key of
the kind or size the primitive takes. The code PKCS#11 names for them depends on the operation
(3.0 §5.x return values): a failed check is CKR_ENCRYPTED_DATA_INVALID in C_Decrypt,
CKR_SIGNATURE_INVALID in C_Verify, CKR_WRAPPED_KEY_INVALID in C_UnwrapKey. The registry applies this
table to every row (`MechanismSpec`): to the implementation call itself and to the operation object
it returns, so family modules and `ops` call primitives without catching their errors. A row whose
primitive's failure means something else declares it (`MechanismSpec.failure_codes`). Any other
emulator error goes on to the C boundary's table (`abi.entry.EMULATOR_CKR`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from emulator.errors import CryptoFailure, InvalidKeyMaterial

from ..constants import CKR
from ..errors import FailureCodes as Codes
from ..errors import PKCS11Error, translating

#: For a row's `failure_codes`: a key whose length the primitive refuses (CMAC, XTS, the MAC-based KDFs).
KEY_SIZE: Codes = {InvalidKeyMaterial: CKR.KEY_SIZE_RANGE}
_CIPHER: Codes = {CryptoFailure: CKR.ENCRYPTED_DATA_INVALID}
_SIGN: Codes = {CryptoFailure: CKR.DATA_INVALID}  # raw schemes: input the key cannot sign
_VERIFY: Codes = {CryptoFailure: CKR.SIGNATURE_INVALID}
_AEAD: Codes = {CryptoFailure: CKR.AEAD_DECRYPT_FAILED}  # 3.0 §5.1.x: the message's tag did not verify
_NONE: Codes = {}

#: The row's implementation field -> (codes while the implementation runs, codes while the operation
#: object it returned runs).
BY_OPERATION: dict[str, tuple[Codes, Codes]] = {
    "encrypt": (_NONE, _CIPHER),
    "decrypt": (_NONE, _CIPHER),
    "sign": (_NONE, _SIGN),
    "sign_recover": (_NONE, _SIGN),
    "verify": (_NONE, _VERIFY),
    "verify_recover": (_NONE, _VERIFY),
    # The unwrapped bytes failed the integrity check, or are not a key of the kind asked for.
    "unwrap": ({CryptoFailure: CKR.WRAPPED_KEY_INVALID, InvalidKeyMaterial: CKR.WRAPPED_KEY_INVALID}, _NONE),
    # A peer public value that is not a point of the key's curve (ECDH, §2.3.10).
    "derive": ({CryptoFailure: CKR.MECHANISM_PARAM_INVALID}, _NONE),
    # Template values the key generator refuses (an RSA public exponent, EC parameters).
    "generate_pair": ({InvalidKeyMaterial: CKR.ATTRIBUTE_VALUE_INVALID}, _NONE),
    "message_encrypt": (_NONE, _AEAD),
    "message_decrypt": (_NONE, _AEAD),
}


#: The fields whose implementations return an operation object (`ops`, `aead`), not a value.
OP_FIELDS = frozenset({"encrypt", "decrypt", "sign", "sign_recover", "verify", "verify_recover",
                       "message_encrypt", "message_decrypt"})


class TranslatingOp:
    """An operation object whose methods raise PKCS11Error for the exceptions `codes` names; other
    attributes are the operation's own. `wrap` makes one subclass per operation class, with a method
    for each of its public methods, so a call costs one extra frame."""

    __slots__ = ("_op", "_codes", "_caught")
    _classes: dict[type, type[TranslatingOp]] = {}

    def __init__(self, op: Any, codes: Codes, caught: tuple[type[Exception], ...]) -> None:
        self._op = op
        self._codes = codes
        self._caught = caught

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)

    @classmethod
    def wrap(cls, op: Any, codes: Codes, caught: tuple[type[Exception], ...]) -> TranslatingOp:
        proxy = cls._classes.get(type(op))
        if proxy is None:
            names = [n for n in dir(type(op)) if not n.startswith("_") and callable(getattr(type(op), n))]
            proxy = cls._classes[type(op)] = type(f"Translating{type(op).__name__}", (cls,),
                                                  {"__slots__": (), **{n: _forward(n) for n in names}})
        return proxy(op, codes, caught)


def _forward(name: str) -> Callable[..., Any]:
    def method(self: TranslatingOp, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._op, name)(*args, **kwargs)
        except self._caught as exc:
            code = next(code for cls, code in self._codes.items() if isinstance(exc, cls))
            raise PKCS11Error(code, str(exc)) from None

    method.__name__ = name
    return method


def implementation(field: str, fn: Callable[..., Any], overrides: Mapping[str, Codes]) -> Callable[..., Any]:
    """A row's implementation `fn` of `field` with the table applied; the row's own codes for `field`
    apply both to the call and to the operation object it returns."""
    at_call, at_run = BY_OPERATION.get(field, (_NONE, _NONE))
    own = overrides.get(field, _NONE)
    at_call = {**at_call, **own}
    call = translating(fn, at_call)
    if field not in OP_FIELDS:
        return call  # the result is a value (key material, bytes), not an operation object
    at_run = {**at_run, **own}
    caught = tuple(at_run)

    def make(*args: Any, **kwargs: Any) -> Any:
        op = call(*args, **kwargs)
        return TranslatingOp.wrap(op, at_run, caught) if op is not None else None

    make.__name__ = getattr(fn, "__name__", field)
    make.__wrapped__ = fn  # type: ignore[attr-defined]
    return make
