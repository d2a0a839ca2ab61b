"""Key material held inside the module.

A material object wraps a `cryptography` key object (or the raw bytes of a symmetric key) together
with its kind. It is created once per key and cached with the key, because loading an RSA private key
with full validation costs ~30 ms; blobs the module authenticated itself are loaded without
re-validation.

Wiping (THREAT_MODEL.md "Plaintext in memory"): a secret key's bytes live in a `SecretBuffer`
(a bytearray that zeroes itself when it is finalized) which the material owns; `wipe()` zeroes it
at once. Material objects are shared (C_CopyObject, the module's cache) and callers may hold
`.value` while the material goes away (an operation on a key destroyed meanwhile), so the zeroing
happens when the *buffer's* last reference goes: never under a holder, always before the memory is
freed. Private keys are OpenSSL objects: OpenSSL clears their private components when freed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InvalidKeyMaterial

# `cryptography`'s serialization and asymmetric modules are imported where a key object is first
# parsed, encoded or classified: a process that only lists slots, or uses only secret keys, never
# needs them (they cost ~15 ms of its start).

#: Kinds of symmetric material; the value is the raw key.
SECRET_KINDS = frozenset({"AES", "DES", "DES3", "GENERIC", "HMAC"})
#: Kinds of asymmetric material.
ASYMMETRIC_KINDS = frozenset({"RSA", "EC", "Ed25519", "Ed448", "X25519", "X448", "ML-DSA", "ML-KEM"})


def wipe(buf: bytearray | None) -> None:
    """Zero `buf` in place: a same-length slice assignment copies into the bytearray's existing
    memory (CPython's bytearray_setslice: no resize, no reallocation), ~3x cheaper than building a
    ctypes array type per call for memset, which matters because every SecretBuffer ends here."""
    if buf:
        buf[:] = bytes(len(buf))


#: Test hook (tests/reliability/test_wipe.py): called with every SecretBuffer as it is finalized,
#: after it was zeroed. None in normal use: one global read per finalization.
on_finalize: Callable[[bytearray], None] | None = None


class SecretBuffer(bytearray):
    """Secret bytes that are zeroed when the object is finalized (the last reference dropped).
    Never resized by our code: a resize could move the bytes and leave the old block unzeroed."""

    __slots__ = ()

    def __del__(self) -> None:
        try:
            wipe(self)
            if on_finalize is not None:
                on_finalize(self)
        except (TypeError, AttributeError):  # interpreter shutdown: module globals already torn down
            pass


@functools.cache
def _kinds() -> tuple[tuple[tuple[type, str], ...], tuple[tuple[type, str], ...]]:
    """(private key classes, public key classes), each with the kind its keys have."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, mlkem, rsa, x448, x25519

    private = (
        (rsa.RSAPrivateKey, "RSA"),
        (ec.EllipticCurvePrivateKey, "EC"),
        (ed25519.Ed25519PrivateKey, "Ed25519"),
        (ed448.Ed448PrivateKey, "Ed448"),
        (x25519.X25519PrivateKey, "X25519"),
        (x448.X448PrivateKey, "X448"),
        (mldsa.MLDSA44PrivateKey, "ML-DSA"),
        (mldsa.MLDSA65PrivateKey, "ML-DSA"),
        (mldsa.MLDSA87PrivateKey, "ML-DSA"),
        (mlkem.MLKEM768PrivateKey, "ML-KEM"),
        (mlkem.MLKEM1024PrivateKey, "ML-KEM"),
    )
    public = (
        (rsa.RSAPublicKey, "RSA"),
        (ec.EllipticCurvePublicKey, "EC"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (x25519.X25519PublicKey, "X25519"),
        (x448.X448PublicKey, "X448"),
        (mldsa.MLDSA44PublicKey, "ML-DSA"),
        (mldsa.MLDSA65PublicKey, "ML-DSA"),
        (mldsa.MLDSA87PublicKey, "ML-DSA"),
        (mlkem.MLKEM768PublicKey, "ML-KEM"),
        (mlkem.MLKEM1024PublicKey, "ML-KEM"),
    )
    return private, public


def _kind_of_private(key: Any) -> str:
    for cls, kind in _kinds()[0]:
        if isinstance(key, cls):
            return kind
    raise InvalidKeyMaterial(f"unsupported private key type {type(key).__name__}")


def _kind_of_public(key: Any) -> str:
    for cls, kind in _kinds()[1]:
        if isinstance(key, cls):
            return kind
    raise InvalidKeyMaterial(f"unsupported public key type {type(key).__name__}")


@dataclass(eq=False)
class SecretMaterial:
    """A symmetric key: AES, DES3, generic secret or HMAC key bytes.

    `value` is always a SecretBuffer of its own (any bytes-like given is copied in: the caller's
    bytes may be immutable or shared), zeroed by `wipe()` or when its last holder lets go."""

    kind: str
    value: SecretBuffer = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SECRET_KINDS:
            raise InvalidKeyMaterial(f"unknown secret key kind {self.kind!r}")
        self.value = SecretBuffer(self.value)

    @property
    def size_bits(self) -> int:
        return len(self.value) * 8

    def to_bytes(self) -> bytes:
        """An immutable copy, for callers that keep or hand on the value (CKA_VALUE reads)."""
        return bytes(self.value)

    def wipe(self) -> None:
        """Zero the key bytes now; the material is unusable afterwards, so only a sole owner
        (a temporary that never became a key object) calls this."""
        wipe(self.value)


@dataclass(eq=False)
class PrivateMaterial:
    """An asymmetric private key; `key` is the `cryptography` private key object."""

    key: Any = field(repr=False)
    kind: str = ""
    # The public half, made once: `key.public_key()` builds a new object per call, and public
    # operations, sizes and SPKI encodings of a private key all start from it.
    _public: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = _kind_of_private(self.key)

    def public_key_object(self) -> Any:
        """The `cryptography` public key of this private key (cached)."""
        public = self._public
        if public is None:
            public = self._public = self.key.public_key()
        return public

    def public(self) -> "PublicMaterial":
        return PublicMaterial(self.public_key_object(), self.kind)

    def wipe(self) -> None:
        """Drop the private key object: OpenSSL clears its private components when it is freed
        (at once, unless another holder still references the same object)."""
        self.key = None

    def to_bytes(self) -> bytes:
        """PKCS#8 DER: the form the module keeps inside its blobs and wraps keys in (ML-DSA and
        ML-KEM keys in their seed form, RFC 9881 / draft-ietf-lamps-kyber-certificates)."""
        from cryptography.hazmat.primitives import serialization

        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pkcs8(cls, der: bytes | bytearray, *, trusted: bool = False) -> "PrivateMaterial":
        """Parse PKCS#8 DER (any bytes-like: a caller holding it in a bytearray wipes it after).
        `trusted` skips RSA re-validation for blobs the module authenticated."""
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_der_private_key(
                der, password=None, unsafe_skip_rsa_key_validation=trusted
            )
        except (ValueError, TypeError) as exc:
            raise InvalidKeyMaterial(f"not a valid PKCS#8 private key: {exc}") from None
        return cls(key)

    @classmethod
    def from_pem(cls, pem: bytes) -> "PrivateMaterial":
        """An unencrypted PEM private key of any kind (the caller checks `kind`)."""
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidKeyMaterial(f"not an unencrypted PEM private key ({exc})") from None
        return cls(key)


@dataclass(eq=False)
class PublicMaterial:
    """An asymmetric public key; `key` is the `cryptography` public key object."""

    key: Any = field(repr=False)
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = _kind_of_public(self.key)

    def wipe(self) -> None:
        """Nothing secret to clear: present so every material answers `wipe()`."""

    def to_bytes(self) -> bytes:
        """SubjectPublicKeyInfo DER."""
        from cryptography.hazmat.primitives import serialization

        return self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_spki(cls, der: bytes) -> "PublicMaterial":
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError) as exc:
            raise InvalidKeyMaterial(f"not a valid SubjectPublicKeyInfo: {exc}") from None
        return cls(key)


Material = SecretMaterial | PrivateMaterial | PublicMaterial
