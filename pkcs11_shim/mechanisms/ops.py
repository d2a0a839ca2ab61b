"""Operation objects the registry rows return: the PKCS#11 semantics of init/update/final.

Each op class owns the length rules and error codes of its kind of operation and calls a primitive
from `emulator.crypto` for the work; a primitive's `CryptoFailure` becomes the code the specification
names for that operation (bad padding -> CKR_ENCRYPTED_DATA_INVALID, mismatch ->
CKR_SIGNATURE_INVALID, ...) in the registry, by `failures.BY_OPERATION`. Length checks come first, so a refused input consumes nothing.

Single-part mechanisms (PKCS#11 3.0 §2 tables, footnote "single-part operations only": raw RSA
PKCS#1/OAEP/X.509/PSS, raw ECDSA, the AES key wraps used for encryption) refuse update/final with
CKR_OPERATION_NOT_INITIALIZED, as Kryoptic does: no multi-part operation was initialised.

The shim (`pkcs11_shim.operations`) calls: CipherOp `update(data) -> bytes`, `final() -> bytes`,
`oneshot(data) -> bytes`; SignOp `update(data)`, `final() -> bytes`, `oneshot(data) -> bytes`;
VerifyOp `update(data)`, `final(signature)`, `oneshot(data, signature)`; RecoverOp
`oneshot(signature) -> bytes`; DigestOp `update`, `final`, `oneshot`, `copy`, `state`, `restore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.crypto import digest as digest_crypto
from emulator.crypto import mac as mac_crypto

from ..constants import CKR
from ..errors import PKCS11Error


def _single_part(*_: Any) -> Any:
    raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED, "this mechanism is single-part only")


# --- encryption / decryption ---------------------------------------------------------------------

class StreamCipherOp:
    """A streaming primitive context (ECB, CBC, CBC-PAD, CTR, GCM encryption) with PKCS#11 rules.

    whole_blocks: the total input must be a multiple of `block_size` (else `length_error`).
    min_total: the smallest acceptable total input (CBC_PAD decryption needs one block).
    limit: the largest acceptable total input (CTR: the counter must not wrap), else DATA_LEN_RANGE.
    """

    def __init__(self, ctx: Any, *, block_size: int = 1, whole_blocks: bool = False, min_total: int = 0,
                 length_error: int = CKR.DATA_LEN_RANGE, limit: int | None = None) -> None:
        self._ctx = ctx
        self._block = block_size
        self._whole = whole_blocks
        self._min = min_total
        self._length_error = length_error
        self._limit = limit
        self._total = 0

    def _check_limit(self, total: int) -> None:
        if self._limit is not None and total > self._limit:
            raise PKCS11Error(CKR.DATA_LEN_RANGE, "input would make the counter wrap")

    def update(self, data: bytes) -> bytes:
        self._check_limit(self._total + len(data))
        self._total += len(data)
        return self._ctx.update(data)

    def final(self) -> bytes:
        if (self._whole and self._total % self._block) or self._total < self._min:
            raise PKCS11Error(self._length_error, f"{self._total} bytes is not a whole number of blocks")
        return self._ctx.finalize()

    def oneshot(self, data: bytes) -> bytes:
        if (self._whole and len(data) % self._block) or len(data) < self._min:
            raise PKCS11Error(self._length_error, f"{len(data)} bytes is not a whole number of blocks")
        self._check_limit(len(data))
        return self.update(data) + self.final()


class BufferedDecryptOp:
    """Decryption that can release nothing before the end (AES-GCM: the tag closes the input).

    `update` returns no bytes (PKCS#11 3.0 §2.14.x, GCM: plaintext only after the tag verified)."""

    def __init__(self, decrypt: Callable[[bytes], bytes], min_total: int,
                 length_error: int = CKR.ENCRYPTED_DATA_LEN_RANGE) -> None:
        self._decrypt = decrypt
        self._min = min_total
        self._length_error = length_error
        self._buffer = bytearray()

    def update(self, data: bytes) -> bytes:
        self._buffer += data
        return b""

    def final(self) -> bytes:
        if len(self._buffer) < self._min:
            raise PKCS11Error(self._length_error, "input too short")
        return self._decrypt(bytes(self._buffer))

    def oneshot(self, data: bytes) -> bytes:
        self.update(data)
        return self.final()


class SinglePartCipherOp:
    """A whole-input primitive (RSA, AES key wrap used as a cipher): `check` refuses bad lengths
    first with its own code."""

    update = final = _single_part
    #: Holds no state of one operation (only functions bound to a key and parameter): `operations`
    #: may hand one object to every operation made with the same key material and parameter.
    REUSABLE = True

    def __init__(self, run: Callable[[bytes], bytes], check: Callable[[bytes], None] | None = None) -> None:
        self._run = run
        self._check = check

    def oneshot(self, data: bytes) -> bytes:
        if self._check is not None:
            self._check(data)
        return self._run(data)


def require_length(predicate: Callable[[int], bool], code: int, what: str) -> Callable[[bytes], None]:
    """A `check` for SinglePartCipherOp/SinglePartSignOp: refuse input whose length fails `predicate`."""

    def check(data: bytes) -> None:
        if not predicate(len(data)):
            raise PKCS11Error(code, f"{what}: {len(data)} bytes")

    return check


# --- signatures ----------------------------------------------------------------------------------

def _check_signature_len(signature: bytes, expected: int | Callable[[int], bool]) -> None:
    ok = expected(len(signature)) if callable(expected) else len(signature) == expected
    if not ok:
        raise PKCS11Error(CKR.SIGNATURE_LEN_RANGE, f"signature of {len(signature)} bytes")


class HashSignOp:
    """Hash the input as it comes, sign the digest at the end (SHA*_RSA_PKCS, ECDSA_SHA*, ...)."""

    def __init__(self, hash_name: str, sign_digest: Callable[[bytes], bytes]) -> None:
        self._hash = digest_crypto.HashContext(hash_name)
        self._sign = sign_digest

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def final(self) -> bytes:
        return self._sign(self._hash.finalize())

    def oneshot(self, data: bytes) -> bytes:
        self.update(data)
        return self.final()


class HashVerifyOp:
    """Hash the input, verify the digest's signature at the end."""

    def __init__(self, hash_name: str, verify_digest: Callable[[bytes, bytes], None],
                 signature_len: int | Callable[[int], bool]) -> None:
        self._hash = digest_crypto.HashContext(hash_name)
        self._verify = verify_digest
        self._sig_len = signature_len

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def final(self, signature: bytes) -> None:
        _check_signature_len(signature, self._sig_len)
        self._verify(self._hash.finalize(), signature)

    def oneshot(self, data: bytes, signature: bytes) -> None:
        self.update(data)
        self.final(signature)


def hash_then_sign_ops(hash_name: str, key: Callable[..., Any], sign_digest: Callable[[Any, str, bytes], bytes],
                       verify_digest: Callable[[Any, str, bytes, bytes], None],
                       signature_len: Callable[[Any], int]) -> tuple[Callable, Callable]:
    """The (sign, verify) operation factories of a hash-then-sign mechanism (CKM_ECDSA_SHA256,
    CKM_SHA256_RSA_PKCS, ...): `key(material, private=...)` loads the key once per operation, the
    digest primitives do the rest."""

    def sign(material: Any, param: Any) -> HashSignOp:
        m = key(material, private=True)
        return HashSignOp(hash_name, lambda hashed: sign_digest(m, hash_name, hashed))

    def verify(material: Any, param: Any) -> HashVerifyOp:
        m = key(material, private=False)
        return HashVerifyOp(hash_name, lambda hashed, sig: verify_digest(m, hash_name, hashed, sig), signature_len(m))

    return sign, verify


class SinglePartSignOp(SinglePartCipherOp):
    """Sign the whole input at once (raw RSA, raw PSS over a digest, raw ECDSA): a whole-input
    primitive whose output is the signature."""


class SinglePartVerifyOp:
    update = final = _single_part
    #: Holds no state of one operation (only functions bound to a key and parameter): `operations`
    #: may hand one object to every operation made with the same key material and parameter.
    REUSABLE = True

    def __init__(self, verify: Callable[[bytes, bytes], None], signature_len: int | Callable[[int], bool],
                 check: Callable[[bytes], None] | None = None) -> None:
        self._verify = verify
        self._sig_len = signature_len
        self._check = check

    def oneshot(self, data: bytes, signature: bytes) -> None:
        if self._check is not None:
            self._check(data)
        _check_signature_len(signature, self._sig_len)
        self._verify(data, signature)


class BufferedSignOp:
    """Multi-part signing for schemes that need the whole message (pure EdDSA reads it twice):
    the input is kept until final, as Kryoptic does."""

    def __init__(self, sign: Callable[[bytes], bytes]) -> None:
        self._sign = sign
        self._buffer = bytearray()

    def update(self, data: bytes) -> None:
        self._buffer += data

    def final(self) -> bytes:
        return self._sign(bytes(self._buffer))

    def oneshot(self, data: bytes) -> bytes:
        self.update(data)
        return self.final()


class BufferedVerifyOp:
    def __init__(self, verify: Callable[[bytes, bytes], None], signature_len: int) -> None:
        self._verify = verify
        self._sig_len = signature_len
        self._buffer = bytearray()

    def update(self, data: bytes) -> None:
        self._buffer += data

    def final(self, signature: bytes) -> None:
        _check_signature_len(signature, self._sig_len)
        self._verify(bytes(self._buffer), signature)

    def oneshot(self, data: bytes, signature: bytes) -> None:
        self.update(data)
        self.final(signature)


class RecoverOp:
    """C_VerifyRecover: `oneshot(signature) -> data`."""

    update = final = _single_part

    def __init__(self, recover: Callable[[bytes], bytes], signature_len: int) -> None:
        self._recover = recover
        self._sig_len = signature_len

    def oneshot(self, signature: bytes) -> bytes:
        _check_signature_len(signature, self._sig_len)
        return self._recover(signature)


class _MacOp:
    """A MAC context (emulator.crypto.mac) fed as the data comes; its MAC truncated to `length`
    bytes (the *_GENERAL rows)."""

    def __init__(self, ctx: Any, length: int) -> None:
        self._ctx = ctx
        self._length = length

    def update(self, data: bytes) -> None:
        self._ctx.update(data)


class MacSignOp(_MacOp):
    """HMAC / CMAC signing."""

    def final(self) -> bytes:
        return self._ctx.finalize()[: self._length]

    def oneshot(self, data: bytes) -> bytes:
        self.update(data)
        return self.final()


class MacVerifyOp(_MacOp):
    def final(self, signature: bytes) -> None:
        _check_signature_len(signature, self._length)
        if not mac_crypto.equal(self._ctx.finalize()[: self._length], signature):
            raise PKCS11Error(CKR.SIGNATURE_INVALID)

    def oneshot(self, data: bytes, signature: bytes) -> None:
        self.update(data)
        self.final(signature)


# --- digests -------------------------------------------------------------------------------------

class DigestOp:
    """A message digest with exportable state.

    `cryptography`'s hash objects (like hashlib's) cannot be serialised, so the exportable state
    (C_GetOperationState) is the input absorbed so far, kept beside the running hash; restoring
    re-hashes it. Past `MAX_STATE_INPUT` bytes the buffer is dropped and `state()` answers
    CKR_STATE_UNSAVEABLE. Key bytes fed by C_DigestKey go through `update_key`, which also makes
    the state unsaveable, so a saved state never carries key material.
    """

    MAX_STATE_INPUT = 16 << 20

    def __init__(self, hash_name: str) -> None:
        self.hash_name = hash_name
        self._hash = digest_crypto.HashContext(hash_name)
        self._input: bytearray | None = bytearray()

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        if self._input is not None:
            if len(self._input) + len(data) > self.MAX_STATE_INPUT:
                self._input = None
            else:
                self._input += data

    def update_key(self, value: bytes) -> None:
        self._hash.update(value)
        self._input = None

    def final(self) -> bytes:
        return self._hash.finalize()

    def oneshot(self, data: bytes) -> bytes:
        self._hash.update(data)
        return self._hash.finalize()

    def copy(self) -> DigestOp:
        other = DigestOp.__new__(DigestOp)
        other.hash_name = self.hash_name
        other._hash = self._hash.copy()
        other._input = None if self._input is None else bytearray(self._input)
        return other

    def state(self) -> bytes:
        if self._input is None:
            raise PKCS11Error(CKR.STATE_UNSAVEABLE, "digest state holds key bytes or too much input")
        return bytes(self._input)

    def restore(self, state: bytes) -> None:
        self._hash = digest_crypto.HashContext(self.hash_name)
        self._input = bytearray()
        self.update(state)

