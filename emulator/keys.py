"""A key inside the module: material, ACL, and the names nShield gives it (app, ident)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .acl import Acl
from .crypto.material import Material, PrivateMaterial, PublicMaterial, SecretMaterial
from .errors import InvalidKeyMaterial, WorldStateError

PROTECTIONS = ("module", "token")


@dataclass(eq=False)
class Key:
    material: Material | None  # None for non-key objects (certificates, data objects)
    acl: Acl
    app: str = "pkcs11"
    ident: str = ""  # assigned by Module.store_key when empty
    protection: str = "module"  # "module": world key; "token": the token's logical key
    token: str | None = None  # owning token hash; None = the accelerator (module) slot
    appdata: bytes = field(default=b"", repr=False)  # opaque here; authenticated in the blob
    plainname: str = ""
    file_path: Path | None = field(default=None, init=False)  # set once stored or loaded
    # Set by the Module the key passes through: secret keys are hashed under a world key.
    _secret_hasher: Callable[[bytes], str] | None = field(default=None, init=False, repr=False)
    _hash: str = field(default="", init=False, repr=False)
    _anonymous: str = field(default_factory=lambda: os.urandom(20).hex(), init=False, repr=False)

    def __post_init__(self) -> None:
        if self.protection not in PROTECTIONS:
            raise InvalidKeyMaterial(f"protection {self.protection!r} is not 'module' or 'token'")
        if not paths.APP_RE.match(self.app):
            raise InvalidKeyMaterial(f"app name {self.app!r} is not lowercase letters and digits")
        if self.token is not None and not paths.HASH_RE.match(self.token):
            raise InvalidKeyMaterial(f"token hash {self.token!r} is not 40 lowercase hex digits")
        if self.protection == "token" and self.token is None:
            raise InvalidKeyMaterial("a token-protected key needs an owning token")

    @property
    def kind(self) -> str:
        """"secret:AES", "private:RSA", "public:EC", ... or "none" for objects without material."""
        material = self.material
        if material is None:
            return "none"
        if isinstance(material, SecretMaterial):
            return f"secret:{material.kind}"
        if isinstance(material, PrivateMaterial):
            return f"private:{material.kind}"
        return f"public:{material.kind}"

    @property
    def key_hash(self) -> str:
        """40 hex, nShield's key hash (CKA_NFKM_HASH): SHA-1 of the SPKI for asymmetric keys (so a
        pair shares it), of a world-keyed MAC of the value for secrets, of the ident otherwise."""
        if self._hash:
            return self._hash
        material = self.material
        if isinstance(material, PrivateMaterial):
            self._hash = hashlib.sha1(material.public().to_bytes()).hexdigest()
        elif isinstance(material, PublicMaterial):
            self._hash = hashlib.sha1(material.to_bytes()).hexdigest()
        elif isinstance(material, SecretMaterial):
            if self._secret_hasher is None:
                raise WorldStateError("a secret key's hash needs the module: pass the key to it first")
            self._hash = self._secret_hasher(material.value)
        elif self.ident:
            # Not cached: the ident may still be assigned.
            return hashlib.sha1(self.ident.encode("ascii")).hexdigest()
        else:
            return hashlib.sha1(self._anonymous.encode("ascii")).hexdigest()
        return self._hash
