"""The operation state model (docs/library.md, "Operation state", pkcs11_shim/operations.py) written out as
the specification `opstate_machine.py` holds the .so to: the operation kinds and their C functions,
the oracle for every output (`cryptography`, hashlib, hmac), and `Model`, which says for each call the
exact CKR and output and changes as the library must."""

from __future__ import annotations

import copy
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11_shim.constants import (CKF_FIND_OBJECTS, CKF_MESSAGE_DECRYPT, CKF_MESSAGE_ENCRYPT, CKF_MESSAGE_SIGN,
                                   CKF_MESSAGE_VERIFY, CKR, Mechanism, MechanismFlag)

AES_KEY = bytes(range(16))
HMAC_KEY = bytes(range(100, 132))
GCM_IV = bytes(range(12))
CBC_IV = bytes(range(50, 66))
TAG_LEN = 16

# --- the kinds and their C functions -------------------------------------------------------------
CLASSIC = ("digest", "encrypt", "decrypt", "sign", "verify", "sign_recover", "verify_recover", "verify_signature")
MESSAGE = ("message_encrypt", "message_decrypt", "message_sign", "message_verify")
KINDS = CLASSIC + ("dual",) + MESSAGE + ("find",)
INIT = {"digest": "C_DigestInit", "encrypt": "C_EncryptInit", "decrypt": "C_DecryptInit", "sign": "C_SignInit",
        "verify": "C_VerifyInit", "sign_recover": "C_SignRecoverInit", "verify_recover": "C_VerifyRecoverInit",
        "verify_signature": "C_VerifySignatureInit", "message_encrypt": "C_MessageEncryptInit",
        "message_decrypt": "C_MessageDecryptInit", "message_sign": "C_MessageSignInit",
        "message_verify": "C_MessageVerifyInit"}
UPDATE = {"digest": "C_DigestUpdate", "encrypt": "C_EncryptUpdate", "decrypt": "C_DecryptUpdate",
          "sign": "C_SignUpdate", "verify": "C_VerifyUpdate", "verify_signature": "C_VerifySignatureUpdate"}
FINAL = {"digest": "C_DigestFinal", "encrypt": "C_EncryptFinal", "decrypt": "C_DecryptFinal", "sign": "C_SignFinal",
         "verify": "C_VerifyFinal", "verify_signature": "C_VerifySignatureFinal"}
ONESHOT = {"digest": "C_Digest", "encrypt": "C_Encrypt", "decrypt": "C_Decrypt", "sign": "C_Sign",
           "verify": "C_Verify", "sign_recover": "C_SignRecover", "verify_recover": "C_VerifyRecover",
           "verify_signature": "C_VerifySignature"}
#: dual function -> (first: makes the output, second: absorbs, second absorbs the output)
DUAL = {"C_DigestEncryptUpdate": ("encrypt", "digest", False), "C_DecryptDigestUpdate": ("decrypt", "digest", True),
        "C_SignEncryptUpdate": ("encrypt", "sign", False), "C_DecryptVerifyUpdate": ("decrypt", "verify", True)}
#: which mechanisms each kind is initialised with in the test ("multi": multi-part capable)
MECHS = {"digest": ("sha256",), "encrypt": ("ecb", "cbcpad"), "decrypt": ("ecb", "cbcpad"), "sign": ("hmac", "rsa"),
         "verify": ("hmac", "rsa"), "sign_recover": ("rsa",), "verify_recover": ("rsa",),
         "verify_signature": ("hmac",), "message_encrypt": ("gcm",), "message_decrypt": ("gcm",),
         "message_sign": ("hmac",), "message_verify": ("hmac",)}
MECH_NUMBER = {"sha256": Mechanism.SHA256, "ecb": Mechanism.AES_ECB, "cbcpad": Mechanism.AES_CBC_PAD,
               "hmac": Mechanism.SHA256_HMAC,
               "rsa": Mechanism.RSA_PKCS, "gcm": Mechanism.AES_GCM}
