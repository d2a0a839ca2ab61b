"""The Security World file and the module file, and the one way to the world key.

`module_<ESN>` holds the module key: on nShield it lives inside the HSM; the emulator keeps it in a
0600 file, which is what makes it an emulator. `world` holds the world's public facts (cipher
suite, hknso, creation time, KNSO's public key) in the clear, and its secrets sealed: the world
key-protection key (KM) under each module's key, KNSO's private key under KM. The public facts are
the AAD of every sealed value, so editing them breaks the world.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import paths
from .blobs import canonical_json
from .crypto import blobcrypt
from .crypto.material import PrivateMaterial
from .errors import BlobInvalid, WorldStateError

WORLD_FORMAT = 1
MODULE_FORMAT = 1
DEFAULT_CIPHER_SUITE = "DLf3072s256mAEScSP800131Ar1"
_KM_LABEL = b"softshield world key"
_KNSO_LABEL = b"softshield knso"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now_ordered() -> str:
    """utc_now with microseconds, for what is listed in creation order (module numbers, card sets):
    two made in the same second must not fall back to the order of their random names."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_esn() -> str:
    digits = os.urandom(6).hex().upper()
    return "-".join(digits[i:i + 4] for i in range(0, 12, 4))


@dataclass(frozen=True)
class ModuleFile:
    esn: str
    created: str
    module_key: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return canonical_json({"format": MODULE_FORMAT, "esn": self.esn, "created": self.created,
                               "module_key": self.module_key.hex()})

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> ModuleFile:
        try:
            doc = json.loads(data)
            if doc["format"] != MODULE_FORMAT or not paths.ESN_RE.match(doc["esn"]):
                raise ValueError("unknown format or bad ESN")
            module_key = bytes.fromhex(doc["module_key"])
            if len(module_key) != blobcrypt.KEY_BYTES:
                raise ValueError("module key is not 32 bytes")
            return cls(doc["esn"], doc["created"], module_key)
        except (ValueError, KeyError, TypeError) as exc:
            raise BlobInvalid(f"{what}: not a module file ({exc})") from None


@dataclass(frozen=True)
class World:
    """The world's public facts."""

    hknso: str
    cipher_suite: str
    created: str
    knso_public: bytes = field(repr=False)

    def facts(self) -> dict[str, Any]:
        return {"format": WORLD_FORMAT, "hknso": self.hknso, "cipher_suite": self.cipher_suite,
                "created": self.created, "knso_public": base64.b64encode(self.knso_public).decode()}


@dataclass(frozen=True)
class WorldFile:
    world: World
    module_shares: dict[str, bytes]  # ESN -> KM sealed under that module's key
    knso_private: bytes  # KNSO PKCS#8 sealed under KM (empty when the ACS protects it: see acs)
    # A world made by `new-world`: the ACS, and KM and KNSO sealed under its logical token
    # (worldadmin.py). None for the default world Module.open makes on first use.
    acs: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        doc = self.world.facts()
        doc["modules"] = {esn: base64.b64encode(v).decode() for esn, v in sorted(self.module_shares.items())}
        doc["knso_private"] = base64.b64encode(self.knso_private).decode()
        if self.acs is not None:
            doc["acs"] = self.acs
        return canonical_json(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> WorldFile:
        try:
            doc = json.loads(data)
            if doc["format"] != WORLD_FORMAT or not paths.HASH_RE.match(doc["hknso"]):
                raise ValueError("unknown format or bad hknso")
            world = World(doc["hknso"], doc["cipher_suite"], doc["created"],
                          base64.b64decode(doc["knso_public"], validate=True))
            shares = {esn: base64.b64decode(v, validate=True) for esn, v in doc["modules"].items()}
            knso = base64.b64decode(doc["knso_private"], validate=True)
            acs = doc.get("acs")
            if acs is not None and not isinstance(acs, dict):
                raise ValueError("acs is not an object")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BlobInvalid(f"world file: unreadable ({exc})") from None
        return cls(world, shares, knso, acs)


def _aad(world: World, esn: str = "") -> bytes:
    return canonical_json(world.facts()) + b"\x00" + esn.encode("ascii")


def create_world(module: ModuleFile, cipher_suite: str = DEFAULT_CIPHER_SUITE) -> tuple[WorldFile, bytes]:
    """A new world whose KM this module can open; returns the file and KM."""
    from .crypto import keygen  # imports the asymmetric key modules: only a new world needs them

    km = blobcrypt.random_key()
    knso = keygen.generate_world_signing_key()
    spki = knso.public().to_bytes()
    world = World(hashlib.sha1(spki).hexdigest(), cipher_suite, utc_now(), spki)
    share = blobcrypt.seal(blobcrypt.derive_subkey(module.module_key, _KM_LABEL, module.esn.encode()),
                           km, _aad(world, module.esn))
    knso_sealed = blobcrypt.seal(blobcrypt.derive_subkey(km, _KNSO_LABEL), knso.to_bytes(), _aad(world))
    return WorldFile(world, {module.esn: share}, knso_sealed), km


def open_world_key(world_file: WorldFile, module: ModuleFile) -> bytes:
    """KM, the world key-protection key: the single place world secrets are opened, so that ACS
    quorum protection can later replace the module-key share here without touching callers."""
    share = world_file.module_shares.get(module.esn)
    if share is None:
        raise WorldStateError(f"module {module.esn} is not enrolled in the world in this kmdata")
    key = blobcrypt.derive_subkey(module.module_key, _KM_LABEL, module.esn.encode())
    return blobcrypt.unseal(key, share, _aad(world_file.world, module.esn), what="world file")


def open_world_signing_key(world_file: WorldFile, km: bytes) -> PrivateMaterial:
    """KNSO's private key, whose SPKI hash is the world's hknso."""
    der = blobcrypt.unseal(blobcrypt.derive_subkey(km, _KNSO_LABEL), world_file.knso_private,
                           _aad(world_file.world), what="world file")
    return PrivateMaterial.from_pkcs8(der, trusted=True)
