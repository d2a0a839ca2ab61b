"""ML-KEM (FIPS 203): key generation, encapsulation and decapsulation.

`cryptography` 50 offers ML-KEM-768 and ML-KEM-1024, with private keys in seed form (d || z, 64
bytes, FIPS 203 Algorithm 16). ML-KEM-512 is not offered; callers refuse it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem

from ..errors import InvalidKeyMaterial
from .material import PrivateMaterial, PublicMaterial

KIND = "ML-KEM"
#: Parameter set name -> (private class, public class, public key length, ciphertext length).
PARAMETER_SETS = {
    "ML-KEM-768": (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1184, 1088),
    "ML-KEM-1024": (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568, 1568),
}
#: Parameter sets FIPS 203 defines that this build cannot do.
UNSUPPORTED = frozenset({"ML-KEM-512"})
SEED_LEN = 64
SHARED_SECRET_LEN = 32


def parameter_set_of(material: PrivateMaterial | PublicMaterial) -> str:
    for name, (private_cls, public_cls, _, _) in PARAMETER_SETS.items():
        if isinstance(material.key, (private_cls, public_cls)):
            return name
    raise InvalidKeyMaterial("not an ML-KEM key")


def ciphertext_len(material: PrivateMaterial | PublicMaterial) -> int:
    return PARAMETER_SETS[parameter_set_of(material)][3]


def _classes(parameter_set: str) -> tuple:
    try:
        return PARAMETER_SETS[parameter_set]
    except KeyError:
        raise ValueError(f"ML-KEM parameter set {parameter_set!r} not supported") from None


def generate(parameter_set: str) -> PrivateMaterial:
    return PrivateMaterial(_classes(parameter_set)[0].generate(), KIND)


def from_seed(parameter_set: str, seed: bytes) -> PrivateMaterial:
    """FIPS 203 ML-KEM.KeyGen_internal(d, z) from the 64-byte seed d || z."""
    if len(seed) != SEED_LEN:
        raise InvalidKeyMaterial(f"an ML-KEM seed is {SEED_LEN} bytes, not {len(seed)}")
    return PrivateMaterial(_classes(parameter_set)[0].from_seed_bytes(seed), KIND)


def from_public_bytes(parameter_set: str, value: bytes) -> PublicMaterial:
    _, public_cls, length, _ = _classes(parameter_set)
    if len(value) != length:
        raise InvalidKeyMaterial(f"an {parameter_set} public key is {length} bytes, not {len(value)}")
    try:
        return PublicMaterial(public_cls.from_public_bytes(value), KIND)
    except ValueError as exc:
        raise InvalidKeyMaterial(str(exc)) from None


def seed_of(material: PrivateMaterial) -> bytes:
    return material.key.private_bytes_raw()


def public_bytes(material: PrivateMaterial | PublicMaterial) -> bytes:
    key = material.key.public_key() if isinstance(material, PrivateMaterial) else material.key
    return key.public_bytes_raw()


def encapsulate(material: PublicMaterial) -> tuple[bytes, bytes]:
    """(ciphertext, shared secret)."""
    secret, ciphertext = material.key.encapsulate()
    return ciphertext, secret


def decapsulate(material: PrivateMaterial, ciphertext: bytes) -> bytes:
    """The shared secret (FIPS 203 implicit rejection: a bad ciphertext gives a pseudo-random one)."""
    if len(ciphertext) != ciphertext_len(material):
        raise ValueError(f"ciphertext of {len(ciphertext)} bytes")
    return material.key.decapsulate(ciphertext)
