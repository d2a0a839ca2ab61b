"""Key transfer (BYOK): the reduced-ACL copy, the transfer package, and the import on the target.

Source module (KeyTransferRemote, nshield-workflow.md §4):
  * `make_transfer_copy`: with the ACS quorum's authority (KNSO's "trump" permission, which is what
    lets the vendor tool rewrite an ACL the key itself would not let its user widen), write
    `key_xferacld_<ident>`: the same material, an ACL of ONE group {ExportAsBlob} limited to the KEK's
    hash. The copy can do nothing but be wrapped by that KEK.
  * `wrap_for_transfer`: the module wraps the copy with CKM_RSA_AES_KEY_WRAP under the KEK; the ACL
    check (module.use with wrap_key_hash) is the one that counts.
Target module: `unwrap_import` opens the package under the KEK (module.use(kek, UnwrapKey)).

Package formats (README "BYOK"): the vendor-neutral `.byok` JSON (schema_version 1.0.0, S4) and a
legacy-style package of our own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import paths
from .acl import Acl, Action
from .attestation import VerifiedTarget
from .blobs import canonical_json
from .crypto import keywrap
from .crypto.material import PrivateMaterial, PublicMaterial, SecretMaterial
from .errors import (AclDenied, BlobInvalid, CryptoFailure, InvalidKeyMaterial, KeyNotFound, QuorumNotMet,
                     WorldStateError)
from .keys import Key
from .vendor_root import EMULATED

TRANSFER_APP = "xferacld"
SCHEMA_VERSION = "1.0.0"
ENC = "CKM_RSA_AES_KEY_WRAP"
LEGACY_FORMAT = "softshield-legacy-byok"
#: OAEP hash of the RSA part: SHA-1 is what the published spec says (S4); SHA-256 on request.
OAEP_HASHES = {"SHA-1": "SHA1", "SHA-256": "SHA256"}
AES_BITS = 256
GENERATOR = "softshield keytransfer 0.1.0 (EMULATED); source HSM: softshield emulated nShield module {esn}"


class TransferRefused(WorldStateError):
    """A transfer step is refused; the message says why."""


# --- the ACS quorum ----------------------------------------------------------------------------
def present_acs_quorum(kmdata: Path, presented: Iterable[tuple[Path, bytes]],
                       say: Callable[[str], None] = lambda line: None) -> bytes:
    """KNSO's private key (PKCS#8), opened by a quorum of ACS cards: the authority that lets the
    transfer tool rewrite a key's ACL. Uses issue 3's worldadmin.open_acs."""
    from . import worldadmin

    presented = list(presented)
    place = worldadmin.Place.of(kmdata)
    world_file = place.world_file()
    if world_file is None or world_file.acs is None:
        raise QuorumNotMet("this Security World has no Administrator Card Set (make one with "
                           "`softshield new-world --acs-quorum=K/N`): no quorum can authorise the transfer")
    if not presented:
        ref = worldadmin.acs_ref(world_file)
        raise QuorumNotMet(f"ACS `{ref.name}' needs {ref.k} of its {ref.n} cards; none presented (--pin-file)")
    _world, _km, knso = worldadmin.open_acs(place, presented, say)
    return knso


# --- source side ---------------------------------------------------------------------------------
def transfer_acl(kek_hash: str) -> Acl:
    return Acl.allowing({Action.EXPORT_AS_BLOB}, wrap_key_hash=kek_hash)


def is_transfer_acl(acl: Acl, kek_hash: str) -> bool:
    return acl.to_dict() == transfer_acl(kek_hash).to_dict()


def transfer_file_name(ident: str) -> str:
    return paths.key_file(TRANSFER_APP, ident)


def make_transfer_copy(module: Any, source: Key, target: VerifiedTarget, acs_authority: bytes,
                       appdata: bytes = b"") -> Key:
    """key_xferacld_<ident>: the reduced copy. `acs_authority` is present_acs_quorum's result;
    `appdata` the copy's application view (the PKCS#11 attributes, which the caller computes)."""
    if not acs_authority:
        raise QuorumNotMet("the ACS quorum was not presented")
    name = paths.key_file(source.app, source.ident)
    if source.app == TRANSFER_APP:
        raise TransferRefused(f"{name} is already a transfer copy")
    if source.protection != "module":
        raise TransferRefused(f"{name} is {source.protection}-protected: only module-protected keys can be "
                              "transferred (as with nShield's BYOK tool)")
    if not isinstance(source.material, (PrivateMaterial, SecretMaterial)):
        raise TransferRefused(f"{name} holds no private or secret key")
    copy = Key(source.material, transfer_acl(target.kek_hash), app=TRANSFER_APP, ident=source.ident,
               plainname=source.plainname, appdata=appdata)
    module.store_key(copy)
    return copy


