"""The key blob format: one file `key_<app>_<ident>` per key.

    magic "SSKB" | format version (1 byte) | header length (4 bytes, big-endian) | header | sealed

The header is canonical JSON naming the world (hknso), app, ident, protection, owner token,
material kind, ACL, appdata and plainname. Everything before `sealed` is the AES-GCM associated
data, so editing any header byte fails the tag; `sealed` is nonce || encrypted material || tag
(an empty plaintext for objects without material: the tag still covers their appdata). The reader
also checks the header's world, app and ident against the world and file name it was found under,
so a blob copied from another world or renamed to another ident is refused.

The decrypted material exists only in a bytearray (blobcrypt.unseal_buffer): a secret key adopts
a copy of it, a private or public key is parsed from it, and it is wiped before `decode` returns.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from . import paths
from .acl import Acl
from .crypto import blobcrypt
from .crypto.material import (
    ASYMMETRIC_KINDS,
    SECRET_KINDS,
    Material,
    PrivateMaterial,
    PublicMaterial,
    SecretMaterial,
    wipe,
)
from .errors import AclInvalid, BlobInvalid, InvalidKeyMaterial
from .keys import PROTECTIONS, Key

MAGIC = b"SSKB"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">4sBI")
HEADER_FIELDS = frozenset(
    {"world", "app", "ident", "protection", "token", "kind", "acl", "appdata", "plainname"}
)
#: Optional: the key's material encrypted to the world's recovery key (recovery.py), in the
#: authenticated header so that it cannot be added, swapped or stripped without the tag failing.
OPTIONAL_FIELDS = frozenset({"recovery"})
#: Headers larger than this are refused before parsing (appdata holds PKCS#11 attributes: small).
MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class BlobHeader:
    """The authenticated, unencrypted part of a blob, as read (not yet verified by the tag)."""

    world: str
    app: str
    ident: str
    protection: str
    token: str | None
    kind: str
    acl: Any
    appdata: str
    plainname: str
    recovery: str | None = None


@dataclass(frozen=True)
class RawBlob:
    header: BlobHeader
    aad: bytes
    sealed: bytes


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def json_object(data: bytes, refusal: str) -> dict[str, Any]:
    """`data` parsed as a JSON object, else BlobInvalid(`refusal`), with "(not JSON)" when it does
    not parse at all: the first check every reader of a JSON file someone hands us makes."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise BlobInvalid(f"{refusal} (not JSON)") from None
    if not isinstance(doc, dict):
        raise BlobInvalid(refusal)
    return doc


def material_bytes(material: Material | None) -> bytes | bytearray:
    if material is None:
        return b""
    if isinstance(material, SecretMaterial):
        return material.value  # sealed straight from the owned buffer: no immutable copy
    return material.to_bytes()


def encode(key: Key, world: str, seal_key: bytes, recovery: str | None = None) -> bytes:
    """The blob of `key` in world `world`, its material sealed under `seal_key` (and, with
    `recovery`, that recovery blob in the header)."""
    fields = {
        "world": world,
        "app": key.app,
        "ident": key.ident,
        "protection": key.protection,
        "token": key.token,
        "kind": key.kind,
        "acl": key.acl.to_dict(),
        "appdata": base64.b64encode(key.appdata).decode("ascii"),
        "plainname": key.plainname,
    }
    if recovery is not None:
        fields["recovery"] = recovery
    header = canonical_json(fields)
    aad = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    return aad + blobcrypt.seal(seal_key, material_bytes(key.material), aad)


