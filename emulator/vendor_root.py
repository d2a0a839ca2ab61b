"""The emulated vendor root ("KWARN-EMU-1") and the module warrants it issues.

On nShield the factory warrant binds a module's long-term signing key (KLF2, ECDSA P-521) to its
ESN, signed by Entrust's root (nShield's KLF2 warrant); verifykeypackage pins the root's hash.
Here the root is an ECDSA P-521 key in a store *outside every kmdata*: `$SOFTSHIELD_ROOT_STORE`,
else `~/.local/share/softshield/vendor-root/` (created, 0700, on first use). A world the user
controls never holds the root's private key; only its public key travels, inside each warrant.
Everything here is labelled EMULATED so it can never be mistaken for the vendor's real root.

Warrant (JSON): {"format": "softshield-module-warrant", "version": 1, "emulated": ..., "root": "KWARN-EMU-1",
"root_public": b64 SPKI DER, "esn", "klf2_public": b64 SPKI DER, "issued", "signature": b64 DER ECDSA-SHA512
over the canonical JSON of every other field}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .blobs import canonical_json
from .crypto import attest
from .crypto.attest import SigningKey
from .errors import BlobInvalid
from .world import utc_now

ROOT_NAME = "KWARN-EMU-1"
EMULATED = "EMULATED by softshield: not an Entrust/nCipher artefact"
WARRANT_FORMAT = "softshield-module-warrant"
_ROOT_KEY_FILE = "root_key.pem"


class AttestationFailed(BlobInvalid):
    """A warrant or package signature chain does not verify; the message says which link."""


def root_store_dir() -> Path:
    env = os.environ.get("SOFTSHIELD_ROOT_STORE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "softshield" / "vendor-root"


def key_hash(spki_der: bytes) -> str:
    """40 hex: SHA-1 of the SPKI, nShield's key-hash convention."""
    return hashlib.sha1(spki_der).hexdigest()


def format_hash(hex40: str) -> str:
    """'59178a47 de508c3f ...': the grouping the vendor publishes its root hash in."""
    return " ".join(hex40[i:i + 8] for i in range(0, 40, 8))


def normalise_hash(text: str) -> str:
    return "".join(text.split()).lower()


def sign(private: SigningKey, body: dict[str, Any]) -> str:
    return base64.b64encode(private.sign(canonical_json(body))).decode()


def verify(public_der: bytes, body: dict[str, Any], signature_b64: str, what: str) -> None:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        signature = b""
    if not attest.verify(public_der, canonical_json(body), signature):
        raise AttestationFailed(f"{what}: signature does not verify: edited or forged")


class VendorRoot:
    """The emulated factory: its private key stays in the root store."""

    def __init__(self, private: SigningKey, store: Path) -> None:
        self._private = private
        self.store = store
        self.public_der = private.public_der
        self.hash = key_hash(self.public_der)

    @classmethod
    def open(cls, store: Path | None = None) -> "VendorRoot":
        """The root in `store` (default root_store_dir()), generated on first use."""
        store = store or root_store_dir()
        path = store / _ROOT_KEY_FILE
        if not path.exists():
            store.mkdir(parents=True, exist_ok=True, mode=0o700)
            private = attest.generate_signing_key()
            pem = private.to_pem()
            tmp = store / f".{_ROOT_KEY_FILE}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # first writer wins; a racing process uses the winner's key
            except FileExistsError:
                pass
            os.unlink(tmp)
        private = attest.load_signing_key(path.read_bytes(), str(path))
        if not (store / "root_hash").exists():
            (store / "root_public.pem").write_bytes(attest.public_pem(private.public_der))
            (store / "root_hash").write_text(format_hash(key_hash(private.public_der)) + "\n")
        return cls(private, store)

    def issue_warrant(self, esn: str, klf2_public_der: bytes) -> dict[str, Any]:
        """The factory warrant binding a module's KLF2 to its ESN."""
        body = {"format": WARRANT_FORMAT, "version": 1, "emulated": EMULATED, "root": ROOT_NAME,
                "root_public": base64.b64encode(self.public_der).decode(), "esn": esn,
                "klf2_public": base64.b64encode(klf2_public_der).decode(), "issued": utc_now()}
        return {**body, "signature": sign(self._private, body)}


def pinned_root_hash(explicit: str | None = None) -> str:
    """The hash verifykeypackage pins: --root-hash, else $SOFTSHIELD_ROOT_HASH, else the hash this
    installation's root store publishes (`root_hash`, what the tool "ships" with)."""
    for value in (explicit, os.environ.get("SOFTSHIELD_ROOT_HASH")):
        if value:
            return normalise_hash(value)
    published = root_store_dir() / "root_hash"
    if published.exists():
        return normalise_hash(published.read_text())
    # A verifier never makes the root it checks against: with no root store there is nothing to pin.
    raise AttestationFailed(f"no pinned vendor root: {root_store_dir()} holds no root_hash (give --root-hash HASH, "
                            "or SOFTSHIELD_ROOT_HASH, as the tool's published root)")


def verify_warrant(warrant: Any, pinned: str) -> tuple[str, bytes]:
    """(esn, KLF2 SPKI) of a warrant that chains to the pinned root; AttestationFailed otherwise."""
    if not isinstance(warrant, dict) or warrant.get("format") != WARRANT_FORMAT:
        raise AttestationFailed("module warrant missing or not a softshield warrant")
    body = {k: v for k, v in warrant.items() if k != "signature"}
    try:
        root_der = base64.b64decode(warrant["root_public"], validate=True)
        klf2 = base64.b64decode(warrant["klf2_public"], validate=True)
        esn = warrant["esn"]
    except (KeyError, TypeError, ValueError) as exc:
        raise AttestationFailed(f"module warrant malformed ({exc})") from None
    found = key_hash(root_der)
    if found != pinned:
        raise AttestationFailed(f"signer chain ends at root key hash {format_hash(found)}, "
                                f"not the pinned root {format_hash(pinned)}")
    verify(root_der, body, str(warrant.get("signature", "")), "module warrant")
    return esn, klf2


def module_signing_key(module_key: bytes, esn: str) -> SigningKey:
    """The module's KLF2: derived from its module key, so it lives exactly as long as the module."""
    return attest.derive_signing_key(module_key, b"softshield KLF2", esn.encode())


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