def _wrappable(material: Any) -> bytes:
    if isinstance(material, SecretMaterial):
        return material.value
    if isinstance(material, PrivateMaterial):
        return material.to_bytes()  # PKCS#8 DER: what S4 names for RSA and EC targets
    raise InvalidKeyMaterial("only private and secret keys can be transferred")


def wrap_for_transfer(module: Any, copy: Key, target: VerifiedTarget, oaep_hash: str = "SHA-1") -> bytes:
    """CKM_RSA_AES_KEY_WRAP of the reduced copy under the KEK, inside the module."""
    name = paths.key_file(copy.app, copy.ident)
    if copy.app != TRANSFER_APP or not is_transfer_acl(copy.acl, target.kek_hash):
        raise TransferRefused(f"{name} is not a copy reduced for this KEK ({target.kek_hash}): "
                              "run `softshield keytransfer -ModifyAcls` with these packages first")
    if oaep_hash not in OAEP_HASHES:
        raise TransferRefused(f"OAEP hash {oaep_hash} is not one of {', '.join(OAEP_HASHES)}")
    kek = PublicMaterial.from_spki(target.kek_public_spki)
    try:
        material = module.use(copy, Action.EXPORT_AS_BLOB, wrap_key_hash=target.kek_hash)
    except AclDenied as exc:
        raise TransferRefused(str(exc)) from None
    h = OAEP_HASHES[oaep_hash]
    return keywrap.rsa_aes_wrap(kek, AES_BITS, h, h, b"", _wrappable(material))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def neutral_package(target: VerifiedTarget, ciphertext: bytes, esn: str, oaep_hash: str = "SHA-1") -> dict[str, Any]:
    """The vendor-neutral .byok JSON (S4). With SHA-256 the header says so in `oaep_hash`, a field
    of ours: the published format knows only SHA-1, so a SHA-1 file carries no extra field."""
    header: dict[str, Any] = {"kid": target.kid, "alg": "dir", "enc": ENC}
    if oaep_hash != "SHA-1":
        header["oaep_hash"] = oaep_hash
    return {"schema_version": SCHEMA_VERSION, "header": header, "ciphertext": _b64url(ciphertext),
            "generator": GENERATOR.format(esn=esn)}


def legacy_package(target: VerifiedTarget, ciphertext: bytes, copy: Key, source_hknso: str, esn: str,
                   subscription: str, friendly: str, oaep_hash: str = "SHA-1") -> dict[str, Any]:
    """Our legacy-style package (old KeyTransferRemote flow): the same ciphertext plus what the
    vendor's tool recorded: target world and KEK, subscription, name, and the reduced ACL."""
    return {"format": LEGACY_FORMAT, "version": 1, "emulated": EMULATED, "subscription_id": subscription,
            "key_friendly_name": friendly, "target": {"hknso": target.hknso, "kek_hash": target.kek_hash,
                                                      "kid": target.kid, "region": target.region},
            "source": {"hknso": source_hknso, "esn": esn, "key_file": paths.key_file(copy.app, copy.ident),
                       "kind": copy.kind, "acl": copy.acl.to_dict()},
            "mechanism": ENC, "oaep_hash": oaep_hash, "aes_key_bits": AES_BITS,
            "wrapped_key": base64.b64encode(ciphertext).decode(),
            "wrapped_key_sha256": hashlib.sha256(ciphertext).hexdigest()}


# --- target side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportRequest:
    hknso: str
    kek_hash: str
    oaep_hash: str
    ciphertext: bytes
    kind: str  # "legacy" or "neutral"


