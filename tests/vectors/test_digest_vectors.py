"""Digest known answers through the registry rows: NIST CAVP SHAVS / SHA3VS ShortMsg and LongMsg."""

from __future__ import annotations

import pytest
from vectorfiles import nist_records, sample, unhex

from pkcs11_shim.constants import Mechanism
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY

FILES = (
    (Mechanism.SHA_1, "SHA1/SHA1"),
    (Mechanism.SHA224, "SHA2/SHA224"),
    (Mechanism.SHA256, "SHA2/SHA256"),
    (Mechanism.SHA384, "SHA2/SHA384"),
    (Mechanism.SHA512, "SHA2/SHA512"),
    (constants.CKM_SHA512_224, "SHA2/SHA512_224"),
    (constants.CKM_SHA512_256, "SHA2/SHA512_256"),
    (Mechanism.SHA3_224, "SHA3/SHA3_224"),
    (Mechanism.SHA3_256, "SHA3/SHA3_256"),
    (Mechanism.SHA3_384, "SHA3/SHA3_384"),
    (Mechanism.SHA3_512, "SHA3/SHA3_512"),
)
CAPS = {"ShortMsg": 40, "LongMsg": 12}


def _vectors() -> list:
    out = []
    for mechanism, stem in FILES:
        for kind, cap in CAPS.items():
            records = [r for r in nist_records(f"hashes/{stem}{kind}.rsp", "Len") if int(r["Len"]) % 8 == 0]
            for r in sample(records, cap):
                out.append(pytest.param(mechanism, r, id=f"{stem.split('/')[1]}-{kind}-{r['Len']}"))
    return out


@pytest.mark.parametrize(("mechanism", "vector"), _vectors())
def test_digest(mechanism: int, vector: dict) -> None:
    spec = REGISTRY.get(mechanism)
    # NIST writes the empty message as "00" with Len = 0.
    message = unhex(vector["Msg"]) if int(vector["Len"]) else b""
    expected = unhex(vector["MD"])
    assert spec.digest(None).oneshot(message) == expected
    # Multi-part, through a saved and restored state, and through a copy.
    op = spec.digest(None)
    half = len(message) // 2
    op.update(message[:half])
    resumed = spec.digest(None)
    resumed.restore(op.state())
    twin = op.copy()
    for each in (op, resumed, twin):
        each.update(message[half:])
        assert each.final() == expected
