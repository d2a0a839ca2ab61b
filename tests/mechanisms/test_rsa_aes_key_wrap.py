"""CKM_RSA_AES_KEY_WRAP checked independently with plain `cryptography` (PKCS#11 3.0 §2.1.21):
output = OAEP(temporary AES key) || KWP(target), split at the modulus length; private keys as PKCS#8.
The reverse direction builds a blob the way an importer (e.g. a cloud KMS import job) does and
unwraps it through the registry."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from emulator.crypto.material import PrivateMaterial, SecretMaterial
from pkcs11_shim.constants import CKR, MGF, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY

HASHES = {Mechanism.SHA_1: hashes.SHA1, Mechanism.SHA256: hashes.SHA256, Mechanism.SHA384: hashes.SHA384,
          Mechanism.SHA512: hashes.SHA512}
MGF_HASHES = {MGF.SHA1: hashes.SHA1, MGF.SHA256: hashes.SHA256, MGF.SHA384: hashes.SHA384, MGF.SHA512: hashes.SHA512}

PARAMS = [
    params.RsaAesKeyWrapParams(256, params.OaepParams(Mechanism.SHA256, MGF.SHA256, constants.CKZ_DATA_SPECIFIED, b"")),
    params.RsaAesKeyWrapParams(128, params.OaepParams(Mechanism.SHA_1, MGF.SHA1, constants.CKZ_DATA_SPECIFIED, b"")),
    params.RsaAesKeyWrapParams(192, params.OaepParams(Mechanism.SHA384, MGF.SHA1, constants.CKZ_DATA_SPECIFIED,
                                                      b"label")),
    params.RsaAesKeyWrapParams(256, params.OaepParams(Mechanism.SHA512, MGF.SHA512, constants.CKZ_DATA_SPECIFIED, b"")),
]
SPEC = REGISTRY.get(constants.CKM_RSA_AES_KEY_WRAP)


def _oaep(param: params.RsaAesKeyWrapParams) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(MGF_HASHES[param.oaep.mgf]()), algorithm=HASHES[param.oaep.hash_alg](),
                        label=param.oaep.source_data or None)


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: f"aes{p.aes_key_bits}-{p.oaep.hash_alg:x}")
@pytest.mark.parametrize("target_name", ["aes256", "generic20", "p384", "rsa2048", "ed25519"])
def test_wrap_checked_by_cryptography(param: params.RsaAesKeyWrapParams, target_name: str, keys: dict) -> None:
    SPEC.validate(param)
    rsa = keys["rsa2048"]
    target = keys[target_name]
    wrapped = SPEC.wrap(rsa.public(), param, target)
    k = rsa.key.key_size // 8
    temporary = rsa.key.decrypt(wrapped[:k], _oaep(param))
    assert len(temporary) == param.aes_key_bits // 8
    plain = keywrap.aes_key_unwrap_with_padding(temporary, wrapped[k:])
    if isinstance(target, SecretMaterial):
        assert plain == target.value
    else:
        assert plain == target.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
    # A fresh temporary key every time.
    assert SPEC.wrap(rsa.public(), param, target)[:k] != wrapped[:k]


@pytest.mark.parametrize("param", PARAMS[:2], ids=["sha256", "sha1"])
def test_unwrap_of_a_blob_built_by_cryptography(param: params.RsaAesKeyWrapParams, keys: dict) -> None:
    rsa = keys["rsa2048"]
    temporary = os.urandom(param.aes_key_bits // 8)
    secret = os.urandom(32)
    blob = rsa.key.public_key().encrypt(temporary, _oaep(param)) + keywrap.aes_key_wrap_with_padding(temporary, secret)
    unwrapped = SPEC.unwrap(rsa, param, blob, "AES", None)
    assert (unwrapped.kind, unwrapped.value) == ("AES", secret)
    pkcs8 = keys["p256"].to_bytes()
    blob = rsa.key.public_key().encrypt(temporary, _oaep(param)) + keywrap.aes_key_wrap_with_padding(temporary, pkcs8)
    unwrapped = SPEC.unwrap(rsa, param, blob, "EC", None)
    assert isinstance(unwrapped, PrivateMaterial) and unwrapped.to_bytes() == pkcs8


def test_unwrap_errors(keys: dict) -> None:
    rsa = keys["rsa2048"]
    param = PARAMS[0]
    wrapped = SPEC.wrap(rsa.public(), param, keys["aes256"])
    cases = [
        (wrapped[:256], CKR.WRAPPED_KEY_LEN_RANGE),  # no KWP part
        (wrapped[:256 + 8], CKR.WRAPPED_KEY_LEN_RANGE),
        (wrapped[:-1], CKR.WRAPPED_KEY_LEN_RANGE),
        (wrapped[:-1] + bytes([wrapped[-1] ^ 1]), CKR.WRAPPED_KEY_INVALID),  # KWP integrity
        (bytes([wrapped[0] ^ 1]) + wrapped[1:], CKR.WRAPPED_KEY_INVALID),  # OAEP part
    ]
    for blob, code in cases:
        with pytest.raises(PKCS11Error) as err:
            SPEC.unwrap(rsa, param, blob, "AES", None)
        assert err.value.rv == code
    other_label = params.RsaAesKeyWrapParams(256, params.OaepParams(Mechanism.SHA256, MGF.SHA256, 1, b"x"))
    with pytest.raises(PKCS11Error) as err:
        SPEC.unwrap(rsa, other_label, wrapped, "AES", None)
    assert err.value.rv == CKR.WRAPPED_KEY_INVALID


def test_single_part_and_key_checks(keys: dict) -> None:
    # Wrap/unwrap only (no encrypt/decrypt), and it cannot wrap a public key.
    assert SPEC.encrypt is None and SPEC.decrypt is None
    with pytest.raises(PKCS11Error) as err:
        SPEC.wrap(keys["rsa2048"].public(), PARAMS[0], keys["p256"].public())
    assert err.value.rv == CKR.KEY_NOT_WRAPPABLE
    with pytest.raises(PKCS11Error) as err:
        SPEC.unwrap(keys["rsa2048"].public(), PARAMS[0], bytes(300), "AES", None)
    assert err.value.rv == CKR.KEY_TYPE_INCONSISTENT
