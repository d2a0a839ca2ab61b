"""Key material shared by the mechanism tests, made through the registry's own key generation rows."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.crypto import ec as ec_crypto
from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import Attribute, KeyType, Mechanism
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY


def _pair(mechanism: int, **public_attrs: Any) -> Any:
    attrs = {getattr(Attribute, name): value for name, value in public_attrs.items()}
    return REGISTRY.get(mechanism).generate_pair(None, attrs, {})


@pytest.fixture(scope="session")
def keys() -> dict[str, Any]:
    generic = REGISTRY.get(Mechanism.GENERIC_SECRET_KEY_GEN).generate
    aes = REGISTRY.get(Mechanism.AES_KEY_GEN).generate
    return {
        "aes128": aes(None, KeyType.AES, 16),
        "aes192": aes(None, KeyType.AES, 24),
        "aes256": aes(None, KeyType.AES, 32),
        "des3": REGISTRY.get(Mechanism.DES3_KEY_GEN).generate(None, KeyType.DES3, None),
        "des": REGISTRY.get(constants.CKM_DES_KEY_GEN).generate(None, constants.CKK_DES, None),
        "generic32": generic(None, KeyType.GENERIC_SECRET, 32),
        "generic20": generic(None, KeyType.GENERIC_SECRET, 20),
        "hmac64": generic(None, KeyType.SHA512_HMAC, 64),
        "rsa2048": _pair(Mechanism.RSA_PKCS_KEY_PAIR_GEN, MODULUS_BITS=2048, PUBLIC_EXPONENT=b"\x01\x00\x01"),
        "p256": _pair(Mechanism.EC_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("secp256r1")),
        "p384": _pair(Mechanism.EC_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("secp384r1")),
        "p521": _pair(Mechanism.EC_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("secp521r1")),
        "k256": _pair(Mechanism.EC_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("secp256k1")),
        "ed25519": _pair(Mechanism.EC_EDWARDS_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("Ed25519")),
        # PKCS#11 3.0 also allows the curve name as a PrintableString.
        "ed448": _pair(Mechanism.EC_EDWARDS_KEY_PAIR_GEN, EC_PARAMS=b"\x13\x0aedwards448"),
        "x25519": _pair(constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("X25519")),
        "x448": _pair(constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, EC_PARAMS=b"\x13\x08curve448"),
        "xts64": REGISTRY.get(constants.CKM_AES_XTS_KEY_GEN).generate(None, constants.CKK_AES_XTS, 64),
        # PKCS#11 3.2: CKA_PARAMETER_SET 1 = ML-DSA-44, 2 = ML-KEM-768.
        "mldsa44": _pair(Mechanism.ML_DSA_KEY_PAIR_GEN, PARAMETER_SET=1),
        "mlkem768": _pair(Mechanism.ML_KEM_KEY_PAIR_GEN, PARAMETER_SET=2),
    }


@pytest.fixture(scope="session")
def second_keys() -> dict[str, Any]:
    """The other party of key agreement tests."""
    return {
        "p256": _pair(Mechanism.EC_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("secp256r1")),
        "p384": _pair(Mechanism.EC_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("secp384r1")),
        "x25519": _pair(constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN, EC_PARAMS=ec_crypto.ec_params("X25519")),
    }


def public_of(material: Any) -> Any:
    return material if isinstance(material, SecretMaterial) else material.public()
