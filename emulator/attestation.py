"""KEK and Security World packages signed by a module, and their verification (verifykeypackage).

The chain, as on nShield's legacy BYOK toolset (KeyTransferRemote and the module's KLF2 warrant), emulated:
    vendor root (vendor_root.py, outside every world)  --signs-->  module warrant (ESN, KLF2)
    module KLF2 (derived from the module key)           --signs-->  KEK package, World package
The KEK package states the KEK's public key, key hash, ACL and the world and module it was made
in; the World package states the world's public facts. Both formats are our own (the vendor's are
not public), JSON, and say EMULATED.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths, vendor_root
from .acl import Acl, Action
from .blobs import json_object
from .crypto import attest
from .errors import BlobInvalid
from .keys import Key
from .vendor_root import EMULATED, AttestationFailed
from .world import ModuleFile, utc_now

KEK_FORMAT = "softshield-byok-kek-package"
WORLD_FORMAT = "softshield-byok-world-package"
#: The only things a KEK may do: unwrap imports (plus the bookkeeping every key has).
KEK_ALLOWED = frozenset({Action.UNWRAP, Action.REDUCE_ACL, Action.GET_APPDATA, Action.DIGEST, Action.DESTROY})
EXPORTING = frozenset({Action.EXPORT_AS_BLOB, Action.EXPORT_PLAIN, Action.DUPLICATE})


def kek_package_name(region: str) -> str:
    return f"BYOK-KEK-pkg-{region}-1"


def world_package_name(region: str) -> str:
    return f"BYOK-SecurityWorld-pkg-{region}-1"


def kid_for(hknso: str, region: str, kek_hash: str) -> str:
    """Key Vault style key id ("https://<vault>/keys/<kek>/<version>"), naming world and KEK hash."""
    return f"https://world-{hknso}.softshield.invalid/keys/BYOK-KEK-{region}/{kek_hash}"


def parse_kid(kid: str) -> tuple[str, str] | None:
    """(hknso, kek hash) from a kid made by kid_for, None for any other form."""
    prefix = "https://world-"
    if not isinstance(kid, str) or not kid.startswith(prefix):
        return None
    host, _, rest = kid[len(prefix):].partition(".softshield.invalid/keys/")
    parts = rest.split("/")
    if not paths.HASH_RE.match(host) or len(parts) != 2 or not paths.HASH_RE.match(parts[1]):
        return None
    return host, parts[1]


# --- the signing side (the target module) ------------------------------------------------------
class ModuleSigner:
    """A module's KLF2 and its factory warrant (issued by the root store on first use, kept in
    `<kmdata>/warrants/<ESN>.json` as nShield keeps warrants beside kmdata)."""

    def __init__(self, kmdata: Path, esn: str) -> None:
        module_file = ModuleFile.from_bytes((paths.local_dir(kmdata) / paths.module_file(esn)).read_bytes(),
                                            paths.module_file(esn))
        self.esn = esn
        self._klf2 = vendor_root.module_signing_key(module_file.module_key, esn)
        klf2_der = self._klf2.public_der
        warrant_path = kmdata / "warrants" / f"{esn}.json"
        warrant = None
        if warrant_path.exists():
            warrant = json.loads(warrant_path.read_text())
            if warrant.get("klf2_public") != base64.b64encode(klf2_der).decode():
                warrant = None  # a warrant for an older module key: the factory issues a new one
        if warrant is None:
            warrant = vendor_root.VendorRoot.open().issue_warrant(esn, klf2_der)
            warrant_path.parent.mkdir(parents=True, exist_ok=True)
            warrant_path.write_bytes(vendor_root.dumps(warrant))
        self.warrant = warrant

    def sign_package(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "warrant": self.warrant, "module_esn": self.esn}
        return {**body, "signature": vendor_root.sign(self._klf2, body)}


def kek_package(signer: ModuleSigner, kek: Key, kek_public_spki: bytes, region: str, hknso: str,
                label: str) -> dict[str, Any]:
    kek_hash = hashlib.sha1(kek_public_spki).hexdigest()
    actions = kek.acl.actions()
    body = {"format": KEK_FORMAT, "version": 1, "emulated": EMULATED, "region": region, "created": utc_now(),
            "kek": {"kid": kid_for(hknso, region, kek_hash), "key_hash": kek_hash, "label": label,
                    "public_key": base64.b64encode(kek_public_spki).decode(),
                    "key_file": paths.key_file(kek.app, kek.ident), "acl": kek.acl.to_dict(),
                    "exportable": bool(actions & EXPORTING),
                    "generated_in": {"hknso": hknso, "esn": signer.esn}}}
    return signer.sign_package(body)


def world_package(signer: ModuleSigner, world_facts: dict[str, Any], region: str) -> dict[str, Any]:
    body = {"format": WORLD_FORMAT, "version": 1, "emulated": EMULATED, "region": region, "created": utc_now(),
            "world": world_facts}
    return signer.sign_package(body)


# --- the verifying side (verifykeypackage) ---------------------------------------------------------
@dataclass(frozen=True)
class VerifiedTarget:
    """What a verified KEK + World package pair promises about the target."""

    region: str
    kid: str
    kek_hash: str
    kek_public_spki: bytes
    hknso: str
    esn: str
    root_hash: str

    def kek_public_pem(self) -> bytes:
        return attest.public_pem(self.kek_public_spki)


def load_package(path: Path, what: str) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BlobInvalid(f"{what} {path}: no such file") from None
    return json_object(data, f"{what} {path}: not a softshield package")


def _check_signed(doc: dict[str, Any], fmt: str, what: str, pinned: str) -> str:
    if doc.get("format") != fmt:
        raise AttestationFailed(f"{what}: not a {fmt} (format {doc.get('format')!r})")
    esn, klf2 = vendor_root.verify_warrant(doc.get("warrant"), pinned)
    if doc.get("module_esn") != esn:
        raise AttestationFailed(f"{what}: signed for module {doc.get('module_esn')}, warrant is for {esn}")
    body = {k: v for k, v in doc.items() if k != "signature"}
    vendor_root.verify(klf2, body, str(doc.get("signature", "")), f"{what} (signed by module {esn})")
    return esn


def verify_packages(kek_doc: dict[str, Any], world_doc: dict[str, Any], pinned: str) -> VerifiedTarget:
    """Every check verifykeypackage makes; AttestationFailed names the first that fails."""
    kek_esn = _check_signed(kek_doc, KEK_FORMAT, "KEK package", pinned)
    world_esn = _check_signed(world_doc, WORLD_FORMAT, "Security World package", pinned)
    try:
        kek = kek_doc["kek"]
        world = world_doc["world"]
        spki = base64.b64decode(kek["public_key"], validate=True)
        knso = base64.b64decode(world["knso_public"], validate=True)
        acl = Acl.from_dict(kek["acl"])
        made_in = kek["generated_in"]
        hknso = world["hknso"]
    except (KeyError, TypeError, ValueError) as exc:
        raise AttestationFailed(f"packages malformed ({exc})") from None
    if hashlib.sha1(knso).hexdigest() != hknso:
        raise AttestationFailed("Security World package: hknso is not the hash of the world's KNSO key")
    if hashlib.sha1(spki).hexdigest() != kek.get("key_hash"):
        raise AttestationFailed("KEK package: key hash is not the hash of the KEK's public key")
    if made_in.get("hknso") != hknso:
        raise AttestationFailed(f"KEK was generated in world {made_in.get('hknso')}, not in the packaged "
                                f"Security World {hknso}")
    if made_in.get("esn") != kek_esn or kek_esn != world_esn:
        raise AttestationFailed(f"KEK was generated in module {made_in.get('esn')}, signed by {kek_esn}; "
                                f"the Security World package is signed by module {world_esn}")
    actions = acl.actions()
    if kek.get("exportable") or actions & EXPORTING:
        raise AttestationFailed("KEK is exportable: its ACL permits "
                                + ", ".join(sorted(a.value for a in actions & EXPORTING)))
    if Action.UNWRAP not in actions or actions - KEK_ALLOWED:
        raise AttestationFailed("KEK is not an import-only key: its ACL permits "
                                + ", ".join(sorted(a.value for a in actions - KEK_ALLOWED)))
    if kek_doc.get("region") != world_doc.get("region"):
        raise AttestationFailed(f"KEK package is for region {kek_doc.get('region')}, Security World package "
                                f"for {world_doc.get('region')}")
    if parse_kid(kek.get("kid", "")) != (hknso, kek["key_hash"]):
        raise AttestationFailed("KEK package: kid does not name this KEK in this world")
    return VerifiedTarget(str(kek_doc.get("region")), kek["kid"], kek["key_hash"], spki, hknso, kek_esn, pinned)


def verify_files(kek_path: Path, world_path: Path, pinned: str) -> VerifiedTarget:
    return verify_packages(load_package(kek_path, "KEK package"),
                           load_package(world_path, "Security World package"), pinned)
