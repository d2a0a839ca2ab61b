"""RSA mechanisms (PKCS#11 3.0 §2.1): key pair generation, PKCS#1 v1.5, raw X.509, OAEP, PSS, the
hash-and-sign variants, and CKM_RSA_AES_KEY_WRAP.

Sizes in CK_MECHANISM_INFO are modulus bits. CKM_RSA_PKCS, CKM_RSA_X_509, CKM_RSA_PKCS_OAEP,
CKM_RSA_PKCS_PSS and CKM_RSA_AES_KEY_WRAP are single-part (spec tables, footnote 2); the
SHA*_RSA_PKCS[_PSS] rows hash as the data comes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.crypto import digest as digest_crypto
from emulator.crypto import keywrap as kw_crypto
from emulator.crypto import rsa as rsa_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial
from emulator.errors import CryptoFailure

from .. import constants
from ..constants import CKR, Attribute, KeyType, Mechanism, MechanismFlag
from ..errors import PKCS11Error
from . import keybytes, params
from .hashes import DIGEST_MECHANISMS, MGF1_HASHES
from .ops import (
    HashSignOp,
    HashVerifyOp,
    RecoverOp,
    SinglePartCipherOp,
    SinglePartSignOp,
    SinglePartVerifyOp,
    hash_then_sign_ops,
    require_length,
)
from .registry import MechanismSpec, Registry

F = MechanismFlag
KEYGEN_MIN, KEYGEN_MAX = 1024, 4096
#: Keys the operations accept (imported keys may be larger than the ones we generate).
#: Operations take keys from 512 bits (SoftHSM2's minimum: old certificates still need verifying);
#: generation starts at 1024 bits, as nShield's does.
OP_MIN, OP_MAX = 512, 8192
KEY_TYPES = frozenset({KeyType.RSA})
PKCS1_OVERHEAD = 11  # RFC 8017 §7.2.1: mLen <= k - 11
DEFAULT_EXPONENT = 65537


def _key(material: Any, *, private: bool) -> Any:
    """The material, checked: private when the operation needs it, modulus size within the rows'."""
    if private and not isinstance(material, PrivateMaterial):
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an RSA private key is needed")
    if not isinstance(material, (PrivateMaterial, PublicMaterial)) or material.kind != "RSA":
        raise PKCS11Error(CKR.KEY_TYPE_INCONSISTENT, "an RSA key is needed")
    if not OP_MIN <= rsa_crypto.modulus_bits(material) <= OP_MAX:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"{rsa_crypto.modulus_bits(material)}-bit RSA key")
    return material


def _as_int(value: Any) -> int:
    return int.from_bytes(value, "big") if isinstance(value, (bytes, bytearray)) else int(value)


# --- key pair generation ---------------------------------------------------------------------

def generate_pair(param: Any, public_attrs: dict[int, Any], private_attrs: dict[int, Any]) -> PrivateMaterial:
    bits = public_attrs.get(Attribute.MODULUS_BITS)
    if bits is None:
        raise PKCS11Error(CKR.TEMPLATE_INCOMPLETE, "CKA_MODULUS_BITS is required")
    bits = _as_int(bits)
    if not KEYGEN_MIN <= bits <= KEYGEN_MAX:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"{bits}-bit RSA keys are not generated")
    exponent = public_attrs.get(Attribute.PUBLIC_EXPONENT)
    exponent = DEFAULT_EXPONENT if exponent is None else _as_int(exponent)
    return rsa_crypto.generate(bits, exponent)


# --- parameters --------------------------------------------------------------------------------

def _invalid(message: str) -> PKCS11Error:
    return PKCS11Error(CKR.MECHANISM_PARAM_INVALID, message)


