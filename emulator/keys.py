"""A key inside the module: material, ACL, and the names nShield gives it (app, ident)."""

from __future__ import annotations

import hashlib
import os
import threading
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
    #: Whether its blob carries a recovery blob (recovery.py); None for a key not yet stored, whose
    #: blob gets one when the world has a recovery key and the process's policy asks for it.
    recoverable: bool | None = field(default=None, init=False, repr=False)
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

    @classmethod
    def trusted(cls, material: Material | None, acl: Acl, *, app: str, ident: str, protection: str,
                token: str | None, appdata: bytes, plainname: str = "", file_path: Path | None = None) -> Key:
        """A Key whose fields the module itself produced or authenticated (a blob it verified, an
        index it sealed, a key it just made): no re-validation of names it already checked, no
        random anonymous id unless the key could need one. About 4x cheaper than the constructor
        on the paths that build thousands of keys (login) or one per call (unwrap)."""
        key = cls.__new__(cls)
        key.__dict__.update(material=material, acl=acl, app=app, ident=ident, protection=protection, token=token,
                            appdata=appdata, plainname=plainname, file_path=file_path, _secret_hasher=None,
                            _hash="", _anonymous="" if ident or material is not None else os.urandom(20).hex())
        return key

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


#: Serialises first loads of IndexedKey material (an RSA key must be parsed once, not per thread).
_MATERIAL_LOCK = threading.Lock()


class IndexedKey(Key):
    """A stored key known from the module's sealed per-owner index (see keylisting.KeyListing.load_keys):
    its header fields (ACL, appdata, kind, names) now, its material read from the blob, verified
    and decrypted the first time it is used. `_loader` returns the material or raises BlobInvalid
    (the file changed or was rolled back since it was indexed)."""

    @classmethod
    def listed(cls, kind: str, loader: Callable[[], Material | None], acl: Acl, *, app: str, ident: str,
               protection: str, token: str | None, appdata: bytes, plainname: str, folder: Path,
               file_name: str, secret_hasher: Callable[[bytes], str]) -> IndexedKey:
        key = cls.trusted(None, acl, app=app, ident=ident, protection=protection, token=token, appdata=appdata,
                          plainname=plainname)
        # The path object is made when asked for: building 10,000 of them was a tenth of a login.
        key.__dict__.update(_kind=kind, _loader=loader, _folder=folder, _file_name=file_name,
                            _secret_hasher=secret_hasher)
        del key.__dict__["file_path"]
        return key  # type: ignore[return-value]

    @property  # type: ignore[override]
    def file_path(self) -> Path | None:
        state = self.__dict__
        if "_file_path" not in state:
            state["_file_path"] = state["_folder"] / state["_file_name"]
        return state["_file_path"]

    @file_path.setter
    def file_path(self, value: Path | None) -> None:
        self.__dict__["_file_path"] = value

    @property  # type: ignore[override]
    def material(self) -> Material | None:
        state = self.__dict__
        if state.get("_loader") is not None:
            with _MATERIAL_LOCK:
                loader = state.get("_loader")
                if loader is not None:
                    state["_material"] = loader()
                    state["_loader"] = None
        return state.get("_material")

    @material.setter
    def material(self, value: Material | None) -> None:
        self.__dict__.update(_material=value, _loader=None)

    @property
    def material_loaded(self) -> bool:
        return self.__dict__.get("_loader") is None

    @property
    def kind(self) -> str:
        if self.material_loaded:
            return super().kind
        return self.__dict__["_kind"]