def parse_package(data: bytes, what: str) -> ImportRequest:
    """Either format; the checks an importer makes before touching a key (S4 §5)."""
    from .attestation import parse_kid

    try:
        doc = json.loads(data)
    except ValueError:
        raise BlobInvalid(f"{what}: not a BYOK package (not JSON)") from None
    if not isinstance(doc, dict):
        raise BlobInvalid(f"{what}: not a BYOK package")
    try:
        if doc.get("format") == LEGACY_FORMAT:
            target = doc["target"]
            ct = base64.b64decode(doc["wrapped_key"], validate=True)
            if hashlib.sha256(ct).hexdigest() != doc["wrapped_key_sha256"]:
                raise BlobInvalid(f"{what}: wrapped key does not match its recorded hash (damaged)")
            if not is_transfer_acl(Acl.from_dict(doc["source"]["acl"]), target["kek_hash"]):
                raise BlobInvalid(f"{what}: the source key was not reduced for this KEK (no -ModifyAcls)")
            if doc["mechanism"] != ENC:
                raise BlobInvalid(f"{what}: mechanism {doc['mechanism']} is not {ENC}")
            return ImportRequest(target["hknso"], target["kek_hash"], doc["oaep_hash"], ct, "legacy")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise BlobInvalid(f"{what}: schema_version {doc.get('schema_version')!r} is not {SCHEMA_VERSION}")
        header = doc["header"]
        if header.get("enc") != ENC or header.get("alg") != "dir":
            raise BlobInvalid(f"{what}: header alg/enc {header.get('alg')}/{header.get('enc')} is not dir/{ENC}")
        parsed = parse_kid(header.get("kid", ""))
        if parsed is None:
            raise BlobInvalid(f"{what}: kid {header.get('kid')!r} names no softshield KEK")
        return ImportRequest(parsed[0], parsed[1], header.get("oaep_hash", "SHA-1"), _unb64url(doc["ciphertext"]),
                             "neutral")
    except (KeyError, TypeError, ValueError) as exc:
        raise BlobInvalid(f"{what}: malformed BYOK package ({type(exc).__name__}: {exc})") from None


def unwrap_import(module: Any, kek: Key, request: ImportRequest) -> PrivateMaterial:
    """The target key's material, unwrapped inside the module under the KEK."""
    if request.hknso != module.world.hknso:
        raise TransferRefused(f"package is for Security World {request.hknso}, this world is {module.world.hknso}")
    if kek.key_hash != request.kek_hash:
        raise TransferRefused(f"package is for KEK {request.kek_hash}, not KEK {kek.key_hash}")
    if request.oaep_hash not in OAEP_HASHES:
        raise TransferRefused(f"OAEP hash {request.oaep_hash} is not one of {', '.join(OAEP_HASHES)}")
    material = module.use(kek, Action.UNWRAP)
    h = OAEP_HASHES[request.oaep_hash]
    try:
        plain = keywrap.rsa_aes_unwrap(material, h, h, b"", request.ciphertext)
    except (CryptoFailure, ValueError) as exc:
        raise TransferRefused(f"unwrap under KEK {kek.key_hash} failed ({exc or 'integrity check'}): the package "
                              "was not made for this KEK, or it was damaged") from None
    try:
        return PrivateMaterial.from_pkcs8(plain)
    except (InvalidKeyMaterial, ValueError) as exc:
        raise TransferRefused(f"the unwrapped key is not a PKCS#8 private key ({exc})") from None


def find_kek(module: Any, kek_hash: str) -> Key:
    """The KEK's private half on the accelerator slot, by key hash."""
    keys, _ = module.load_keys(None)
    for key in keys:
        if isinstance(key.material, PrivateMaterial) and key.key_hash == kek_hash:
            return key
    raise KeyNotFound(f"no Key Exchange Key with hash {kek_hash} in this world: the package was made for "
                      "another KEK or another world")


def read_key_file(module: Any, app: str, ident: str) -> Key:
    path = module.local / paths.key_file(app, ident)
    if not path.exists():
        raise KeyNotFound(f"no {path.name} in {module.local}")
    return module.load_key_file(path)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")
