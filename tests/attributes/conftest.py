"""Key material shared by the attribute tests (made once per session: RSA generation is slow)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import (
    ec,
    ed448,
    ed25519,
    rsa,
    x448,
    x25519,
)

from emulator.crypto.material import PrivateMaterial

CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1,
          "secp256k1": ec.SECP256K1}
RAW = {"Ed25519": ed25519.Ed25519PrivateKey, "Ed448": ed448.Ed448PrivateKey,
       "X25519": x25519.X25519PrivateKey, "X448": x448.X448PrivateKey}


@pytest.fixture(scope="session")
def rsa_key() -> PrivateMaterial:
    return PrivateMaterial(rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="session")
def ec_keys() -> dict[str, PrivateMaterial]:
    return {name: PrivateMaterial(ec.generate_private_key(curve())) for name, curve in CURVES.items()}


@pytest.fixture(scope="session")
def raw_keys() -> dict[str, PrivateMaterial]:
    return {kind: PrivateMaterial(cls.generate(), kind) for kind, cls in RAW.items()}