def validate_oaep(param: Any) -> None:
    params.require(param, params.OaepParams, "CK_RSA_PKCS_OAEP_PARAMS")
    if param.hash_alg not in DIGEST_MECHANISMS or param.mgf not in MGF1_HASHES:
        raise _invalid("unsupported OAEP hash or MGF")
    # Refused here, at Init (encrypt, decrypt, wrap, unwrap, RSA-AES wrap all validate through this),
    # what the primitive cannot do: OAEP over SHA-3 or SHA-512/t is a valid PKCS#11 parameter that
    # `cryptography` would only refuse at the first C_Encrypt.
    if not rsa_crypto.oaep_supported(DIGEST_MECHANISMS[param.hash_alg], MGF1_HASHES[param.mgf]):
        raise _invalid(f"OAEP with {DIGEST_MECHANISMS[param.hash_alg]} and MGF1-{MGF1_HASHES[param.mgf]} "
                       "is not offered")
    # PKCS#11 3.0 §2.1.8: the only source is CKZ_DATA_SPECIFIED. A zero source with no label is
    # accepted as well, because some callers leave the field unset when they pass no label.
    if param.source != constants.CKZ_DATA_SPECIFIED and (param.source != 0 or param.source_data):
        raise _invalid("OAEP source must be CKZ_DATA_SPECIFIED")


def validate_pss(param: Any) -> None:
    params.require(param, params.PssParams, "CK_RSA_PKCS_PSS_PARAMS")
    if param.hash_alg not in DIGEST_MECHANISMS or param.mgf not in MGF1_HASHES or param.salt_len < 0:
        raise _invalid("unsupported PSS hash, MGF or salt length")


def _validate_hashed_pss(hash_name: str) -> Any:
    def validate(param: Any) -> None:
        validate_pss(param)
        # PKCS#11 3.0 §2.1.12: hashAlg of a SHAx_RSA_PKCS_PSS parameter names the mechanism's hash.
        if DIGEST_MECHANISMS[param.hash_alg] != hash_name:
            raise _invalid(f"hashAlg must be {hash_name} for this mechanism")

    return validate


def validate_rsa_aes(param: Any) -> None:
    params.require(param, params.RsaAesKeyWrapParams, "CK_RSA_AES_KEY_WRAP_PARAMS")
    if param.aes_key_bits not in (128, 192, 256):
        raise _invalid("ulAESKeyBits must be 128, 192 or 256")
    validate_oaep(param.oaep)


def _oaep_args(param: params.OaepParams) -> tuple[str, str, bytes]:
    return DIGEST_MECHANISMS[param.hash_alg], MGF1_HASHES[param.mgf], param.source_data


def _check_pss_salt(material: Any, hash_name: str, salt_len: int) -> None:
    if salt_len > rsa_crypto.pss_max_salt(material, hash_name):
        raise _invalid(f"salt of {salt_len} bytes does not fit this key with {hash_name}")


# --- CKM_RSA_PKCS ------------------------------------------------------------------------------

def _at_most(limit: int, code: int, what: str) -> Any:
    return require_length(lambda n: n <= limit, code, what)


def _exactly(size: int, code: int, what: str) -> Any:
    return require_length(lambda n: n == size, code, what)


def _whole_input_ops(overhead: int, encrypt: Callable[[Any, bytes], bytes], decrypt: Callable[[Any, bytes], bytes],
                     sign: Callable[[Any, bytes], bytes], recover: Callable[[Any, bytes], bytes]) -> dict[str, Any]:
    """The single-part operations of an RSA mechanism that pads the whole input itself (CKM_RSA_PKCS:
    PKCS#1 v1.5, `overhead` 11 bytes; CKM_RSA_X_509: none): an input fits the modulus less the
    overhead, a ciphertext is exactly the modulus long. Sign-recover signs as sign does."""

    def padded(op: type, private: bool, run: Callable[[Any, bytes], bytes]) -> Callable[[Any, Any], Any]:
        """An operation on an input that must fit the modulus less the padding."""
        def make(material: Any, param: Any) -> Any:
            m = _key(material, private=private)
            return op(lambda data: run(m, data),
                      _at_most(rsa_crypto.modulus_len(m) - overhead, CKR.DATA_LEN_RANGE, "input"))
        return make

    def decrypt_op(material: Any, param: Any) -> SinglePartCipherOp:
        m = _key(material, private=True)
        return SinglePartCipherOp(lambda data: decrypt(m, data),
                                  _exactly(rsa_crypto.modulus_len(m), CKR.ENCRYPTED_DATA_LEN_RANGE, "ciphertext"))

    def recover_op(material: Any, param: Any) -> RecoverOp:
        m = _key(material, private=False)
        return RecoverOp(lambda sig: recover(m, sig), rsa_crypto.modulus_len(m))

    sign_op = padded(SinglePartSignOp, True, sign)
    return {"encrypt": padded(SinglePartCipherOp, False, encrypt), "decrypt": decrypt_op, "sign": sign_op,
            "sign_recover": sign_op, "verify_recover": recover_op}