CANCEL = {"encrypt": MechanismFlag.ENCRYPT, "decrypt": MechanismFlag.DECRYPT, "digest": MechanismFlag.DIGEST,
          "sign": MechanismFlag.SIGN, "verify": MechanismFlag.VERIFY, "sign_recover": MechanismFlag.SIGN_RECOVER,
          "verify_recover": MechanismFlag.VERIFY_RECOVER, "verify_signature": MechanismFlag.VERIFY,
          "message_encrypt": CKF_MESSAGE_ENCRYPT, "message_decrypt": CKF_MESSAGE_DECRYPT,
          "message_sign": CKF_MESSAGE_SIGN, "message_verify": CKF_MESSAGE_VERIFY, "find": CKF_FIND_OBJECTS}


# --- the oracle: what each computation must give ------------------------------------------------
def ecb(data: bytes, encrypt: bool) -> bytes:
    c = Cipher(algorithms.AES(AES_KEY), modes.ECB())
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def cbc(data: bytes, encrypt: bool) -> bytes:
    """AES-CBC without padding under CBC_IV (whole blocks)."""
    c = Cipher(algorithms.AES(AES_KEY), modes.CBC(CBC_IV))
    ctx = c.encryptor() if encrypt else c.decryptor()
    return ctx.update(data) + ctx.finalize()


def pkcs7(data: bytes) -> bytes:
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def unpkcs7(data: bytes) -> bytes | None:
    n = data[-1] if data else 0
    return data[:-n] if 1 <= n <= 16 and data.endswith(bytes([n]) * n) else None


def mac(data: bytes) -> bytes:
    return hmac.new(HMAC_KEY, data, hashlib.sha256).digest()


