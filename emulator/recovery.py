"""Key recovery: nShield's recovery keys (KRE/KRA) and `rocs`.

A world made by `new-world` has a recovery key pair (file `world_recovery`): its public half
(KRE) in the clear, authenticated by a MAC under a key of the world key KM (so a module only ever
encrypts to the world's own KRE); its private half (KRA) sealed under a key derived from KNSO's
private key, which only the ACS quorum opens. A key made with recovery (generatekey recovery=yes,
the default) carries, in its blob's authenticated header, its material encrypted to KRE: when its
card set is lost, the ACS quorum recovers it into another card set (`softshield rocs --recover`).
A key made with recovery=no carries none, and no quorum can bring it back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import blobs, paths
from .crypto import blobcrypt
from .errors import BlobInvalid, CryptoFailure, WorldStateError
from .kmdata import KmStore

RECOVERY_FILE = "world_recovery"
FORMAT = "softshield-world-recovery"
#: Where a process says whether the keys it makes are recoverable (generatekey recovery=yes|no sets
#: it for the library it loads): "no" makes keys without a recovery blob; anything else, with one.
POLICY_ENV = "SOFTSHIELD_KEY_RECOVERY"


def _mac_key(km: bytes) -> bytes:
    return blobcrypt.derive_subkey(km, b"softshield world recovery key")


def _kra_key(knso_der: bytes) -> bytes:
    return blobcrypt.derive_subkey(hashlib.sha256(knso_der).digest(), b"softshield kra")


def _body(doc: dict[str, Any]) -> bytes:
    return blobs.canonical_json({k: v for k, v in doc.items() if k != "mac"})


def create(store: KmStore, hknso: str, km: bytes, knso_der: bytes) -> None:
    """Write the world's recovery key pair (new-world --initialize, under the writer lock)."""
    from .crypto import escrow  # RSA and x509: loaded only where a recovery blob is made or opened

    private, public = escrow.new_recovery_key()
    doc = {"format": FORMAT, "version": 1, "hknso": hknso, "kre_public": base64.b64encode(public).decode(),
           "kra_sealed": base64.b64encode(blobcrypt.seal(_kra_key(knso_der), private, hknso.encode())).decode()}
    doc["mac"] = base64.b64encode(blobcrypt.mac(_mac_key(km), _body(doc))).decode()
    store.write(RECOVERY_FILE, (json.dumps(doc, indent=1) + "\n").encode())


def _read(store: KmStore, hknso: str) -> dict[str, Any] | None:
    if not store.exists(RECOVERY_FILE):
        return None
    try:
        doc = json.loads(store.read(RECOVERY_FILE))
        if doc.get("format") != FORMAT or doc.get("hknso") != hknso:
            raise ValueError("not this world's recovery key")
        return doc
    except (ValueError, AttributeError) as exc:
        raise BlobInvalid(f"{RECOVERY_FILE}: {exc}") from None


@dataclass(frozen=True)
class RecoveryPublic:
    """KRE, authenticated under KM: what a module encrypts recovery blobs to."""

    spki: bytes

    @classmethod
    def of(cls, store: KmStore, hknso: str, km: bytes) -> "RecoveryPublic | None":
        doc = _read(store, hknso)
        if doc is None:
            return None
        try:
            tag = base64.b64decode(doc["mac"], validate=True)
        except (KeyError, ValueError):
            tag = b""
        if not blobcrypt.mac_matches(_mac_key(km), _body(doc), tag):
            raise BlobInvalid(f"{RECOVERY_FILE}: does not authenticate under the world key (edited)")
        return cls(base64.b64decode(doc["kre_public"]))


def enabled_for_new_keys() -> bool:
    return os.environ.get(POLICY_ENV, "yes").strip().lower() != "no"


def _aad(hknso: str, app: str, ident_owner: str, kind: str) -> bytes:
    # Bound to the world, app and kind; not to the ident or token, which recovery changes.
    return b"softshield recovery blob\x00" + "\x00".join((hknso, app, ident_owner, kind)).encode()


def recovery_blob(kre: RecoveryPublic, hknso: str, app: str, kind: str, material: bytes | bytearray) -> str:
    from .crypto import escrow

    return base64.b64encode(escrow.recovery_encrypt(kre.spki, bytes(material), _aad(hknso, app, "", kind))).decode()


def open_kra(store: KmStore, hknso: str, knso_der: bytes) -> bytes:
    """KRA's PKCS#8, opened with KNSO (the ACS quorum's authority)."""
    doc = _read(store, hknso)
    if doc is None:
        raise WorldStateError("this Security World has no recovery key: its keys cannot be recovered")
    return blobcrypt.unseal(_kra_key(knso_der), base64.b64decode(doc["kra_sealed"]), hknso.encode(),
                            what=RECOVERY_FILE)


def recover_material(kra: bytes, raw: blobs.RawBlob, hknso: str, what: str) -> bytes:
    """The material in a blob's recovery section (CryptoFailure if none or not this world's)."""
    from .crypto import escrow

    h = raw.header
    if not h.recovery:
        raise CryptoFailure(f"{what}: no recovery blob (made with recovery=no)")
    return escrow.recovery_decrypt(kra, base64.b64decode(h.recovery), _aad(hknso, h.app, "", h.kind), what)


def recovery_of(path: Path) -> bool:
    """Whether the key file carries a recovery blob (from its header, before authentication)."""
    data = path.read_bytes()
    return bool(blobs.parse(data, path.name).header.recovery)


@dataclass(frozen=True)
class Outcome:
    old: str  # key file name before
    new: str | None  # key file name after, None when not recovered
    reason: str = ""


def _new_ident(app: str, ident: str, new_token: str) -> str:
    """A pkcs11 ident names its owner (uc<owner>-<id>): a recovered key's names its new one."""
    match = paths.TOKEN_IDENT_RE.match(ident) if app == "pkcs11" else None
    return f"uc{new_token}-{ident.split('-', 1)[1]}" if match else ident


def recover_token_keys(module: Any, knso_der: bytes, old_token: str, new_auth: Any) -> list[Outcome]:
    """rocs: every object of `old_token` that carries a recovery blob is written again, protected by
    the token `new_auth` logged in to (with a recovery blob of its own); the others are listed with
    why they stay behind. Needs KNSO (the ACS quorum) to open KRA."""
    from .acl import Acl
    from .keys import Key

    store: KmStore = module._store
    hknso = module.world.hknso
    kra = open_kra(store, hknso, knso_der)
    outcomes = []
    for name in sorted(store.names(paths.KEY_PREFIX)):
        raw = blobs.parse(store.read(name), name)
        h = raw.header
        if h.token != old_token:
            continue
        try:
            plain = bytearray(recover_material(kra, raw, hknso, name))
        except CryptoFailure as exc:
            outcomes.append(Outcome(name, None, str(exc).split(": ", 1)[1]))
            continue
        material = blobs._material(h.kind, plain)
        ident = _new_ident(h.app, h.ident, new_auth.token)
        key = Key(material, Acl.from_dict(h.acl), app=h.app, ident=ident, protection="token", token=new_auth.token,
                  appdata=base64.b64decode(h.appdata), plainname=h.plainname)
        key.recoverable = True
        module.store_key(key, new_auth)
        new_name = paths.key_file(h.app, ident)
        if new_name != name:
            with store.writer_lock():
                store.delete(name)
                store.bump()
        outcomes.append(Outcome(name, new_name))
    return outcomes