def _pkcs_verify(material: Any, param: Any) -> SinglePartVerifyOp:
    m = _key(material, private=False)
    k = rsa_crypto.modulus_len(m)
    return SinglePartVerifyOp(lambda data, sig: rsa_crypto.pkcs1v15_verify_raw(m, sig, data), k,
                              _at_most(k - PKCS1_OVERHEAD, CKR.DATA_LEN_RANGE, "input"))


def _wrap_with(encrypt: Any, limit: Any) -> Any:
    """wrap() for the padded RSA encryptions: secret keys only, which must fit the padding."""

    def wrap(wrapping: Any, param: Any, target: Any) -> bytes:
        m = _key(wrapping, private=False)
        value = keybytes.wrappable(target, private_allowed=False)
        if len(value) > limit(m, param):
            raise PKCS11Error(CKR.KEY_SIZE_RANGE, f"a {len(value)}-byte key does not fit the RSA padding")
        return encrypt(m, param, value)

    return wrap


def _unwrap_with(decrypt: Any) -> Any:
    def unwrap(unwrapping: Any, param: Any, wrapped: bytes, target_kind: str, value_len: int | None) -> Any:
        m = _key(unwrapping, private=True)
        if len(wrapped) != rsa_crypto.modulus_len(m):
            raise PKCS11Error(CKR.WRAPPED_KEY_LEN_RANGE, f"wrapped key of {len(wrapped)} bytes")
        return keybytes.unwrapped(decrypt(m, param, wrapped), target_kind, value_len)

    return unwrap


# --- CKM_RSA_X_509 (raw) -------------------------------------------------------------------------

def _x509_verify(material: Any, param: Any) -> SinglePartVerifyOp:
    m = _key(material, private=False)
    k = rsa_crypto.modulus_len(m)

    def verify(data: bytes, signature: bytes) -> None:
        # Raw RSA: the signature verifies if s^e mod n is the data, left-padded with zeros to k bytes.
        if rsa_crypto.raw_public(m, signature) != data.rjust(k, b"\0"):
            raise CryptoFailure("signature mismatch")

    return SinglePartVerifyOp(verify, k, _at_most(k, CKR.DATA_LEN_RANGE, "input"))


# --- CKM_RSA_PKCS_OAEP ----------------------------------------------------------------------------

def _oaep_limit(m: Any, param: params.OaepParams) -> int:
    return rsa_crypto.oaep_max_input(m, DIGEST_MECHANISMS[param.hash_alg])


def _oaep_encrypt(material: Any, param: params.OaepParams) -> SinglePartCipherOp:
    m = _key(material, private=False)
    limit = _oaep_limit(m, param)
    if limit < 0:
        raise PKCS11Error(CKR.KEY_SIZE_RANGE, "the key is too small for OAEP with this hash")
    return SinglePartCipherOp(lambda data: rsa_crypto.oaep_encrypt(m, data, *_oaep_args(param)),
                              _at_most(limit, CKR.DATA_LEN_RANGE, "input"))


def _oaep_decrypt(material: Any, param: params.OaepParams) -> SinglePartCipherOp:
    m = _key(material, private=True)
    return SinglePartCipherOp(lambda data: rsa_crypto.oaep_decrypt(m, data, *_oaep_args(param)),
                              _exactly(rsa_crypto.modulus_len(m), CKR.ENCRYPTED_DATA_LEN_RANGE, "ciphertext"))


# --- PSS -----------------------------------------------------------------------------------------

