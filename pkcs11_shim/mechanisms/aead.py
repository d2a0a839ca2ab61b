"""PKCS#11 3.0 message-based AEAD (§5.9-5.10 functions, §2.14.x CK_GCM_MESSAGE_PARAMS and
CK_CCM_MESSAGE_PARAMS): the operation objects C_MessageEncryptInit / C_MessageDecryptInit make for
CKM_AES_GCM and CKM_AES_CCM.

`abi.messages` calls `message(param, aad, data, capacity)`, `begin(param, aad)` and `next(param, data,
capacity, flags)`, where `param` (`params.MessageParamAccess`) reads the per-message parameter and
writes back into it, because the token writes into it: a generated IV (ivGenerator
CKG_GENERATE / _COUNTER / _RANDOM: the bits after ulIvFixedBits are the token's) and, on encryption,
the tag. A call that is only a length query (capacity None, or too small) changes nothing, so the
second call of the two-call convention (§5.2) generates the IV once. Multi-part messages are
buffered until CKF_END_OF_MESSAGE (CCM needs the whole input; GCM decryption may release plaintext
only after the tag verified). A failed tag check is CKR_AEAD_DECRYPT_FAILED (3.0 §5.1.x).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from emulator.crypto import aes as aes_crypto
from emulator.crypto import aesmodes

from .. import constants
from ..constants import CKF_END_OF_MESSAGE, CKR
from ..errors import PKCS11Error
from . import params

GENERATORS = (constants.CKG_NO_GENERATE, constants.CKG_GENERATE, constants.CKG_GENERATE_COUNTER,
              constants.CKG_GENERATE_RANDOM)


def _invalid(message: str) -> PKCS11Error:
    return PKCS11Error(CKR.MECHANISM_PARAM_INVALID, message)


def _check_gcm(p: params.MessageParams) -> None:
    low, high = aes_crypto.GCM_IV_RANGE
    if not low <= len(p.iv) <= high:
        raise _invalid(f"GCM IV of {len(p.iv)} bytes")
    tag_low, tag_high = aes_crypto.GCM_TAG_RANGE
    if not tag_low <= p.tag_len <= tag_high:
        raise _invalid(f"GCM tag of {p.tag_len} bytes")


def _check_ccm(p: params.MessageParams) -> None:
    low, high = aesmodes.CCM_NONCE_RANGE
    if not low <= len(p.iv) <= high:
        raise _invalid(f"CCM nonce of {len(p.iv)} bytes")
    if p.tag_len not in aesmodes.CCM_TAG_LENGTHS:
        raise _invalid(f"CCM MAC of {p.tag_len} bytes")


class AeadMessageOp:
    """One C_Message{Encrypt,Decrypt}Init: any number of messages under one key."""

    def __init__(self, kind: str, key: bytes, encrypt: bool) -> None:
        self._kind = kind  # "gcm" | "ccm"
        self._key = key
        self._encrypt = encrypt
        self._counter = 0
        self._pending: tuple[params.MessageParams, bytes, bytearray, bytes] | None = None

    # --- parameters and IVs ------------------------------------------------------------------

    def _param(self, access: params.MessageParamAccess) -> params.MessageParams:
        p = access.read(self._kind)
        (_check_gcm if self._kind == "gcm" else _check_ccm)(p)
        if self._encrypt:
            if p.generator not in GENERATORS:
                raise _invalid(f"IV generator {p.generator}")
            if p.generator != constants.CKG_NO_GENERATE and not 0 <= p.fixed_bits <= 8 * len(p.iv):
                raise _invalid("ulIvFixedBits longer than the IV")
        return p

    def _iv(self, access: params.MessageParamAccess, p: params.MessageParams) -> bytes:
        """The IV of an encryption; a generated one is written back into the caller's structure."""
        if p.generator == constants.CKG_NO_GENERATE:
            return p.iv
        total = 8 * len(p.iv)
        free = total - p.fixed_bits
        if free <= 0:
            raise _invalid("no IV bits left to generate")
        fixed = int.from_bytes(p.iv, "big") >> free << free
        if p.generator == constants.CKG_GENERATE_RANDOM:
            variable = secrets.randbits(free)
        else:  # CKG_GENERATE and CKG_GENERATE_COUNTER: a per-operation counter
            if self._counter >= (1 << free):
                raise PKCS11Error(CKR.DATA_LEN_RANGE, "IV counter exhausted")
            variable = self._counter
            self._counter += 1
        iv = (fixed | variable).to_bytes(len(p.iv), "big")
        access.write(p, iv, None)
        return iv

    # --- the work ----------------------------------------------------------------------------

    def _run(self, access: params.MessageParamAccess, p: params.MessageParams, iv: bytes, aad: bytes,
             data: bytes) -> bytes:
        if self._kind == "ccm" and p.data_len != len(data):
            raise PKCS11Error(CKR.DATA_LEN_RANGE, "CCM data length differs from ulDataLen")
        # A tag that does not verify is the registry's CKR_AEAD_DECRYPT_FAILED (failures.BY_OPERATION).
        if self._kind == "gcm":
            if self._encrypt:
                out, tag = aesmodes.gcm_encrypt_detached(self._key, iv, aad, data, p.tag_len)
                access.write(p, None, tag)
                return out
            return aes_crypto.gcm_decrypt(self._key, iv, aad, data + p.tag, p.tag_len)
        if self._encrypt:
            sealed = aesmodes.ccm_encrypt(self._key, iv, aad, data, p.tag_len)
            access.write(p, None, sealed[-p.tag_len:])
            return sealed[: -p.tag_len]
        return aesmodes.ccm_decrypt(self._key, iv, aad, data + p.tag, p.tag_len)

    def message(self, access: params.MessageParamAccess, aad: bytes, data: bytes,
                capacity: int | None) -> bytes:
        p = self._param(access)
        if capacity is None or capacity < len(data):
            return bytes(len(data))  # a length query: no IV is generated, nothing changes
        iv = self._iv(access, p) if self._encrypt else p.iv
        return self._run(access, p, iv, aad, data)

    def begin(self, access: params.MessageParamAccess, aad: bytes) -> None:
        if self._pending is not None:
            raise PKCS11Error(CKR.OPERATION_ACTIVE, "a message is in progress")
        p = self._param(access)
        iv = self._iv(access, p) if self._encrypt else p.iv
        self._pending = (p, aad, bytearray(), iv)

    def next(self, access: params.MessageParamAccess, data: bytes, capacity: int | None,
             flags: int) -> bytes:
        if self._pending is None:
            raise PKCS11Error(CKR.OPERATION_NOT_INITIALIZED, "no C_*MessageBegin")
        _begun, aad, buffered, iv = self._pending
        # 3.0 §2.14.x: the message's parameter is passed to Begin and to every Next; the last part's
        # is the one the tag goes to (the same structure as Begin's).
        p = self._param(access)
        last = bool(flags & CKF_END_OF_MESSAGE)
        needed = len(buffered) + len(data) if last else 0
        if capacity is None or capacity < needed:
            return bytes(needed)
        if not last:
            buffered += data
            return b""
        self._pending = None
        return self._run(access, p, iv, aad, bytes(buffered) + data)

    def abandon(self) -> None:
        """End the message in progress (a failed C_*MessageNext); the operation stays."""
        self._pending = None


def factory(kind: str, encrypt: bool, key_of: Callable[[Any], bytes]) -> Callable[[Any, Any], AeadMessageOp]:
    def make(material: Any, param: Any) -> AeadMessageOp:
        if param is not None:
            raise _invalid("C_Message*Init takes no parameter for AEAD; each message brings its own")
        return AeadMessageOp(kind, key_of(material), encrypt)

    return make
