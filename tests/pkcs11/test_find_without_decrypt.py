"""A process that finds token keys (and reads their ordinary attributes) opens no key blob and
imports no key-component code: the login listing comes from the sealed key index, and
CKA_NFKM_HASH, the one attribute that needs the key material (a keyed hash of it), is computed
only when it is asked for, in a find template or a read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from p11env import KMDATA, ROOT, SO, USER_PIN
from pkcs11 import Attribute, KeyType
from pkcs11.attributes import AttributeMapper

from pkcs11_shim.constants import NCipherAttribute

PROBE = r"""
import json, sys
import emulator.blobs as blobs
opened = []
real = blobs.decode
def counting(raw, key, name, *a, **k):
    opened.append(name)
    return real(raw, key, name, *a, **k)
blobs.decode = counting
import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11.attributes import AttributeMapper
so, label, pin, hash_attr = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mapper = AttributeMapper()
mapper.register_handler(hash_attr, bytes, bytes)
token = pkcs11.lib(so).get_token(token_label=label)
out = {}
with token.open(user_pin=pin, attribute_mapper=mapper) as session:
    keys = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
    out["found"] = sorted(k[Attribute.LABEL] for k in keys)
    out["opened_after_find"] = len(opened)
    out["key_code_imported"] = "pkcs11_shim.attributes.keyparts" in sys.modules
    key = next(k for k in keys if k[Attribute.LABEL] == "nodecrypt-1")
    out["hash"] = key[hash_attr].hex()
    out["opened_after_hash"] = len(opened)
    by_hash = list(session.get_objects({hash_attr: bytes.fromhex(out["hash"])}))
    out["by_hash"] = [k[Attribute.LABEL] for k in by_hash]
print(json.dumps(out))
"""


def test_find_and_read_open_no_blob(token, token_label) -> None:
    mapper = AttributeMapper()
    mapper.register_handler(NCipherAttribute.NFKM_HASH, bytes, bytes)
    with token.open(user_pin=USER_PIN, rw=True, attribute_mapper=mapper) as session:
        for i in range(3):
            session.generate_key(KeyType.AES, 256, store=True, label=f"nodecrypt-{i}")
        made = next(session.get_objects({Attribute.LABEL: "nodecrypt-1"}))
        expected_hash = made[NCipherAttribute.NFKM_HASH]
    # The first process after the writes reads the new blobs once and rewrites the index; the
    # next one lists every key from the index.
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", PROBE, str(SO), token_label, USER_PIN, str(int(NCipherAttribute.NFKM_HASH))],
            capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "NFAST_KMDATA": KMDATA})
        assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"nodecrypt-0", "nodecrypt-1", "nodecrypt-2"} <= set(out["found"])
    assert out["opened_after_find"] == 0  # every label and class read without a blob
    assert out["key_code_imported"] is False  # nor the key-component code imported
    assert out["hash"] == expected_hash.hex()
    assert out["opened_after_hash"] == 1  # the one key whose hash was asked for
    assert out["by_hash"] == ["nodecrypt-1"]