def _pss_ops(hash_name: str | None) -> tuple[Any, Any]:
    """sign/verify for CKM_RSA_PKCS_PSS (hash_name None: the input is the digest, single-part) or a
    SHAx_RSA_PKCS_PSS row (the row hashes the input)."""

    def setup(material: Any, param: params.PssParams, private: bool) -> tuple[Any, str, str, int]:
        m = _key(material, private=private)
        hashing = DIGEST_MECHANISMS[param.hash_alg]
        _check_pss_salt(m, hashing, param.salt_len)
        return m, hashing, MGF1_HASHES[param.mgf], param.salt_len

    def sign(material: Any, param: params.PssParams) -> Any:
        m, hashing, mgf, salt = setup(material, param, True)

        def sign_digest(hashed: bytes) -> bytes:
            return rsa_crypto.pss_sign_digest(m, hashing, mgf, salt, hashed)

        if hash_name is None:
            size = digest_crypto.digest_size(hashing)
            return SinglePartSignOp(sign_digest, _exactly(size, CKR.DATA_LEN_RANGE, "digest"))
        return HashSignOp(hash_name, sign_digest)

    def verify(material: Any, param: params.PssParams) -> Any:
        m, hashing, mgf, salt = setup(material, param, False)
        k = rsa_crypto.modulus_len(m)

        def verify_digest(hashed: bytes, signature: bytes) -> None:
            rsa_crypto.pss_verify_digest(m, hashing, mgf, salt, hashed, signature)

        if hash_name is None:
            size = digest_crypto.digest_size(hashing)
            return SinglePartVerifyOp(verify_digest, k, _exactly(size, CKR.DATA_LEN_RANGE, "digest"))
        return HashVerifyOp(hash_name, verify_digest, k)

    return sign, verify


def _pkcs_hashed_ops(hash_name: str) -> tuple[Any, Any]:
    return hash_then_sign_ops(hash_name, _key, rsa_crypto.pkcs1v15_sign_digest, rsa_crypto.pkcs1v15_verify_digest,
                              rsa_crypto.modulus_len)


# --- CKM_RSA_AES_KEY_WRAP --------------------------------------------------------------------------

def _rsa_aes_prepare_wrap(wrapping: Any, param: params.RsaAesKeyWrapParams) -> Callable[[Any], bytes]:
    m = _key(wrapping, private=False)
    if _oaep_limit(m, param.oaep) < param.aes_key_bits // 8:
        raise PKCS11Error(CKR.WRAPPING_KEY_SIZE_RANGE, "the RSA key cannot carry the AES key with this OAEP hash")
    wrap = kw_crypto.rsa_aes_wrapper(m, param.aes_key_bits, *_oaep_args(param.oaep))
    return lambda target: wrap(keybytes.wrappable(target))


def _rsa_aes_wrap(wrapping: Any, param: params.RsaAesKeyWrapParams, target: Any) -> bytes:
    return _rsa_aes_prepare_wrap(wrapping, param)(target)


def _rsa_aes_unwrap(unwrapping: Any, param: params.RsaAesKeyWrapParams, wrapped: bytes, target_kind: str,
                    value_len: int | None) -> Any:
    m = _key(unwrapping, private=True)
    kwp_len = len(wrapped) - rsa_crypto.modulus_len(m)
    if kwp_len < 16 or kwp_len % 8:
        raise PKCS11Error(CKR.WRAPPED_KEY_LEN_RANGE, f"wrapped key of {len(wrapped)} bytes")
    value = kw_crypto.rsa_aes_unwrap(m, *_oaep_args(param.oaep), wrapped)
    return keybytes.unwrapped(value, target_kind, value_len)


#: (SHAx_RSA_PKCS, SHAx_RSA_PKCS_PSS, hash)
HASHED_ROWS = (
    (Mechanism.SHA1_RSA_PKCS, Mechanism.SHA1_RSA_PKCS_PSS, "SHA1"),
    (Mechanism.SHA224_RSA_PKCS, Mechanism.SHA224_RSA_PKCS_PSS, "SHA224"),
    (Mechanism.SHA256_RSA_PKCS, Mechanism.SHA256_RSA_PKCS_PSS, "SHA256"),
    (Mechanism.SHA384_RSA_PKCS, Mechanism.SHA384_RSA_PKCS_PSS, "SHA384"),
    (Mechanism.SHA512_RSA_PKCS, Mechanism.SHA512_RSA_PKCS_PSS, "SHA512"),
    (Mechanism.SHA3_224_RSA_PKCS, Mechanism.SHA3_224_RSA_PKCS_PSS, "SHA3_224"),
    (Mechanism.SHA3_256_RSA_PKCS, Mechanism.SHA3_256_RSA_PKCS_PSS, "SHA3_256"),
    (Mechanism.SHA3_384_RSA_PKCS, Mechanism.SHA3_384_RSA_PKCS_PSS, "SHA3_384"),
    (Mechanism.SHA3_512_RSA_PKCS, Mechanism.SHA3_512_RSA_PKCS_PSS, "SHA3_512"),
)


