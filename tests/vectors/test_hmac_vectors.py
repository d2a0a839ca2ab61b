"""HMAC known answers through the registry rows: RFC 4231 (SHA-224/256/384/512) and RFC 2202 (SHA-1).

RFC 4231 test case 5 gives a 128-bit truncated MAC: it runs through the *_HMAC_GENERAL row with
CK_MAC_GENERAL_PARAMS = 16.
"""

from __future__ import annotations

import pytest
from vectorfiles import nist_records, unhex

from emulator.crypto.material import SecretMaterial
from pkcs11_shim.constants import Mechanism
from pkcs11_shim.mechanisms.registry import REGISTRY

FILES = (
    (Mechanism.SHA_1_HMAC, Mechanism.SHA_1_HMAC_GENERAL, 20, "rfc-2202-sha1"),
    (Mechanism.SHA224_HMAC, Mechanism.SHA224_HMAC_GENERAL, 28, "rfc-4231-sha224"),
    (Mechanism.SHA256_HMAC, Mechanism.SHA256_HMAC_GENERAL, 32, "rfc-4231-sha256"),
    (Mechanism.SHA384_HMAC, Mechanism.SHA384_HMAC_GENERAL, 48, "rfc-4231-sha384"),
    (Mechanism.SHA512_HMAC, Mechanism.SHA512_HMAC_GENERAL, 64, "rfc-4231-sha512"),
)


def _vectors() -> list:
    out = []
    for plain, general, size, name in FILES:
        for i, r in enumerate(nist_records(f"HMAC/{name}.txt", "Len")):
            out.append(pytest.param(plain, general, size, r, id=f"{name}-{i}"))
    return out


@pytest.mark.parametrize(("plain", "general", "size", "vector"), _vectors())
def test_hmac(plain: int, general: int, size: int, vector: dict) -> None:
    key = SecretMaterial("GENERIC", unhex(vector["Key"]))
    message, expected = unhex(vector["Msg"]), unhex(vector["MD"])
    if len(expected) == size:
        spec = REGISTRY.get(plain)
        param = None
    else:
        spec = REGISTRY.get(general)
        param = len(expected)
        spec.validate(param)
    assert spec.sign(key, param).oneshot(message) == expected
    op = spec.sign(key, param)
    for i in range(0, len(message), 7):
        op.update(message[i:i + 7])
    assert op.final() == expected
    spec.verify(key, param).oneshot(message, expected)
