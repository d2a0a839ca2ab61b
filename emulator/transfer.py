"""Key transfer (BYOK): the ACS login, the transfer copy's ACL, the package formats, the checks.

Source module (KeyTransferRemote), all through the PKCS#11 library:
  * `AcsLogin`: the accelerator slot's SO login (C_LoginBegin/Next/End, CKU_SO) is the world's ACS
    quorum, KNSO's authority, which is what lets the vendor tool rewrite an ACL the key itself would
    not let its user widen.
  * C_CopyObject by that SO (pkcs11_shim.management) writes `key_xferacld_<ident>`: the same
    material, an ACL of ONE group {ExportAsBlob} limited to the KEK's hash (`transfer_acl`).
  * C_WrapKey with CKM_RSA_AES_KEY_WRAP under the trusted KEK; the module's ACL check (wrap key
    hash) is the one that counts.
Target module: `parse_package` checks a package; C_UnwrapKey under the KEK imports it.

Package formats (docs/byok.md): the vendor-neutral `.byok` JSON (schema_version 1.0.0 of the
Azure Key Vault BYOK specification) and a legacy-style package of our own.
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
from .blobs import json_object
from .crypto.material import PrivateMaterial, wipe
from .errors import BlobInvalid, KeyNotFound, QuorumNotMet, WorldStateError
from .keys import Key
from .vendor_root import EMULATED

TRANSFER_APP = "xferacld"
SCHEMA_VERSION = "1.0.0"
ENC = "CKM_RSA_AES_KEY_WRAP"
LEGACY_FORMAT = "softshield-legacy-byok"
#: OAEP hash of the RSA part: SHA-1 is what the published BYOK specification says; SHA-256 on request.
OAEP_HASHES = {"SHA-1": "SHA1", "SHA-256": "SHA256"}
AES_BITS = 256
GENERATOR = "softshield keytransfer 0.1.0 (EMULATED); source HSM: softshield emulated nShield module {esn}"


class TransferRefused(WorldStateError):
    """A transfer step is refused; the message says why."""


# --- the ACS quorum ----------------------------------------------------------------------------
def present_acs_quorum(kmdata: Path, presented: Iterable[tuple[Path, bytes]],
                       say: Callable[[str], None] = lambda line: None) -> bytes:
    """KNSO's private key (PKCS#8), opened by a quorum of ACS cards: the authority that lets the
    transfer tool rewrite a key's ACL (worldadmin.open_acs reads the cards)."""
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


#: The cards in the emulated module's slot, in the order the operator inserts them (card file names
#: or paths, separated by os.pathsep); unset, C_LoginNext reads the set's cards in card-number order.
SLOT_ENV = "SOFTSHIELD_CARD_SLOT"


@dataclass
class AcsLogin:
    """The accelerator slot's SO login (C_LoginBegin/Next/End with CKU_SO): the ACS quorum, one card
    per C_LoginNext. nShield's KeyTransferRemote asks for the ACS the same way, card by card; the
    authority it ends with (KNSO) is what lets an SO rewrite a key's ACL for a transfer."""

    kmdata: Path
    k: int
    n: int
    presented: list[tuple[Path, bytes]]
    used: set[int]

    @classmethod
    def begin(cls, kmdata: Path) -> "AcsLogin":
        from . import worldadmin

        world_file = worldadmin.Place.of(kmdata).world_file()
        if world_file is None or world_file.acs is None:
            raise QuorumNotMet("this Security World has no Administrator Card Set (make one with "
                               "`softshield new-world --acs-quorum=K/N`): there is no SO to log in")
        ref = worldadmin.acs_ref(world_file)
        return cls(kmdata, ref.k, ref.n, [], set())

    @property
    def left(self) -> int:
        return self.k - len(self.presented)

    def _slot(self, reader: Any, ref: Any) -> list[Path]:
        import os

        listed = os.environ.get(SLOT_ENV)
        if listed:
            return [reader.resolve(name) for name in listed.split(os.pathsep) if name]
        return [path for path, _card in reader.cards_of(ref.hash)]

    def next(self, pin: bytes) -> int:
        """Read the next card in the slot with `pin` (a wrong PIN counts on that card)."""
        from . import worldadmin

        if self.left <= 0:
            raise QuorumNotMet("the ACS quorum is already complete")
        place = worldadmin.Place.of(self.kmdata)
        ref = worldadmin.acs_ref(place.world_file())
        for path in self._slot(place.reader, ref):
            if path in {p for p, _pin in self.presented}:
                continue
            card, share = place.reader.open_card(path, pin, ref)
            wipe(share[1])  # only the PIN is kept: `end` reads the quorum again
            if card.number in self.used:
                raise QuorumNotMet(f"{path.name}: card {card.number} of ACS `{ref.name}' was already presented")
            self.used.add(card.number)
            self.presented.append((path, pin))
            return self.left
        raise QuorumNotMet(f"ACS `{ref.name}': no further card in the slot ({self.k - self.left} of {self.k} read)")

    def end(self) -> bytes:
        """KNSO's private key (PKCS#8): the quorum's authority."""
        if self.left > 0:
            raise QuorumNotMet(f"ACS needs {self.k} of its {self.n} cards; only {self.k - self.left} presented")
        return present_acs_quorum(self.kmdata, self.presented)


# --- source side ---------------------------------------------------------------------------------
def transfer_acl(kek_hash: str) -> Acl:
    return Acl.allowing({Action.EXPORT_AS_BLOB}, wrap_key_hash=kek_hash)


def is_transfer_acl(acl: Acl, kek_hash: str) -> bool:
    return acl.to_dict() == transfer_acl(kek_hash).to_dict()


def transfer_file_name(ident: str) -> str:
    return paths.key_file(TRANSFER_APP, ident)


def check_transfer_copy(copy: Key, target: VerifiedTarget) -> None:
    """-Package's check before C_WrapKey: the copy is key_xferacld_<ident> reduced for this KEK."""
    name = paths.key_file(copy.app, copy.ident)
    if copy.app != TRANSFER_APP or not is_transfer_acl(copy.acl, target.kek_hash):
        raise TransferRefused(f"{name} is not a copy reduced for this KEK ({target.kek_hash}): "
                              "run `softshield keytransfer -ModifyAcls` with these packages first")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def neutral_package(target: VerifiedTarget, ciphertext: bytes, esn: str, oaep_hash: str = "SHA-1") -> dict[str, Any]:
    """The vendor-neutral .byok JSON (Azure Key Vault BYOK specification). With SHA-256 the header says so in `oaep_hash`, a field
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
    key_kind: str | None = None  # "RSA" / "EC" when the package records it (legacy only)


def parse_package(data: bytes, what: str) -> ImportRequest:
    """Either format; the checks an importer makes before touching a key (BYOK specification, "Key transfer blob")."""
    from .attestation import parse_kid

    doc = json_object(data, f"{what}: not a BYOK package")
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
            kind = str(doc["source"]["kind"]).partition(":")[2] or None
            return ImportRequest(target["hknso"], target["kek_hash"], doc["oaep_hash"], ct, "legacy", kind)
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
