"""Every key type and application `generatekey` offers works in a world made by `new-world` with the
default security assurances (the tool's own templates satisfy the checks it enforces on others), and
each key does its job through PKCS#11 in a fresh process."""

from __future__ import annotations

import json
import textwrap

import pytest

from worldenv import SO, World, python_child

#: generatekey type -> (extra parameters, what the probe does with it)
TYPES = {
    "RSA": (["size=2048"], "sign"), "EC": (["curve=NISTP256"], "sign"), "ECDSA": (["curve=NISTP384"], "sign"),
    "ECDH": (["curve=NISTP256"], "derive"), "AES": (["size=256"], "encrypt"), "DES3": ([], "encrypt"),
    "HMAC": (["size=256"], "mac"), "HMACSHA1": (["size=160"], "mac"), "HMACSHA256": (["size=256"], "mac"),
    "HMACSHA384": (["size=384"], "mac"), "HMACSHA512": (["size=512"], "mac"), "Ed25519": ([], "sign"),
    "ML-DSA": ([], "sign"), "ML-KEM": ([], "kem"),
}
APPS = ("simple", "pkcs11")

PROBE = textwrap.dedent("""
    import json, sys
    import pkcs11
    from pkcs11 import Attribute as A, KDF, KeyType, Mechanism as M, ObjectClass as C
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    SIGN = {"RSA": M.SHA256_RSA_PKCS, "EC": M.ECDSA_SHA256, "ECDSA": M.ECDSA_SHA384, "Ed25519": M.EDDSA,
            "ML-DSA": M.ML_DSA}
    MAC = {"HMAC": M.SHA256_HMAC, "HMACSHA1": M.SHA_1_HMAC, "HMACSHA256": M.SHA256_HMAC,
           "HMACSHA384": M.SHA384_HMAC, "HMACSHA512": M.SHA512_HMAC}
    CIPHER = {"AES": (M.AES_CBC_PAD, bytes(16)), "DES3": (M.DES3_CBC_PAD, bytes(8))}
    OPEN = {A.SENSITIVE: False, A.EXTRACTABLE: True, A.PRIVATE: False}  # session secrets the probe compares
    data = b"used through PKCS#11"
    results = {}
    token = pkcs11.lib(sys.argv[1]).get_token(token_label="loadshared accelerator")
    with token.open(rw=True) as s:
        for label, (key_type, use) in json.loads(sys.argv[2]).items():
            try:
                if use in ("sign", "derive", "kem"):
                    [priv] = list(s.get_objects({A.CLASS: C.PRIVATE_KEY, A.LABEL: label}))
                    [pub] = list(s.get_objects({A.CLASS: C.PUBLIC_KEY, A.LABEL: label}))
                else:
                    [key] = list(s.get_objects({A.CLASS: C.SECRET_KEY, A.LABEL: label}))
                if use == "sign":
                    ok = pub.verify(data, priv.sign(data, mechanism=SIGN[key_type]), mechanism=SIGN[key_type])
                elif use == "mac":
                    ok = key.verify(data, key.sign(data, mechanism=MAC[key_type]), mechanism=MAC[key_type])
                elif use == "encrypt":
                    mech, iv = CIPHER[key_type]
                    ct = key.encrypt(data, mechanism=mech, mechanism_param=iv)
                    ok = ct != data and key.decrypt(ct, mechanism=mech, mechanism_param=iv) == data
                elif use == "derive":
                    peer = ec.generate_private_key(ec.SECP256R1())
                    point = peer.public_key().public_bytes(serialization.Encoding.X962,
                                                           serialization.PublicFormat.UncompressedPoint)
                    secret = priv.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=M.ECDH1_DERIVE,
                                             mechanism_param=(KDF.NULL, None, point), template=OPEN)
                    mine = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(pub[A.EC_POINT])[2:])
                    ok = secret[A.VALUE] == peer.exchange(ec.ECDH(), mine)
                else:
                    ct, shared = pub.encapsulate_key(KeyType.GENERIC_SECRET, 256, template=OPEN)
                    ok = priv.decapsulate_key(ct, KeyType.GENERIC_SECRET, 256, template=OPEN)[A.VALUE] == shared[A.VALUE]
                results[label] = "ok" if ok else "WRONG RESULT"
            except Exception as exc:
                results[label] = f"{type(exc).__name__} {exc}"
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    assert SO.exists(), "build the library first: make"
    world = World(tmp_path_factory.mktemp("gen-types"))
    world.new_world()
    outcomes, labels = {}, {}
    for app in APPS:
        for key_type, (extra, use) in TYPES.items():
            label = f"{app}-{key_type.lower()}"
            ident = [f"ident={label}"] if app == "simple" else []
            r = world.generatekey("--batch", app, f"type={key_type}", "protect=module", *extra, *ident,
                                  f"plainname={label}", check=False)
            outcomes[(app, key_type)] = (r.returncode, r.stderr.strip())
            labels[label] = (key_type, use)
    result = python_child(f"import sys; sys.argv = ['probe', {str(SO)!r}, {json.dumps(labels)!r}]\n" + PROBE, world)
    assert result.returncode == 0, result.stderr
    return outcomes, json.loads(result.stdout)


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("key_type", sorted(TYPES))
def test_generatekey_type_works_in_a_new_world(generated, app, key_type):
    outcomes, used = generated
    assert outcomes[(app, key_type)] == (0, ""), outcomes[(app, key_type)]
    assert used[f"{app}-{key_type.lower()}"] == "ok"
