"""World backup with a quorum: the security domain (Managed HSM's, nshield-workflow.md §6).

Export: a random 32-byte security-domain key is split K-of-N with Shamir (shamir.py, two 16-byte
halves sharing x); holder i's share is RSA-OAEP(SHA-256)-encrypted to certificate i's key. The
world's secrets (every file of `<kmdata>/local`: world, module files with their module keys, key
blobs, softcards, card-set records) are each sealed with AES-256-GCM under HKDF(SD key, file name).

    {"format": "softshield-security-domain", "version": 1, "emulated": ...,
     "world": {"hknso", "cipher_suite"},
     "EncData": {"alg": "A256GCM", "kdf": "HKDF-SHA256", "data": [{"tag": FILE, "nonce", "ciphertext"}]},
     "SharedKeys": {"required": K, "enc_shares": [{"enc_key", "alg": "RSA-OAEP-256", "x5t_256", "spki_sha256"}]}}

Restore needs K of the matching private keys and an empty kmdata; afterwards the world opens and
every module-protected key of the original loads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import paths, shamir
from .errors import AuthenticationFailed, BlobInvalid, QuorumNotMet, WorldStateError
from .kmdata import KmStore, ensure_dir
from .vendor_root import EMULATED
from .world import WorldFile

SD_FORMAT = "softshield-security-domain"
MIN_CERTS, MAX_CERTS = 3, 10  # "The number of wrapping keys {N} should be in range [3, 10]." (S12)
MIN_QUORUM, MAX_QUORUM = 2, 10
_SKIP = {paths.LOCK_FILE, paths.CHANGES_FILE}
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _file_key(master: bytes, tag: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, b"softshield security domain", b"file\x00" + tag.encode()).derive(master)


def _spki_sha256(public: rsa.RSAPublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise BlobInvalid(f"{what}: not an X.509 certificate ({exc})") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise BlobInvalid(f"{what}: the certificate's key is not RSA")
    return cert


def export_security_domain(kmdata: Path, certificates: list[tuple[str, bytes]], quorum: int) -> dict[str, Any]:
    """The security domain of the world in `kmdata`, for these certificates and quorum."""
    if not MIN_CERTS <= len(certificates) <= MAX_CERTS:
        raise WorldStateError(f"The number of wrapping keys {len(certificates)} should be in range "
                              f"[{MIN_CERTS}, {MAX_CERTS}].")
    if not MIN_QUORUM <= quorum <= min(MAX_QUORUM, len(certificates)):
        raise WorldStateError(f"The quorum of security domain {quorum} should be in range "
                              f"[{MIN_QUORUM}, {min(MAX_QUORUM, len(certificates))}].")
    certs = [load_certificate(data, name) for name, data in certificates]
    spkis = [_spki_sha256(c.public_key()) for c in certs]
    if len(set(spkis)) != len(spkis):
        raise WorldStateError("two certificates hold the same key: each share needs its own holder")
    store = KmStore(paths.local_dir(kmdata))
    if not store.exists(paths.WORLD_FILE):
        raise WorldStateError(f"no Security World in {store.local}")
    world = WorldFile.from_bytes(store.read(paths.WORLD_FILE)).world
    master = os.urandom(32)
    halves = [shamir.split(master[:16], quorum, len(certs)), shamir.split(master[16:], quorum, len(certs))]
    enc_shares = []
    for index, cert in enumerate(certs):
        (x1, y1), (x2, y2) = halves[0][index], halves[1][index]
        assert x1 == x2
        share = json.dumps({"x": x1, "y": (y1 + y2).hex()}).encode()
        der = cert.public_bytes(serialization.Encoding.DER)
        enc_shares.append({"enc_key": _b64(cert.public_key().encrypt(share, _OAEP)), "alg": "RSA-OAEP-256",
                           "x5t_256": base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode(),
                           "spki_sha256": spkis[index]})
    data = []
    for name in sorted(store.names("")):
        if name in _SKIP or name.startswith("."):
            continue
        nonce = os.urandom(12)
        sealed = AESGCM(_file_key(master, name)).encrypt(nonce, store.read(name), name.encode())
        data.append({"tag": name, "nonce": _b64(nonce), "ciphertext": _b64(sealed)})
    return {"format": SD_FORMAT, "version": 1, "emulated": EMULATED,
            "world": {"hknso": world.hknso, "cipher_suite": world.cipher_suite},
            "EncData": {"alg": "A256GCM", "kdf": "HKDF-SHA256", "data": data},
            "SharedKeys": {"required": quorum, "enc_shares": enc_shares}}


def load_private_key(data: bytes, what: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BlobInvalid(f"{what}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BlobInvalid(f"{what}: not an RSA private key")
    return key


def recover_files(sd: dict[str, Any], keys: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """The world's files, opened with a quorum of the holders' private keys."""
    try:
        if sd.get("format") != SD_FORMAT:
            raise ValueError(f"format {sd.get('format')!r}")
        required = int(sd["SharedKeys"]["required"])
        enc_shares = sd["SharedKeys"]["enc_shares"]
        items = sd["EncData"]["data"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BlobInvalid(f"not a softshield security domain file ({exc})") from None
    by_spki = {entry.get("spki_sha256"): entry for entry in enc_shares}
    shares: dict[int, bytes] = {}
    for name, data in keys:
        key = load_private_key(data, name)
        entry = by_spki.get(_spki_sha256(key.public_key()))
        if entry is None:
            raise AuthenticationFailed(f"{name}: matches none of the security domain's certificates (wrong key)")
        try:
            share = json.loads(key.decrypt(base64.b64decode(entry["enc_key"]), _OAEP))
            shares[int(share["x"])] = bytes.fromhex(share["y"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailed(f"{name}: cannot decrypt its share ({exc})") from None
    if len(shares) < required:
        raise QuorumNotMet(f"the security domain needs {required} of its {len(enc_shares)} keys (quorum); "
                           f"{len(shares)} distinct key(s) given")
    chosen = sorted(shares.items())[:required]
    master = (shamir.combine([(x, y[:16]) for x, y in chosen]) + shamir.combine([(x, y[16:]) for x, y in chosen]))
    files: dict[str, bytes] = {}
    for item in items:
        tag = str(item["tag"])
        if not tag or "/" in tag or tag.startswith(".") or tag in _SKIP:
            raise BlobInvalid(f"security domain names a bad file {tag!r}")
        try:
            files[tag] = AESGCM(_file_key(master, tag)).decrypt(base64.b64decode(item["nonce"]),
                                                                base64.b64decode(item["ciphertext"]), tag.encode())
        except InvalidTag:
            raise AuthenticationFailed(f"security domain item {tag}: authentication failed (the keys do not "
                                       "reconstruct this security domain's key, or the file was edited)") from None
    if paths.WORLD_FILE not in files:
        raise BlobInvalid("security domain holds no world file")
    return files


def restore_security_domain(kmdata: Path, sd: dict[str, Any], keys: list[tuple[str, bytes]]) -> list[str]:
    """Write the recovered world into an EMPTY kmdata; returns the names written."""
    files = recover_files(sd, keys)
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
