"""A cloud vault's Key Exchange Key as the vault hands it out (the vendor-neutral BYOK flow).

`az keyvault key download --encoding PEM` writes the KEK's public key as a PEM SubjectPublicKeyInfo
(the identifier then comes separately); `az keyvault key show` prints a JSON document whose `key`
object is the JSON Web Key (RFC 7517/7518 §6.3: `kid`, `kty` RSA or RSA-HSM, `n`, `e` base64url,
`key_ops`). The Azure Key Vault BYOK specification allows RSA 2048/3072/4096 KEKs whose only operation is
`import`. `load_kek` accepts either form and refuses anything else before a key is touched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .crypto.attest import rsa_public_spki
from .errors import BlobInvalid

KEK_SIZES = (2048, 3072, 4096)
JWK_KTYS = ("RSA", "RSA-HSM")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
#: a kid is a vault URL or any other printable identifier; it goes verbatim into the .byok header.
_KID = re.compile(r"^[\x21-\x7e]{1,1024}$")


class KekRefused(BlobInvalid):
    """The KEK file is not a KEK the BYOK specification allows; the message says why."""


@dataclass(frozen=True)
class CloudKek:
    """The target of a transfer when the KEK comes straight from the vault: what keytransfer needs
    of a verified KEK package (kid, key hash, public key), with no vendor signature to check."""

    kid: str
    kek_public_spki: bytes
    key_size: int
    form: str  # "PEM" or "JWK"
    region: str = "CLOUD"

    @property
    def kek_hash(self) -> str:
        """nShield's key hash of the KEK (SHA-1 of its SPKI): the hash the transfer ACL names."""
        return hashlib.sha1(self.kek_public_spki).hexdigest()


def _b64url_int(jwk: dict, name: str, what: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not _B64URL.match(value):
        raise KekRefused(f"{what}: JWK member `{name}' is not base64url")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _from_jwk(doc: dict, what: str) -> tuple[bytes, int, str | None]:
    jwk = doc.get("key") if isinstance(doc.get("key"), dict) else doc  # `az keyvault key show` or the key
    kty = jwk.get("kty")
    if kty not in JWK_KTYS:
        raise KekRefused(f"{what}: kty {kty!r} is not a KEK key type ({' or '.join(JWK_KTYS)})")
    ops = jwk.get("key_ops")
    if not isinstance(ops, list) or "import" not in ops:
        raise KekRefused(f"{what}: key_ops {ops!r} lacks \"import\": not a Key Exchange Key "
                         "(az keyvault key create ... --ops import)")
    n, e = _b64url_int(jwk, "n", what), _b64url_int(jwk, "e", what)
    try:
        spki, bits = rsa_public_spki(n=n, e=e)
    except BlobInvalid as exc:
        raise KekRefused(f"{what}: {exc}") from None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KekRefused(f"{what}: kid is not a string")
    return spki, bits, kid


def load_kek(data: bytes, what: str, kid: str | None = None) -> CloudKek:
    """The KEK in `data` (PEM SPKI or JWK JSON). `kid` is required with PEM; with a JWK it is taken
    from the file, and a different one given here is refused."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            spki, bits = rsa_public_spki(pem=data)
        except BlobInvalid as exc:
            raise KekRefused(f"{what}: {exc}") from None
        form, file_kid = "PEM", None
        if not kid:
            raise KekRefused(f"{what}: a PEM key carries no identifier: give the KEK's kid (--kek-kid, "
                             "the `kid` of `az keyvault key show`)")
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise KekRefused(f"{what}: neither a PEM public key nor a JSON Web Key") from None
        if not isinstance(doc, dict):
            raise KekRefused(f"{what}: neither a PEM public key nor a JSON Web Key")
        spki, bits, file_kid = _from_jwk(doc, what)
        form = "JWK"
        if kid and file_kid and kid != file_kid:
            raise KekRefused(f"{what}: --kek-kid {kid} differs from the JWK's kid {file_kid}")
        kid = kid or file_kid
        if not kid:
            raise KekRefused(f"{what}: the JWK has no kid: give it with --kek-kid")
    if bits not in KEK_SIZES:
        raise KekRefused(f"{what}: RSA-{bits} is not a KEK size ({'/'.join(map(str, KEK_SIZES))} bits)")
    if not _KID.match(kid):
        raise KekRefused(f"{what}: kid {kid!r} is not a printable identifier without spaces")
    return CloudKek(kid, spki, bits, form)


def read_kek(path: str | Path, kid: str | None = None) -> CloudKek:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KekRefused(f"KEK file {path}: {exc.strerror}") from None
    return load_kek(data, f"KEK file {path}", kid)
