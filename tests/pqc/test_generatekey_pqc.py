"""`softshield generatekey type=ML-DSA` (and ML-KEM) in a Security World: the key file is made
through PKCS#11, a fresh process finds it in the accelerator slot and signs with it, its ACL can be
reduced (CKA_SIGN off) but not widened again, and bad parameter sets are refused up front."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "world"))

from worldenv import World, python_child  # noqa: E402

from pkcs11_shim.constants import CKR  # noqa: E402

CHILD = """
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
lib = pkcs11.lib({so!r})
token = lib.get_slots()[0].get_token()
with token.open(rw=True) as s:
    priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.ML_DSA, label="pqkey")
    pub = s.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.ML_DSA, label="pqkey")
    print("paramset", priv[Attribute.PARAMETER_SET], len(pub[Attribute.VALUE]))
    print("public", pub[Attribute.VALUE].hex())
    sig = priv.sign(b"world", mechanism=Mechanism.ML_DSA)
    print("verify", pub.verify(b"world", sig, mechanism=Mechanism.ML_DSA), len(sig))
    # Both usages that map onto the module's Sign permission: the ACL in kmdata loses it.
    priv[Attribute.SIGN] = False
    priv[Attribute.SIGN_RECOVER] = False
    try:
        priv.sign(b"world", mechanism=Mechanism.ML_DSA)
    except pkcs11.exceptions.PKCS11Error as exc:
        print("after-reduce", type(exc).__name__, exc)
    try:
        priv[Attribute.SIGN] = True
    except pkcs11.exceptions.PKCS11Error as exc:
        print("widen", type(exc).__name__)
"""


@pytest.fixture
def world(tmp_path) -> World:
    w = World(tmp_path)
    w.new_world()
    return w


def test_generatekey_ml_dsa(world: World) -> None:
    out = world.generatekey("simple", "type=ML-DSA", "size=44", "protect=module", "ident=pqkey",
                            "plainname=pqkey").stdout
    assert " paramset     Parameter set                      ML-DSA-44" in out
    assert (world.local / "key_simple_pqkey").is_file()
    from worldenv import SO

    # `softshield sign` picks CKM_ML_DSA for the key type; the signature verifies with `cryptography`.
    data = world.root / "data.bin"
    data.write_bytes(b"signed by softshield sign")
    out = world.cli("sign", "--key", "pkcs11:token=loadshared%20accelerator;object=pqkey;type=private",
                    "--in", str(data), "--out", str(world.root / "sig.bin")).stdout
    assert "with ML_DSA: 2420-byte signature" in out
    child = python_child(CHILD.format(so=str(SO)), world)
    lines = child.stdout.splitlines()
    public = mldsa.MLDSA44PublicKey.from_public_bytes(bytes.fromhex(lines.pop(1).split()[1]))
    public.verify((world.root / "sig.bin").read_bytes(), data.read_bytes())
    assert lines == ["paramset 1 1312", "verify True 2420",
                     f"after-reduce PKCS11Error Unmapped error code {CKR.KEY_FUNCTION_NOT_PERMITTED:#x}",
                     "widen AttributeReadOnly"], child.stdout + child.stderr


def test_generatekey_ml_kem_by_paramset(world: World) -> None:
    out = world.generatekey("simple", "type=ML-KEM", "paramset=ml-kem-1024", "protect=module", "ident=kemkey").stdout
    assert " size         Key size                           1024" in out
    assert (world.local / "key_simple_kemkey").is_file()


@pytest.mark.parametrize("params, message", [
    (("type=ML-DSA", "size=66"), "paramset: 'ML-DSA-66' is not a ML-DSA parameter set"),
    (("type=ML-DSA", "size=44", "paramset=ML-DSA-87"), "size: 44 does not match paramset=ML-DSA-87"),
    (("type=ML-KEM", "paramset=ML-KEM-512"), "paramset: 'ML-KEM-512' is not a ML-KEM parameter set"),
])
def test_generatekey_pqc_refusals(world: World, params, message) -> None:
    result = world.generatekey("simple", *params, "protect=module", "ident=bad", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
