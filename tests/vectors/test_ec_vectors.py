"""Elliptic-curve known answers through the registry rows: NIST FIPS 186-3 ECDSA SigVer (P-256, P-384,
P-521; hashed rows and raw CKM_ECDSA over our own digest), secp256k1 SigGen (as verification), X25519
(RFC 7748 §5.2) through CKM_ECDH1_DERIVE with CKD_NULL, Ed25519 (the `sign.input` list) and Ed448
(RFC 8032) through CKM_EDDSA, whose signatures are deterministic, so they are compared exactly."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, x25519
from vectorfiles import lines, nist_records, sample, unhex

from emulator.crypto import digest as digest_crypto
from emulator.crypto.material import PrivateMaterial, PublicMaterial
from pkcs11_shim.constants import CKR, KDF, KeyType, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import params
from pkcs11_shim.mechanisms.registry import REGISTRY

CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1(), "K-256": ec.SECP256K1()}
HASHED = {"SHA-1": (Mechanism.ECDSA_SHA1, "SHA1"), "SHA-224": (Mechanism.ECDSA_SHA224, "SHA224"),
          "SHA-256": (Mechanism.ECDSA_SHA256, "SHA256"), "SHA-384": (Mechanism.ECDSA_SHA384, "SHA384"),
          "SHA-512": (Mechanism.ECDSA_SHA512, "SHA512")}


def _signature(vector: dict, curve: ec.EllipticCurve) -> bytes:
    half = (curve.key_size + 7) // 8
    return int(vector["R"], 16).to_bytes(half, "big") + int(vector["S"], 16).to_bytes(half, "big")


def _sigver_vectors() -> list:
    records = [r for r in nist_records("asymmetric/ECDSA/FIPS_186-3/SigVer.rsp", "Msg")
               if r["section"].split(",")[0] in CURVES]
    return [pytest.param(r, id=f"{r['section']}-{i}") for i, r in enumerate(records)]


@pytest.mark.parametrize("vector", _sigver_vectors())
def test_ecdsa_sigver(vector: dict) -> None:
    curve_name, hash_label = vector["section"].split(",")
    curve = CURVES[curve_name]
    mechanism, hash_name = HASHED[hash_label]
    valid = vector["Result"].startswith("P")
    try:
        key = ec.EllipticCurvePublicNumbers(int(vector["Qx"], 16), int(vector["Qy"], 16), curve).public_key()
    except ValueError:
        assert not valid  # an off-curve Q is one of the failing cases
        return
    public = PublicMaterial(key)
    message, signature = unhex(vector["Msg"]), _signature(vector, curve)
    hashed = digest_crypto.digest(hash_name, message)
    for spec, data in ((REGISTRY.get(mechanism), message), (REGISTRY.get(Mechanism.ECDSA), hashed)):
        if valid:
            spec.verify(public, None).oneshot(data, signature)
        else:
            with pytest.raises(PKCS11Error) as err:
                spec.verify(public, None).oneshot(data, signature)
            assert err.value.rv == CKR.SIGNATURE_INVALID


def _secp256k1_vectors() -> list:
    records = nist_records("asymmetric/ECDSA/SECP256K1/SigGen.txt", "Msg")
    return [pytest.param(r, id=f"{r['section']}-{i}") for i, r in enumerate(sample(records, 60))]


@pytest.mark.parametrize("vector", _secp256k1_vectors())
def test_secp256k1_siggen_verifies(vector: dict) -> None:
    curve = CURVES["K-256"]
    mechanism, _ = HASHED[vector["section"].split(",")[1]]
    private = PrivateMaterial(ec.derive_private_key(int(vector["d"], 16), curve))
    spec = REGISTRY.get(mechanism)
    message = unhex(vector["Msg"])
    spec.verify(private.public(), None).oneshot(message, _signature(vector, curve))
    # Our own signature over the same message verifies too (ECDSA is randomised).
    spec.verify(private.public(), None).oneshot(message, spec.sign(private, None).oneshot(message))


def _x25519_vectors() -> list:
    return [pytest.param(r, id=r["COUNT"]) for r in nist_records("asymmetric/X25519/rfc7748.txt", "COUNT")]


@pytest.mark.parametrize("vector", _x25519_vectors())
def test_x25519_ecdh1_derive(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.ECDH1_DERIVE)
    private = PrivateMaterial(x25519.X25519PrivateKey.from_private_bytes(unhex(vector["INPUT_SCALAR"])))
    param = params.Ecdh1DeriveParams(KDF.NULL, b"", unhex(vector["INPUT_U"]))
    spec.validate(param)
    derived = spec.derive(private, param, KeyType.GENERIC_SECRET, None)
    assert derived.value == unhex(vector["OUTPUT_U"])


def _ed25519_vectors() -> list:
    out = []
    for i, line in enumerate(sample(list(lines("asymmetric/Ed25519/sign.input")), 64)):
        secret_public, public, message, signature_message, _ = line.split(":")
        out.append(pytest.param(unhex(secret_public)[:32], unhex(public), unhex(message),
                                unhex(signature_message)[:64], id=f"line{i}"))
    return out


@pytest.mark.parametrize(("secret", "public", "message", "signature"), _ed25519_vectors())
def test_ed25519(secret: bytes, public: bytes, message: bytes, signature: bytes) -> None:
    spec = REGISTRY.get(Mechanism.EDDSA)
    private = PrivateMaterial(ed25519.Ed25519PrivateKey.from_private_bytes(secret))
    assert spec.sign(private, None).oneshot(message) == signature
    op = spec.sign(private, None)
    op.update(message[:5])
    op.update(message[5:])
    assert op.final() == signature
    pub = PublicMaterial(ed25519.Ed25519PublicKey.from_public_bytes(public))
    spec.verify(pub, None).oneshot(message, signature)
    # PKCS#11 3.0 §2.3.14: with CK_EDDSA_PARAMS an Ed25519 key signs Ed25519ctx (phFlag FALSE, even with
    # no context) or Ed25519ph, which `cryptography` lacks: refused at Init, never signed as pure Ed25519.
    for variant in (params.EddsaParams(prehash=False, context=b""), params.EddsaParams(prehash=True, context=b"")):
        for factory, key in ((spec.sign, private), (spec.verify, pub)):
            with pytest.raises(PKCS11Error) as err:
                spec.validate(variant)
                factory(key, variant)
            assert err.value.rv == CKR.MECHANISM_PARAM_INVALID


def _ed448_vectors() -> list:
    return [pytest.param(r, id=r["COUNT"]) for r in nist_records("asymmetric/Ed448/rfc8032.txt", "COUNT")]


@pytest.mark.parametrize("vector", _ed448_vectors())
def test_ed448(vector: dict) -> None:
    spec = REGISTRY.get(Mechanism.EDDSA)
    if "CONTEXT" in vector:
        # Ed448 with a context is not implemented by `cryptography`: refused at C_SignInit.
        with pytest.raises(PKCS11Error) as err:
            spec.validate(params.EddsaParams(prehash=False, context=unhex(vector["CONTEXT"])))
        assert err.value.rv == CKR.MECHANISM_PARAM_INVALID
        return
    private = PrivateMaterial(ed448.Ed448PrivateKey.from_private_bytes(unhex(vector["SECRET"])))
    message, signature = unhex(vector["MESSAGE"]), unhex(vector["SIGNATURE"])
    # Ed448 always has a context (RFC 8032 §5.2): the parameter is required; phFlag FALSE with an
    # empty context is pure Ed448.
    pure = params.EddsaParams(prehash=False, context=b"")
    spec.validate(pure)
    assert spec.sign(private, pure).oneshot(message) == signature
    pub = PublicMaterial(ed448.Ed448PublicKey.from_public_bytes(unhex(vector["PUBLIC"])))
    spec.verify(pub, pure).oneshot(message, signature)
    for factory, key in ((spec.sign, private), (spec.verify, pub)):
        with pytest.raises(PKCS11Error) as err:
            factory(key, None)
        assert err.value.rv == CKR.MECHANISM_PARAM_INVALID
