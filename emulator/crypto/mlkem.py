"""ML-KEM (FIPS 203): key generation, encapsulation and decapsulation.

`cryptography` 50 offers ML-KEM-768 and ML-KEM-1024, with private keys in seed form (d || z, 64
bytes, FIPS 203 Algorithm 16). ML-KEM-512 is not offered; callers refuse it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem

from .material import PrivateMaterial, PublicMaterial
from .seeded import ParameterSets, SeededScheme

KIND = "ML-KEM"
#: Parameter set name -> (private class, public class, public key length, ciphertext length).
PARAMETER_SETS: ParameterSets = {
    "ML-KEM-768": (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1184, 1088),
    "ML-KEM-1024": (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568, 1568),
}
#: Parameter sets FIPS 203 defines that this build cannot do.
UNSUPPORTED = frozenset({"ML-KEM-512"})
SEED_LEN = 64
SHARED_SECRET_LEN = 32


_SCHEME = SeededScheme(KIND, PARAMETER_SETS, SEED_LEN)
parameter_set_of = _SCHEME.parameter_set_of
ciphertext_len = _SCHEME.output_len
generate = _SCHEME.generate
from_seed = _SCHEME.from_seed
from_public_bytes = _SCHEME.from_public_bytes
seed_of = _SCHEME.seed_of
public_bytes = _SCHEME.public_bytes


def encapsulate(material: PublicMaterial) -> tuple[bytes, bytes]:
    """(ciphertext, shared secret)."""
    secret, ciphertext = material.key.encapsulate()
    return ciphertext, secret


def decapsulate(material: PrivateMaterial, ciphertext: bytes) -> bytes:
    """The shared secret (FIPS 203 implicit rejection: a bad ciphertext gives a pseudo-random one)."""
    if len(ciphertext) != ciphertext_len(material):
        raise ValueError(f"ciphertext of {len(ciphertext)} bytes")
    return material.key.decapsulate(ciphertext)
