"""World backup with a quorum: the security domain (Azure Managed HSM's).

Export: a random 32-byte security-domain key is split K-of-N with Shamir (shamir.py, two 16-byte
halves sharing x); holder i's share is RSA-OAEP-256 encrypted to certificate i's key
(crypto/escrow.py). The world's secrets (every file of `<kmdata>/local`: world, module files with
their module keys, key blobs, softcards, card-set records) are each sealed with AES-256-GCM under a
sub-key of the SD key for that file's name (crypto/blobcrypt.py), the name as associated data.

    {"format": "softshield-security-domain", "version": 1, "emulated": ...,
     "world": {"hknso", "cipher_suite"},
     "EncData": {"alg": "A256GCM", "kdf": "HKDF-SHA256", "data": [{"tag": FILE, "sealed"}]},
     "SharedKeys": {"required": K, "enc_shares": [{"enc_key", "alg": "RSA-OAEP-256", "x5t_256", "spki_sha256"}]},
     "mac": HMAC-SHA256 under a sub-key of the SD key of the canonical JSON of everything above}

Each item's seal binds its content to its name, but not the list: without `mac` a file with one
item removed, duplicated or moved would still restore, short of a key. `mac` covers the whole
document (header fields, the item list in order, the shares), so any such change refuses the whole
restore before a file is written. Restore needs K of the matching private keys and an empty
kmdata; afterwards the world opens and every module-protected key of the original loads.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

from . import paths, shamir
from .blobs import canonical_json
from .crypto import blobcrypt, escrow
from .errors import AuthenticationFailed, BlobInvalid, CryptoFailure, QuorumNotMet, WorldStateError
from .kmdata import KmStore, ensure_dir
from .vendor_root import EMULATED
from .world import WorldFile

SD_FORMAT = "softshield-security-domain"
SD_VERSION = 2  # 2: the whole document authenticated (`mac`)
MIN_CERTS, MAX_CERTS = 3, 10  # "The number of wrapping keys {N} should be in range [3, 10]." (az keyvault security-domain)
MIN_QUORUM, MAX_QUORUM = 2, 10  # "The quorum of security domain {q} should be in range [2, 10]." (az keyvault security-domain)
_SKIP = {paths.LOCK_FILE, paths.CHANGES_FILE}
Step = Callable[[], None]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _file_key(master: bytes, tag: str) -> bytes:
    return blobcrypt.derive_subkey(master, b"softshield security domain", b"file\x00" + tag.encode())


def _manifest(master: bytes, sd: dict[str, Any]) -> tuple[bytes, bytes]:
    """(the key, the bytes) of the document's authenticator: everything but `mac`, canonical JSON."""
    body = {name: value for name, value in sd.items() if name != "mac"}
    return blobcrypt.derive_subkey(master, b"softshield security domain", b"manifest"), canonical_json(body)


def export_names(kmdata: Path) -> list[str]:
    """The files of `<kmdata>/local` a security domain carries (not the lock or change counter)."""
    store = KmStore(paths.local_dir(kmdata))
    return [name for name in sorted(store.names("")) if name not in _SKIP and not name.startswith(".")]


def export_security_domain(kmdata: Path, certificates: list[tuple[str, bytes]], quorum: int,
                           step: Step = lambda: None) -> dict[str, Any]:
    """The security domain of the world in `kmdata`, for these certificates and quorum; `step` is
    called once per holder share and once per file sealed (the CLI's progress)."""
    if not MIN_CERTS <= len(certificates) <= MAX_CERTS:
        raise WorldStateError(f"The number of wrapping keys {len(certificates)} should be in range "
                              f"[{MIN_CERTS}, {MAX_CERTS}].")
    if not MIN_QUORUM <= quorum <= min(MAX_QUORUM, len(certificates)):
        raise WorldStateError(f"The quorum of security domain {quorum} should be in range "
                              f"[{MIN_QUORUM}, {min(MAX_QUORUM, len(certificates))}].")
    certs = [escrow.load_certificate(data, name) for name, data in certificates]
    if len({c.spki_sha256 for c in certs}) != len(certs):
        raise WorldStateError("two certificates hold the same key: each share needs its own holder")
    store = KmStore(paths.local_dir(kmdata))
    if not store.exists(paths.WORLD_FILE):
        raise WorldStateError(f"no Security World in {store.local}")
    world = WorldFile.from_bytes(store.read(paths.WORLD_FILE)).world
    master = blobcrypt.random_key()
    halves = [shamir.split(master[:16], quorum, len(certs)), shamir.split(master[16:], quorum, len(certs))]
    enc_shares = []
    for index, cert in enumerate(certs):
        (x1, y1), (x2, y2) = halves[0][index], halves[1][index]
        if x1 != x2:
            raise WorldStateError("the Shamir split gave the two halves different x coordinates")
        share = json.dumps({"x": x1, "y": (y1 + y2).hex()}).encode()
        enc_shares.append({"enc_key": _b64(cert.encrypt(share)), "alg": "RSA-OAEP-256", "x5t_256": cert.x5t_256,
                           "spki_sha256": cert.spki_sha256})
        step()
    data = []
    for name in export_names(kmdata):
        sealed = blobcrypt.seal(_file_key(master, name), store.read(name), name.encode())
        data.append({"tag": name, "sealed": _b64(sealed)})
        step()
    sd = {"format": SD_FORMAT, "version": SD_VERSION, "emulated": EMULATED,
          "world": {"hknso": world.hknso, "cipher_suite": world.cipher_suite},
          "EncData": {"alg": "A256GCM", "kdf": "HKDF-SHA256", "data": data},
          "SharedKeys": {"required": quorum, "enc_shares": enc_shares}}
    sd["mac"] = _b64(blobcrypt.mac(*_manifest(master, sd)))
    return sd