def parse(data: bytes, what: str) -> RawBlob:
    """Split a blob into header and sealed part; checks structure only, not authenticity."""
    if len(data) < _PREFIX.size:
        raise BlobInvalid(f"{what}: truncated ({len(data)} bytes, shorter than the blob prefix)")
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise BlobInvalid(f"{what}: not a softshield key blob (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise BlobInvalid(f"{what}: blob format version {version} is not supported (expected {FORMAT_VERSION})")
    if length > MAX_HEADER or _PREFIX.size + length > len(data):
        raise BlobInvalid(f"{what}: truncated (header of {length} bytes runs past the end of the file)")
    end = _PREFIX.size + length
    try:
        fields = json.loads(data[_PREFIX.size:end].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BlobInvalid(f"{what}: header is not valid JSON (edited)") from None
    if not isinstance(fields, dict) or not HEADER_FIELDS <= set(fields) <= HEADER_FIELDS | OPTIONAL_FIELDS:
        raise BlobInvalid(f"{what}: header does not have the blob fields (edited)")
    if not isinstance(fields.get("recovery", ""), str):
        raise BlobInvalid(f"{what}: header field recovery is not a string (edited)")
    for name in HEADER_FIELDS - {"acl", "token"}:
        if not isinstance(fields[name], str):
            raise BlobInvalid(f"{what}: header field {name} is not a string (edited)")
    if fields["token"] is not None and not isinstance(fields["token"], str):
        raise BlobInvalid(f"{what}: header field token is not a string (edited)")
    if fields["protection"] not in PROTECTIONS:
        raise BlobInvalid(f"{what}: unknown protection {fields['protection']!r}")
    return RawBlob(BlobHeader(**fields), data[:end], data[end:])


def check_binding(raw: RawBlob, *, world: str, app: str, ident: str, what: str) -> None:
    """The blob must say the world and name it was found under."""
    header = raw.header
    if header.world != world:
        raise BlobInvalid(f"{what}: blob belongs to world {header.world}, not this world {world}")
    if header.app != app or header.ident != ident:
        raise BlobInvalid(
            f"{what}: blob is for key_{header.app}_{header.ident}, not the file it was found in (renamed)"
        )
    if app == "pkcs11":
        owner = paths.owner_of_pkcs11_ident(ident)
        if owner is False or owner != header.token:
            raise BlobInvalid(f"{what}: blob's owner token does not match its ident")


def decode(raw: RawBlob, seal_key: bytes, what: str) -> Key:
    """Verify the tag, then build the Key (ACL, appdata and material are trusted only after it)."""
    plaintext = blobcrypt.unseal_buffer(seal_key, raw.sealed, raw.aad, what=what)
    header = raw.header
    try:
        acl = Acl.from_dict(header.acl)
        appdata = base64.b64decode(header.appdata.encode("ascii"), validate=True)
        material = _material(header.kind, plaintext)
        key = Key(material, acl, app=header.app, ident=header.ident, protection=header.protection,
                  token=header.token, appdata=appdata, plainname=header.plainname)
        key.recoverable = bool(header.recovery)
        return key
    except (AclInvalid, InvalidKeyMaterial, binascii.Error, ValueError) as exc:
        # Authentic but unreadable: written by a newer or broken writer.
        raise BlobInvalid(f"{what}: authentic blob with unusable contents: {exc}") from None
    finally:
        wipe(plaintext)


def _material(kind: str, plaintext: bytearray) -> Material | None:
    if kind == "none":
        if plaintext:
            raise InvalidKeyMaterial("object without material has sealed bytes")
        return None
    form, _, name = kind.partition(":")
    if form == "secret" and name in SECRET_KINDS:
        return SecretMaterial(name, plaintext)
    if form == "private" and name in ASYMMETRIC_KINDS:
        # The tag proved the module wrote these bytes: skip RSA re-validation (~30 ms per key).
        material = PrivateMaterial.from_pkcs8(plaintext, trusted=True)
    elif form == "public" and name in ASYMMETRIC_KINDS:
        material = PublicMaterial.from_spki(plaintext)
    else:
        raise InvalidKeyMaterial(f"unknown material kind {kind!r}")
    if material.kind != name:
        raise InvalidKeyMaterial(f"material is {material.kind}, header says {name}")
    return material
