"""Key handling shared by the lattice schemes whose private keys travel as a seed (ML-DSA, ML-KEM).

`cryptography` gives each parameter set its own private and public key class, with private keys in
seed form only; everything that maps a parameter set name onto those classes, checks lengths and
reads the raw encodings is the same for FIPS 203 and FIPS 204, so it lives here once and each
scheme's module is its table plus the operations of its own.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidKeyMaterial
from .material import PrivateMaterial, PublicMaterial

#: Parameter set name -> (private class, public class, public key length, output length), where the
#: output is the signature (ML-DSA) or the ciphertext (ML-KEM).
ParameterSets = dict[str, tuple[Any, Any, int, int]]


class SeededScheme:
    """One lattice scheme: its kind name (as `material.kind_of` reports it), its parameter sets and
    the length of its private seed."""

    def __init__(self, kind: str, parameter_sets: ParameterSets, seed_len: int) -> None:
        self.kind = kind
        self.parameter_sets = parameter_sets
        self.seed_len = seed_len

    def parameter_set_of(self, material: PrivateMaterial | PublicMaterial) -> str:
        for name, (private_cls, public_cls, _, _) in self.parameter_sets.items():
            if isinstance(material.key, (private_cls, public_cls)):
                return name
        raise InvalidKeyMaterial(f"not an {self.kind} key")

    def output_len(self, material: PrivateMaterial | PublicMaterial) -> int:
        return self.parameter_sets[self.parameter_set_of(material)][3]

    def _classes(self, parameter_set: str) -> tuple[Any, Any, int, int]:
        try:
            return self.parameter_sets[parameter_set]
        except KeyError:
            raise ValueError(f"{self.kind} parameter set {parameter_set!r} not supported") from None

    def generate(self, parameter_set: str) -> PrivateMaterial:
        return PrivateMaterial(self._classes(parameter_set)[0].generate(), self.kind)

    def from_seed(self, parameter_set: str, seed: bytes) -> PrivateMaterial:
        """KeyGen_internal from the seed (FIPS 204 xi; FIPS 203 d || z)."""
        if len(seed) != self.seed_len:
            raise InvalidKeyMaterial(f"an {self.kind} seed is {self.seed_len} bytes, not {len(seed)}")
        return PrivateMaterial(self._classes(parameter_set)[0].from_seed_bytes(seed), self.kind)

    def from_public_bytes(self, parameter_set: str, value: bytes) -> PublicMaterial:
        _, public_cls, length, _ = self._classes(parameter_set)
        if len(value) != length:
            raise InvalidKeyMaterial(f"an {parameter_set} public key is {length} bytes, not {len(value)}")
        try:
            return PublicMaterial(public_cls.from_public_bytes(value), self.kind)
        except ValueError as exc:
            raise InvalidKeyMaterial(str(exc)) from None

    @staticmethod
    def seed_of(material: PrivateMaterial) -> bytes:
        return material.key.private_bytes_raw()

    @staticmethod
    def public_key(material: PrivateMaterial | PublicMaterial) -> Any:
        return material.key.public_key() if isinstance(material, PrivateMaterial) else material.key

    def public_bytes(self, material: PrivateMaterial | PublicMaterial) -> bytes:
        return self.public_key(material).public_bytes_raw()