def gcm_tag_for(ciphertext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """(plaintext, tag) that make `ciphertext` a valid GCM encryption under (GCM_IV, aad)."""
    ctr = Cipher(algorithms.AES(AES_KEY), modes.CTR(GCM_IV + b"\x00\x00\x00\x02")).decryptor()
    plain = ctr.update(ciphertext) + ctr.finalize()
    return plain, AESGCM(AES_KEY).encrypt(GCM_IV, plain, aad)[-TAG_LEN:]


class Rsa:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.numbers = self.private.private_numbers()
        self.k = 256

    def sign(self, data: bytes) -> bytes:
        """CKM_RSA_PKCS signing: EMSA-PKCS1-v1_5 of the raw data, no DigestInfo (deterministic)."""
        return self.private.sign(data, padding.PKCS1v15(), utils.NoDigestInfo())


def tamper(value: bytes) -> bytes:
    """One bit flipped in the last byte (an RSA signature stays below the modulus)."""
    return value[:-1] + bytes([value[-1] ^ 1]) if value else b"\x01"


# --- the model -----------------------------------------------------------------------------------
@dataclass
class Op:
    mech: str
    multipart: bool = False
    held: tuple[str, bytes, bytes, bool] | None = None  # (call, input, output, ends)
    acc: bytes = b""  # input absorbed (digest, MAC, verification)
    rest: bytes = b""  # ECB: input not yet a whole block
    emitted: int = 0  # CBC-PAD: output bytes given out so far
    keyed: bool = False  # C_DigestKey fed key bytes: the state cannot be saved
    signature: bytes = b""  # C_VerifySignatureInit's signature
    message: tuple[bytes, bytes] | None = None  # message based: (aad, buffered input) of a message begun
    found: list[int] = field(default_factory=list)


class Ended(Exception):
    """The model's answer is an error code that ends the named operations."""

    def __init__(self, rv: int, *kinds: str) -> None:
        super().__init__(hex(rv))
        self.rv, self.kinds = rv, kinds


class Model:
    """The operation state model of docs/library.md, call by call. Each method returns the expected
    (rv, output) and changes the model as the library must change; `Ended` carries an error that
    ends operations (the caller removes them)."""

    def __init__(self, rsa_key: Rsa, aes_handle: int) -> None:
        self.ops: dict[str, Op] = {}
        self.rsa = rsa_key
        self.aes_handle = aes_handle

    def active(self, kind: str) -> Op:
        op = self.ops.get(kind)
        if op is None:
            raise Ended(CKR.OPERATION_NOT_INITIALIZED)
        return op

    @staticmethod
    def refuse_held(op: Op, kind: str, *also: str) -> None:
        if op.held is not None and not op.held[3] and not op.held[2]:
            op.held = None  # an update's empty output: nothing to collect
        if op.held is not None:
            raise Ended(CKR.OPERATION_ACTIVE, kind, *also)

    def compute(self, kind: str, op: Op, step: str, data: bytes) -> bytes:
        """The output of one update / final / oneshot; raises Ended for the errors."""
        single_part = op.mech == "rsa"
        if step != "oneshot" and single_part:
            raise Ended(CKR.OPERATION_NOT_INITIALIZED, kind)
        if step == "oneshot" and op.multipart:
            raise Ended(CKR.OPERATION_ACTIVE, kind)
        if op.mech == "ecb":
            length_error = CKR.DATA_LEN_RANGE if kind == "encrypt" else CKR.ENCRYPTED_DATA_LEN_RANGE
            if step == "oneshot":
                if len(data) % 16:
                    raise Ended(length_error, kind)
                return ecb(data, kind == "encrypt")
            if step == "update":
                op.multipart = True
                whole = op.rest + data
                cut = len(whole) // 16 * 16
                op.rest = whole[cut:]
                return ecb(whole[:cut], kind == "encrypt")
            if op.rest:
                raise Ended(length_error, kind)
            return b""
        if op.mech == "cbcpad":
            return self.cbc_pad(kind, op, step, data)
        if op.mech in ("sha256", "hmac"):
            fn = (lambda d: hashlib.sha256(d).digest()) if op.mech == "sha256" else mac
            if step == "update":
                op.multipart = True
                op.acc += data
                return b""
            return fn(data if step == "oneshot" else op.acc)
        if kind == "verify_recover":
            if len(data) != self.rsa.k:
                raise Ended(CKR.SIGNATURE_LEN_RANGE, kind)
            raise AssertionError("verify_recover is answered in Machine.oneshot")
        return self.rsa.sign(data)

    @staticmethod
    def cbc_pad(kind: str, op: Op, step: str, data: bytes) -> bytes:
        """CKM_AES_CBC_PAD, from the whole input so far (CBC output is prefix-consistent): encryption
        gives every whole block at once; decryption holds the last block back for the padding."""
        if kind == "encrypt":
            if step == "oneshot":
                return cbc(pkcs7(data), True)
            if step == "update":
                op.multipart = True
                op.acc += data
                out = cbc(op.acc[:len(op.acc) // 16 * 16], True)[op.emitted:]
            else:
                out = cbc(pkcs7(op.acc), True)[op.emitted:]
            op.emitted += len(out)
            return out
        whole = data if step == "oneshot" else op.acc + data
        if step == "update":
            op.multipart = True
            op.acc = whole
            blocks = len(whole) // 16
            out = cbc(whole[:blocks * 16], False)[:max(blocks - 1, 0) * 16][op.emitted:]
            op.emitted += len(out)
            return out
        if len(whole) % 16 or len(whole) < 16:
            raise Ended(CKR.ENCRYPTED_DATA_LEN_RANGE, kind)
        plain = unpkcs7(cbc(whole, False))
        if plain is None:
            raise Ended(CKR.ENCRYPTED_DATA_INVALID, kind)
        return plain[op.emitted if step == "final" else 0:]

    def produce(self, kind: str, step: str, data: bytes, hold: bool, call: str | None = None,
                compute_kind: str | None = None) -> bytes:
        op = self.active(kind)
        call = call or step
        if op.held is not None and op.held[0] == call and op.held[1] == data:
            out = op.held[2]
        else:
            self.refuse_held(op, kind)
            out = self.compute(compute_kind or kind, op, step, data)
        ends = step != "update"
        if hold:  # a length query, or a buffer shorter than `out`: the output waits for the caller
            op.held = (call, data, out, ends)
        else:
            op.held = None
            if ends:
                del self.ops[kind]
        return out


def snapshot(model: Model) -> dict:
    return copy.deepcopy(model.ops)


def restore(model: Model, ops: dict) -> None:
    model.ops = ops


def dry(model: Model, kind: str, step: str, data: bytes) -> bytes:
    op = model.active(kind)
    model.refuse_held(op, kind)
    return model.compute(kind, op, step, data)