def register(registry: Registry) -> None:
    sizes = {"min_key": OP_MIN, "max_key": OP_MAX, "key_types": KEY_TYPES}
    registry.add(MechanismSpec(
        mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN, flags=F.GENERATE_KEY_PAIR, min_key=KEYGEN_MIN,
        max_key=KEYGEN_MAX, generate_pair=generate_pair, generated_key_types=(KeyType.RSA,)))
    registry.add(MechanismSpec(
        mechanism=Mechanism.RSA_PKCS,
        flags=F.ENCRYPT | F.DECRYPT | F.SIGN | F.SIGN_RECOVER | F.VERIFY | F.VERIFY_RECOVER | F.WRAP | F.UNWRAP,
        **_whole_input_ops(PKCS1_OVERHEAD, rsa_crypto.pkcs1v15_encrypt, rsa_crypto.pkcs1v15_decrypt,
                           rsa_crypto.pkcs1v15_sign_raw, rsa_crypto.pkcs1v15_recover),
        verify=_pkcs_verify,
        wrap=_wrap_with(lambda m, p, v: rsa_crypto.pkcs1v15_encrypt(m, v),
                        lambda m, p: rsa_crypto.modulus_len(m) - PKCS1_OVERHEAD),
        unwrap=_unwrap_with(lambda m, p, w: rsa_crypto.pkcs1v15_decrypt(m, w)), **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.RSA_X_509,
        flags=F.ENCRYPT | F.DECRYPT | F.SIGN | F.SIGN_RECOVER | F.VERIFY | F.VERIFY_RECOVER,
        **_whole_input_ops(0, rsa_crypto.raw_public, rsa_crypto.raw_private, rsa_crypto.raw_private,
                           rsa_crypto.raw_public),
        verify=_x509_verify,
        # Raw RSA: an input not below the modulus is bad data to encrypt, not a bad ciphertext.
        failure_codes={"encrypt": {CryptoFailure: CKR.DATA_INVALID}}, **sizes))
    registry.add(MechanismSpec(
        mechanism=Mechanism.RSA_PKCS_OAEP, flags=F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP,
        param_kind="oaep", validate=validate_oaep, encrypt=_oaep_encrypt, decrypt=_oaep_decrypt,
        wrap=_wrap_with(lambda m, p, v: rsa_crypto.oaep_encrypt(m, v, *_oaep_args(p)), _oaep_limit),
        unwrap=_unwrap_with(lambda m, p, w: rsa_crypto.oaep_decrypt(m, w, *_oaep_args(p))), **sizes))
    sign, verify = _pss_ops(None)
    registry.add(MechanismSpec(
        mechanism=Mechanism.RSA_PKCS_PSS, flags=F.SIGN | F.VERIFY, param_kind="pss", validate=validate_pss,
        sign=sign, verify=verify, **sizes))
    for pkcs_mech, pss_mech, hash_name in HASHED_ROWS:
        sign, verify = _pkcs_hashed_ops(hash_name)
        registry.add(MechanismSpec(mechanism=pkcs_mech, flags=F.SIGN | F.VERIFY, sign=sign, verify=verify, **sizes))
        sign, verify = _pss_ops(hash_name)
        registry.add(MechanismSpec(
            mechanism=pss_mech, flags=F.SIGN | F.VERIFY, param_kind="pss",
            validate=_validate_hashed_pss(hash_name), sign=sign, verify=verify, **sizes))
    registry.add(MechanismSpec(
        mechanism=constants.CKM_RSA_AES_KEY_WRAP, flags=F.WRAP | F.UNWRAP, param_kind="rsa_aes_key_wrap",
        validate=validate_rsa_aes, wrap=_rsa_aes_wrap, prepare_wrap=_rsa_aes_prepare_wrap,
        unwrap=_rsa_aes_unwrap, **sizes))
