"""Round trips through every registry row: encrypt/decrypt, sign/verify, recover, wrap/unwrap, digest,
generate, derive; multi-part equals single-part; single-part rows refuse update/final."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from mechcases import CASES, KDF_ROWS, Case, public_of

from emulator.crypto import aes as aes_crypto
from emulator.crypto import ec as ec_crypto
from emulator.crypto.material import PrivateMaterial, SecretMaterial
from pkcs11_shim.constants import CKR, Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY

F = MechanismFlag


def _cases(flag: int) -> list:
    return [pytest.param(c, id=c.id()) for c in CASES
            if REGISTRY.get(c.mechanism).flags & flag and c.mechanism not in KDF_ROWS]


def _spec(case: Case) -> Any:
    spec = REGISTRY.get(case.mechanism)
    spec.validate(case.param)
    return spec


def _chunks(data: bytes) -> list[bytes]:
    sizes, out, i = (1, 7, 16, 5), [], 0
    while i < len(data):
        out.append(data[i:i + sizes[len(out) % 4]])
        i += len(out[-1])
    return out


def test_every_row_has_a_case() -> None:
    covered = {c.mechanism for c in CASES}
    missing = [spec.name for spec in REGISTRY.all() if spec.mechanism not in covered]
    assert missing == []


@pytest.mark.parametrize("case", _cases(F.ENCRYPT))
def test_encrypt_decrypt(case: Case, keys: dict) -> None:
    spec = _spec(case)
    key = keys[case.key]
    encrypted = spec.encrypt(public_of(key), case.param).oneshot(case.data)
    assert encrypted != case.data
    decrypted = spec.decrypt(key, case.param).oneshot(encrypted)
    if case.mechanism == Mechanism.RSA_X_509:
        # Raw RSA returns k bytes: the input, left-padded with zeros.
        assert decrypted == case.data.rjust(256, b"\0")
    else:
        assert decrypted == case.data
    if case.deterministic:
        assert spec.encrypt(public_of(key), case.param).oneshot(case.data) == encrypted
    if not case.multipart:
        for op in (spec.encrypt(public_of(key), case.param), spec.decrypt(key, case.param)):
            with pytest.raises(PKCS11Error) as err:
                op.update(case.data)
            assert err.value.rv == CKR.OPERATION_NOT_INITIALIZED
        return
    op = spec.encrypt(key, case.param)
    assert b"".join(op.update(part) for part in _chunks(case.data)) + op.final() == encrypted
    op = spec.decrypt(key, case.param)
    assert b"".join(op.update(part) for part in _chunks(encrypted)) + op.final() == case.data


@pytest.mark.parametrize("case", _cases(F.SIGN))
def test_sign_verify(case: Case, keys: dict) -> None:
    spec = _spec(case)
    key = keys[case.key]
    signature = spec.sign(key, case.param).oneshot(case.data)
    spec.verify(public_of(key), case.param).oneshot(case.data, signature)
    if case.deterministic:
        assert spec.sign(key, case.param).oneshot(case.data) == signature
    if isinstance(case.param, int):  # *_GENERAL: CK_MAC_GENERAL_PARAMS is the output length
        assert len(signature) == case.param
    if not case.multipart:
        with pytest.raises(PKCS11Error) as err:
            spec.sign(key, case.param).update(case.data)
        assert err.value.rv == CKR.OPERATION_NOT_INITIALIZED
        with pytest.raises(PKCS11Error) as err:
            spec.verify(public_of(key), case.param).final(signature)
        assert err.value.rv == CKR.OPERATION_NOT_INITIALIZED
        return
    op = spec.sign(key, case.param)
    for part in _chunks(case.data):
        op.update(part)
    multi = op.final()
    if case.deterministic:
        assert multi == signature
    op = spec.verify(public_of(key), case.param)
    for part in _chunks(case.data):
        op.update(part)
    op.final(multi)
    spec.verify(public_of(key), case.param).oneshot(case.data, multi)


@pytest.mark.parametrize("mechanism", [Mechanism.RSA_PKCS, Mechanism.RSA_X_509])
def test_sign_recover_verify_recover(mechanism: int, keys: dict) -> None:
    spec = REGISTRY.get(mechanism)
    key = keys["rsa2048"]
    signature = spec.sign_recover(key, None).oneshot(b"recover me")
    recovered = spec.verify_recover(key.public(), None).oneshot(signature)
    assert recovered == (b"recover me" if mechanism == Mechanism.RSA_PKCS else b"recover me".rjust(256, b"\0"))


def _targets(keys: dict) -> list[tuple[str, Any]]:
    return [("AES", keys["aes256"]), ("GENERIC", keys["generic20"]), ("DES3", keys["des3"])]


@pytest.mark.parametrize("case", _cases(F.WRAP))
def test_wrap_unwrap(case: Case, keys: dict) -> None:
    spec = _spec(case)
    key = keys[case.key]
    for kind, target in _targets(keys):
        if case.mechanism in (Mechanism.RSA_PKCS, Mechanism.RSA_PKCS_OAEP) and len(target.value) > 190:
            continue
        wrapped = spec.wrap(public_of(key), case.param, target)
        value_len = len(target.value) if kind == "GENERIC" else None
        unwrapped = spec.unwrap(key, case.param, wrapped, kind, value_len)
        assert isinstance(unwrapped, SecretMaterial)
        assert (unwrapped.kind, unwrapped.value) == (kind, target.value)
    private = keys["p256"]
    if case.wraps_private:
        wrapped = spec.wrap(public_of(key), case.param, private)
        unwrapped = spec.unwrap(key, case.param, wrapped, "EC", None)
        assert isinstance(unwrapped, PrivateMaterial)
        assert unwrapped.to_bytes() == private.to_bytes()
    else:
        with pytest.raises(PKCS11Error) as err:
            spec.wrap(public_of(key), case.param, private)
        assert err.value.rv == CKR.KEY_NOT_WRAPPABLE


@pytest.mark.parametrize("case", _cases(F.DIGEST))
def test_digest(case: Case) -> None:
    spec = _spec(case)
    whole = spec.digest(None).oneshot(case.data)
    op = spec.digest(None)
    parts = _chunks(case.data)
    op.update(parts[0])
    twin = op.copy()
    restored = spec.digest(None)
    restored.restore(op.state())
    for each in (op, twin, restored):
        for part in parts[1:]:
            each.update(part)
        assert each.final() == whole
    keyed = spec.digest(None)
    keyed.update_key(b"key bytes")
    with pytest.raises(PKCS11Error) as err:
        keyed.state()
    assert err.value.rv == CKR.STATE_UNSAVEABLE


GENERATE = {
    Mechanism.AES_KEY_GEN: [(KeyType.AES, n, ("AES", n)) for n in (16, 24, 32)],
    Mechanism.DES3_KEY_GEN: [(KeyType.DES3, None, ("DES3", 24))],
    constants.CKM_DES_KEY_GEN: [(constants.CKK_DES, None, ("DES", 8))],
    Mechanism.GENERIC_SECRET_KEY_GEN: [(KeyType.GENERIC_SECRET, 1, ("GENERIC", 1)),
                                       (KeyType.GENERIC_SECRET, 100, ("GENERIC", 100)),
                                       (KeyType.SHA256_HMAC, 32, ("HMAC", 32))],
    constants.CKM_AES_XTS_KEY_GEN: [(constants.CKK_AES_XTS, n, ("GENERIC", n)) for n in (32, 64)],
}


@pytest.mark.parametrize("case", _cases(F.GENERATE))
def test_generate(case: Case) -> None:
    spec = _spec(case)
    for key_type, value_len, (kind, size) in GENERATE[case.mechanism]:
        assert key_type in spec.generated_key_types
        material = spec.generate(None, key_type, value_len)
        assert (material.kind, len(material.value)) == (kind, size)
        assert material.value != spec.generate(None, key_type, value_len).value
    if case.mechanism in (Mechanism.DES3_KEY_GEN, constants.CKM_DES_KEY_GEN):
        assert all(bin(b).count("1") % 2 == 1 for b in material.value)  # odd parity (FIPS 46-3)


PAIRS = {
    Mechanism.RSA_PKCS_KEY_PAIR_GEN: [({Attribute.MODULUS_BITS: 1024, Attribute.PUBLIC_EXPONENT: 3}, "RSA"),
                                      ({Attribute.MODULUS_BITS: 1024, Attribute.PUBLIC_EXPONENT: b"\x01\x01"}, "RSA")],
    Mechanism.EC_KEY_PAIR_GEN: [({Attribute.EC_PARAMS: ec_crypto.ec_params(c)}, "EC")
                                for c in ("secp256r1", "secp384r1", "secp521r1", "secp256k1")],
    Mechanism.EC_EDWARDS_KEY_PAIR_GEN: [({Attribute.EC_PARAMS: ec_crypto.ec_params("Ed25519")}, "Ed25519"),
                                        ({Attribute.EC_PARAMS: b"\x13\x0cedwards25519"}, "Ed25519"),
                                        ({Attribute.EC_PARAMS: ec_crypto.ec_params("Ed448")}, "Ed448")],
    constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN: [({Attribute.EC_PARAMS: ec_crypto.ec_params("X25519")}, "X25519"),
                                             ({Attribute.EC_PARAMS: ec_crypto.ec_params("X448")}, "X448")],
    Mechanism.ML_DSA_KEY_PAIR_GEN: [({Attribute.PARAMETER_SET: code}, "ML-DSA") for code in (1, 2, 3)],
    Mechanism.ML_KEM_KEY_PAIR_GEN: [({Attribute.PARAMETER_SET: code}, "ML-KEM") for code in (2, 3)],
}


@pytest.mark.parametrize("case", _cases(F.GENERATE_KEY_PAIR))
def test_generate_pair(case: Case) -> None:
    spec = _spec(case)
    for attrs, kind in PAIRS[case.mechanism]:
        material = spec.generate_pair(None, attrs, {})
        assert isinstance(material, PrivateMaterial)
        assert material.kind == kind
    if case.mechanism == Mechanism.RSA_PKCS_KEY_PAIR_GEN:
        numbers_ = material.key.private_numbers()
        # 0x0101 = 257 is not an exponent `cryptography` generates with; our prime search made it.
        assert (numbers_.public_numbers.e, material.key.key_size) == (257, 1024)


@pytest.mark.parametrize("case", _cases(F.DERIVE))
def test_derive(case: Case, keys: dict, second_keys: dict) -> None:
    spec = REGISTRY.get(case.mechanism)
    base = keys[case.key]
    if case.mechanism in (Mechanism.ECDH1_DERIVE, Mechanism.ECDH1_COFACTOR_DERIVE):
        other = second_keys[case.key]

        def public_data(material: Any) -> bytes:
            return material.public().key.public_bytes_raw() if material.kind == "X25519" else ec_crypto.point(material)

        mine = dataclasses.replace(case.param, public_data=public_data(other))
        theirs = dataclasses.replace(case.param, public_data=public_data(base))
        spec.validate(mine)
        for key_type, value_len, size in ((KeyType.AES, 16, 16), (KeyType.AES, 32, 32),
                                          (KeyType.GENERIC_SECRET, 20, 20), (KeyType.DES3, None, 24)):
            a = spec.derive(base, mine, key_type, value_len)
            b = spec.derive(other, theirs, key_type, value_len)
            assert a.value == b.value and len(a.value) == size
        return
    spec.validate(case.param)
    derived = spec.derive(base, case.param, KeyType.AES, 16)
    if case.mechanism == Mechanism.AES_ECB_ENCRYPT_DATA:
        expected = aes_crypto.ecb_encrypt(base.value, case.param)
    else:
        expected = aes_crypto.cbc_encrypt(base.value, case.param.iv, case.param.data)
    assert derived.value == expected[:16]
    assert spec.derive(base, case.param, KeyType.GENERIC_SECRET, None).value == expected
