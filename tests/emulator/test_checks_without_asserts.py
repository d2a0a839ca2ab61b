"""Checks that must hold under `python -O` (no asserts) and the one JSON-object reader of packages."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emulator import blobs
from emulator.crypto import escrow
from emulator.errors import BlobInvalid


@pytest.mark.parametrize(("data", "message"), [
    (b"{not json", "pkg.byok: not a BYOK package (not JSON)"),
    (b"[1, 2]", "pkg.byok: not a BYOK package"),
])
def test_json_object_refuses_what_is_not_a_json_object(data: bytes, message: str) -> None:
    with pytest.raises(BlobInvalid) as info:
        blobs.json_object(data, "pkg.byok: not a BYOK package")
    assert str(info.value) == message


def test_json_object_returns_the_object() -> None:
    assert blobs.json_object(b'{"format": 1}', "x") == {"format": 1}


def test_a_recovery_key_that_is_not_rsa_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    with pytest.raises(BlobInvalid, match="^the recovery key is not an RSA key$"):
        escrow.recovery_encrypt(spki, b"data", b"aad")
    with pytest.raises(BlobInvalid, match="^key_x: the recovery key is not an RSA key$"):
        escrow.recovery_decrypt(pkcs8, b"\x00" * 300, b"aad", "key_x")
