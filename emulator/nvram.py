"""The module's NVRAM: where `generatekey nvram=yes` keeps a key's blob.

nShield stores an NVRAM key's blob in the module's non-volatile memory; allocating that memory needs
the ACS (a KNSO-signed permission), the key then loads only on that module, and the kmdata key file
still exists and names the key. Here:

    <kmdata>/modules/<ESN>/nvram/key_<app>_<ident>     one entry per NVRAM key (0700 dirs, 0600 files)

outside `<kmdata>/local`, which a world shares between hosts and modules: copying `local` to another
module's host copies the key file, never the NVRAM. Each entry is canonical JSON

    {"entry": {format, esn, world, name, aad, sealed, sealed_digest, allocated}, "knso_sig": b64, "mac": hex}

`sealed` is the blob's sealed part (nonce || ciphertext || tag, as blobs.py writes it) and `aad` the
SHA-256 of the blob's authenticated header, so the entry belongs to exactly one key file. `mac` is an
HMAC under a key derived from this module's key (only this module can write or accept the entry);
`knso_sig` is KNSO's signature over the entry, made with the key the ACS quorum opens, so no entry
exists without the quorum (nShield's NSOPermissions for NVRAM allocation).

The key file keeps its header (so listings, aclprint and the ACL check work as for any blob; the
header is still the AES-GCM associated data) and, in place of the sealed part, a reference
REF_MAGIC || {"esn", "sealed_digest"}. `Nvram.complete` swaps the entry's sealed part back in before
the blob is decoded; without the entry the key refuses to load with the reason.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import blobs, paths
from .blobs import RawBlob, canonical_json
from .crypto import blobcrypt, suites
from .crypto.material import wipe
from .errors import BlobInvalid, EmulatorError, KeyNotFound, QuorumNotMet
from .kmdata import KmStore, ensure_dir
from .world import ModuleFile, World, utc_now

#: Stands where a blob's sealed part would: 27 bytes a GCM nonce (random) never starts with.
REF_MAGIC = b"softshield nvram reference\x00"
ENTRY_FORMAT = 1
_MAC_LABEL = b"softshield nvram"
_SIG_CONTEXT = b"softshield nvram allocation\x00"


def nvram_dir(kmdata: Path, esn: str) -> Path:
    return kmdata / "modules" / esn / "nvram"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class NvramRef:
    """What a key file says about where its blob is."""

    esn: str
    sealed_digest: str


def reference_of(raw: RawBlob, what: str) -> NvramRef | None:
    """The NVRAM reference of a key file, None for an ordinary blob."""
    if not raw.sealed.startswith(REF_MAGIC):
        return None
    try:
        doc = json.loads(raw.sealed[len(REF_MAGIC):].decode("ascii"))
        ref = NvramRef(doc["esn"], doc["sealed_digest"])
        if not paths.ESN_RE.match(ref.esn) or len(ref.sealed_digest) != 64:
            raise ValueError("bad ESN or digest")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise BlobInvalid(f"{what}: NVRAM reference is unreadable (edited)") from None
    return ref


def storage_of(data: bytes, what: str) -> str:
    """"NVRAM of module <ESN>" or "kmdata" (nfkminfo, kmfile-dump, aclprint)."""
    ref = reference_of(blobs.parse(data, what), what)
    return f"NVRAM of module {ref.esn}" if ref else "kmdata"


@dataclass(frozen=True)
class NvramAuthority:
    """The ACS quorum's permission to allocate NVRAM: KNSO's private key, as the quorum opened it."""

    hknso: str
    knso_pkcs8: bytearray = dataclasses.field(repr=False)

    def wipe(self) -> None:
        wipe(self.knso_pkcs8)


def authorise(kmdata: Path, presented: Iterable[tuple[Path, bytes]],
              say: Callable[[str], None] = lambda line: None) -> NvramAuthority:
    """Read the ACS quorum (worldadmin.open_acs: K distinct cards, right PINs, counters kept)."""
    # Imported here, not at the top: only `generatekey nvram=yes` opens the ACS, and the card and
    # Shamir code behind worldadmin need not load in every process that loads an NVRAM key.
    from . import worldadmin

    place = worldadmin.Place.of(kmdata)
    world_file = place.world_file()
    if world_file is None or world_file.acs is None:
        raise QuorumNotMet("NVRAM allocation needs the ACS, and this Security World has none (make one with "
                           "`softshield new-world --initialize --acs-quorum=K/N`)")
    presented = list(presented)
    ref = worldadmin.acs_ref(world_file)
    if len(presented) < ref.k:
        raise QuorumNotMet(f"NVRAM allocation needs {ref.k} of the {ref.n} cards of ACS `{ref.name}'; "
                           f"{len(presented)} presented (--pin-file)")
    current, _km, knso = worldadmin.open_acs(place, presented, say)
    return NvramAuthority(current.world.hknso, bytearray(knso))


class Nvram:
    """One module's NVRAM store."""

    def __init__(self, kmdata: Path, module_file: ModuleFile, world: World) -> None:
        self.esn = module_file.esn
        self.folder = nvram_dir(kmdata, self.esn)
        self.world = world  # hknso, cipher suite, KNSO's public key
        self._mac_key = blobcrypt.derive_subkey(module_file.module_key, _MAC_LABEL, self.esn.encode())
        self._store: KmStore | None = None

    def _opened(self) -> KmStore:
        if self._store is None:
            # Each level 0700: mkdir(parents=True) would give the parents the umask's mode.
            for folder in (self.folder.parent.parent, self.folder.parent, self.folder):
                ensure_dir(folder)
            self._store = KmStore(self.folder)
        return self._store

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return self._opened().names(paths.KEY_PREFIX)

    def _signed(self, entry: dict[str, Any]) -> bytes:
        return _SIG_CONTEXT + canonical_json(entry)

    def put(self, name: str, raw: RawBlob, authority: NvramAuthority) -> NvramRef:
        """Write the entry holding `raw`'s sealed part; returns the reference the key file gets."""
        if authority.hknso != self.world.hknso:
            raise QuorumNotMet(f"the ACS presented is of world {authority.hknso}, not this world {self.world.hknso}")
        entry = {"format": ENTRY_FORMAT, "esn": self.esn, "world": self.world.hknso, "name": name,
                 "aad": _digest(raw.aad), "sealed": base64.b64encode(raw.sealed).decode("ascii"),
                 "sealed_digest": _digest(raw.sealed), "allocated": utc_now()}
        signature = suites.sign_with_knso(self.world.cipher_suite, bytes(authority.knso_pkcs8), self._signed(entry))
        body = canonical_json(entry)
        doc = {"entry": entry, "knso_sig": base64.b64encode(signature).decode("ascii"),
               "mac": blobcrypt.mac(self._mac_key, body).hex()}
        self._opened().write(name, canonical_json(doc))
        return NvramRef(self.esn, entry["sealed_digest"])

    def complete(self, raw: RawBlob, what: str) -> RawBlob:
        """`raw` with its sealed part from NVRAM when its key file is an NVRAM reference (else
        unchanged). The key file's name is `what`; refusals say why, as BlobInvalid."""
        ref = reference_of(raw, what)
        if ref is None:
            return raw
        if ref.esn != self.esn:
            raise BlobInvalid(f"{what}: blob is in NVRAM of module {ref.esn}; not on this module ({self.esn})")
        try:
            data = (self.folder / what).read_bytes()
        except FileNotFoundError:
            raise BlobInvalid(f"{what}: blob is in NVRAM of module {self.esn}, but its NVRAM entry is gone "
                              "(freed or erased): the key cannot load") from None
        entry = self._verified(data, what)
        if entry["name"] != what or entry["esn"] != self.esn or entry["world"] != self.world.hknso:
            raise BlobInvalid(f"{what}: NVRAM entry is for {entry['name']} of module {entry['esn']} in world "
                              f"{entry['world']}, not this key file")
        if entry["aad"] != _digest(raw.aad) or entry["sealed_digest"] != ref.sealed_digest:
            raise BlobInvalid(f"{what}: NVRAM entry does not match the key file (header or reference edited)")
        try:
            sealed = base64.b64decode(entry["sealed"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise BlobInvalid(f"{what}: NVRAM entry is unreadable (edited)") from None
        if _digest(sealed) != ref.sealed_digest:
            raise BlobInvalid(f"{what}: NVRAM entry does not match the key file (edited)")
        return dataclasses.replace(raw, sealed=sealed)

    def _verified(self, data: bytes, what: str) -> dict[str, Any]:
        try:
            doc = json.loads(data)
            entry, mac_hex, sig = doc["entry"], doc["mac"], base64.b64decode(doc["knso_sig"], validate=True)
            if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
                raise ValueError("unknown entry format")
            tag = bytes.fromhex(mac_hex)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise BlobInvalid(f"{what}: NVRAM entry is unreadable (edited)") from None
        if not blobcrypt.mac_matches(self._mac_key, canonical_json(entry), tag):
            raise BlobInvalid(f"{what}: NVRAM entry failed authentication (edited, or not written by module {self.esn})")
        if not suites.verify_with_knso(self.world.cipher_suite, self.world.knso_public, self._signed(entry), sig):
            raise BlobInvalid(f"{what}: NVRAM entry has no valid ACS (KNSO) allocation signature")
        return entry

    def free(self, name: str) -> bool:
        """Remove an entry; False when there was none."""
        if not self.folder.is_dir():
            return False
        return self._opened().delete(name)


def allocate(store: KmStore, nvram: Nvram, authority: NvramAuthority, app: str, ident: str) -> NvramRef:
    """Move the blob of key_<app>_<ident> from the kmdata `store` (whose ledger records the key
    file's rewrite) into `nvram` (generatekey nvram=yes). The entry is written first, then the key
    file is replaced by its reference: a crash between the two leaves the ordinary key file (an
    unused entry), never a key file pointing at nothing."""
    name = paths.key_file(app, ident)
    with store.writer_lock():
        try:
            data, _stamp, stale = store.read_current(name)
        except FileNotFoundError:
            raise KeyNotFound(f"no {name} in kmdata") from None
        if stale:
            raise BlobInvalid(f"{name}: {stale}")
        raw = blobs.parse(data, name)
        if reference_of(raw, name) is not None:
            raise EmulatorError(f"{name}: its blob is already in NVRAM")
        blobs.check_binding(raw, world=nvram.world.hknso, app=app, ident=ident, what=name)
        ref = nvram.put(name, raw, authority)
        try:
            reference = REF_MAGIC + canonical_json({"esn": ref.esn, "sealed_digest": ref.sealed_digest})
            store.write(name, raw.aad + reference)
            store.bump()
        except BaseException:
            nvram.free(name)
            raise
    return ref