def recover_files(sd: dict[str, Any], keys: list[tuple[str, bytes]],
                  passwords: list[bytes | None] | None = None) -> dict[str, bytes]:
    """The world's files, opened with a quorum of the holders' private keys (the i-th password, if
    any, opens the i-th key); the whole document is authenticated before any item is opened."""
    try:
        if not isinstance(sd, dict) or sd.get("format") != SD_FORMAT:
            raise ValueError(f"format {sd.get('format')!r}" if isinstance(sd, dict) else "not a JSON object")
        if sd.get("version") != SD_VERSION:
            raise ValueError(f"version {sd.get('version')!r} is not {SD_VERSION}: export the world again")
        required = int(sd["SharedKeys"]["required"])
        enc_shares = sd["SharedKeys"]["enc_shares"]
        items = sd["EncData"]["data"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BlobInvalid(f"not a softshield security domain file ({exc})") from None
    by_spki = {entry.get("spki_sha256"): entry for entry in enc_shares}
    shares: dict[int, bytes] = {}
    passwords = list(passwords or [])
    for index, (name, data) in enumerate(keys):
        key = escrow.load_holder_key(data, name, passwords[index] if index < len(passwords) else None)
        entry = by_spki.get(key.spki_sha256)
        if entry is None:
            raise AuthenticationFailed(f"{name}: matches none of the security domain's certificates (wrong key)")
        try:
            share = json.loads(key.decrypt(base64.b64decode(entry["enc_key"])))
            shares[int(share["x"])] = bytes.fromhex(share["y"])
        except (CryptoFailure, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailed(f"{name}: cannot decrypt its share ({exc})") from None
    if len(shares) < required:
        raise QuorumNotMet(f"the security domain needs {required} of its {len(enc_shares)} keys (quorum); "
                           f"{len(shares)} distinct key(s) given")
    chosen = sorted(shares.items())[:required]
    master = shamir.combine([(x, y[:16]) for x, y in chosen]) + shamir.combine([(x, y[16:]) for x, y in chosen])
    try:
        authenticator = base64.b64decode(sd["mac"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise BlobInvalid("the security domain file has no valid authenticator (mac): nothing restored") from None
    if not blobcrypt.mac_matches(*_manifest(master, sd), authenticator):
        raise AuthenticationFailed("the security domain file was altered (an item removed, added, duplicated, "
                                   "reordered or edited, or a header field changed): nothing restored")
    files: dict[str, bytes] = {}
    for item in items:
        tag = str(item.get("tag", "")) if isinstance(item, dict) else ""
        if not tag or "/" in tag or tag.startswith(".") or tag in _SKIP:
            raise BlobInvalid(f"security domain names a bad file {tag!r}")
        try:
            sealed = base64.b64decode(item["sealed"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise BlobInvalid(f"security domain item {tag}: malformed ({exc})") from None
        plain = blobcrypt.try_unseal(_file_key(master, tag), sealed, tag.encode())
        if plain is None:
            raise AuthenticationFailed(f"security domain item {tag}: authentication failed (the keys do not "
                                       "reconstruct this security domain's key, or the file was edited)")
        if tag in files:
            raise BlobInvalid(f"security domain names {tag} twice")
        files[tag] = plain
    if paths.WORLD_FILE not in files:
        raise BlobInvalid("security domain holds no world file")
    world = WorldFile.from_bytes(files[paths.WORLD_FILE]).world
    if (world.hknso, world.cipher_suite) != (sd["world"].get("hknso"), sd["world"].get("cipher_suite")):
        raise AuthenticationFailed("the security domain's header names another world than the one it holds")
    return files


def restore_security_domain(kmdata: Path, sd: dict[str, Any], keys: list[tuple[str, bytes]],
                            passwords: list[bytes | None] | None = None) -> list[str]:
    """Write the recovered world into an EMPTY kmdata; returns the names written."""
    files = recover_files(sd, keys, passwords)
    ensure_dir(kmdata)
    store = KmStore(paths.local_dir(kmdata))
    ensure_dir(store.local)
    with store.writer_lock():
        if store.exists(paths.WORLD_FILE) or store.names(paths.KEY_PREFIX):
            raise WorldStateError(f"{store.local} already holds a world or keys: restore needs an empty kmdata")
        # The world file last: its presence is what says "a world is here".
        for name in sorted(files, key=lambda n: n == paths.WORLD_FILE):
            store.write(name, files[name])
        store.bump()
    return sorted(files)
