"""The registry itself: the rows the library core promises, their CK_MECHANISM_INFO, the table rules."""

from __future__ import annotations

import pytest

from pkcs11_shim.constants import CKF_MESSAGE_DECRYPT, CKF_MESSAGE_ENCRYPT, KeyType, Mechanism, MechanismFlag
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import REGISTRY, MechanismSpec, Registry

F = MechanismFlag

#: mechanism -> (min, max, flags) exactly (sizes in the unit PKCS#11 names: bits for RSA/EC/EdDSA and
#: generic secret generation, bytes for AES and HMAC).
EXPECTED_INFO = {
    Mechanism.RSA_PKCS_KEY_PAIR_GEN: (1024, 4096, F.GENERATE_KEY_PAIR),
    Mechanism.RSA_PKCS: (512, 8192, F.ENCRYPT | F.DECRYPT | F.SIGN | F.SIGN_RECOVER | F.VERIFY | F.VERIFY_RECOVER
                         | F.WRAP | F.UNWRAP),
    Mechanism.RSA_X_509: (512, 8192, F.ENCRYPT | F.DECRYPT | F.SIGN | F.SIGN_RECOVER | F.VERIFY | F.VERIFY_RECOVER),
    Mechanism.RSA_PKCS_OAEP: (512, 8192, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.RSA_PKCS_PSS: (512, 8192, F.SIGN | F.VERIFY),
    Mechanism.SHA256_RSA_PKCS_PSS: (512, 8192, F.SIGN | F.VERIFY),
    constants.CKM_RSA_AES_KEY_WRAP: (512, 8192, F.WRAP | F.UNWRAP),
    Mechanism.EC_KEY_PAIR_GEN: (192, 521, F.GENERATE_KEY_PAIR | F.EC_F_P | F.EC_NAMEDCURVE | F.EC_UNCOMPRESS),
    Mechanism.ECDSA: (192, 521, F.SIGN | F.VERIFY | F.EC_F_P | F.EC_NAMEDCURVE | F.EC_UNCOMPRESS),
    Mechanism.ECDH1_DERIVE: (255, 521, F.DERIVE | F.EC_F_P | F.EC_NAMEDCURVE | F.EC_UNCOMPRESS),
    Mechanism.EC_EDWARDS_KEY_PAIR_GEN: (255, 448, F.GENERATE_KEY_PAIR),
    constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN: (255, 448, F.GENERATE_KEY_PAIR),
    Mechanism.EDDSA: (255, 448, F.SIGN | F.VERIFY),
    Mechanism.AES_KEY_GEN: (16, 32, F.GENERATE),
    Mechanism.AES_ECB: (16, 32, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.AES_CBC_PAD: (16, 32, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.AES_CTR: (16, 32, F.ENCRYPT | F.DECRYPT),
    Mechanism.AES_GCM: (16, 32, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP | CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT),
    Mechanism.AES_CMAC: (16, 32, F.SIGN | F.VERIFY),
    Mechanism.AES_KEY_WRAP: (16, 32, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.AES_KEY_WRAP_PAD: (16, 32, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.AES_KEY_WRAP_KWP: (16, 32, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.AES_ECB_ENCRYPT_DATA: (16, 32, F.DERIVE),
    Mechanism.AES_CBC_ENCRYPT_DATA: (16, 32, F.DERIVE),
    Mechanism.DES3_KEY_GEN: (0, 0, F.GENERATE),
    Mechanism.DES3_CBC_PAD: (0, 0, F.ENCRYPT | F.DECRYPT | F.WRAP | F.UNWRAP),
    Mechanism.SHA256: (0, 0, F.DIGEST),
    constants.CKM_SHA512_256: (0, 0, F.DIGEST),
    Mechanism.SHA3_512: (0, 0, F.DIGEST),
    Mechanism.SHA256_HMAC: (1, 512, F.SIGN | F.VERIFY),
    Mechanism.SHA3_256_HMAC_GENERAL: (1, 512, F.SIGN | F.VERIFY),
    Mechanism.GENERIC_SECRET_KEY_GEN: (8, 524288, F.GENERATE),
}

LIBRARY_CORE = {
    "CKM_RSA_PKCS_KEY_PAIR_GEN", "CKM_RSA_PKCS", "CKM_RSA_X_509", "CKM_RSA_PKCS_PSS", "CKM_SHA1_RSA_PKCS",
    "CKM_SHA224_RSA_PKCS", "CKM_SHA256_RSA_PKCS", "CKM_SHA384_RSA_PKCS", "CKM_SHA512_RSA_PKCS",
    "CKM_SHA1_RSA_PKCS_PSS", "CKM_SHA224_RSA_PKCS_PSS", "CKM_SHA256_RSA_PKCS_PSS", "CKM_SHA384_RSA_PKCS_PSS",
    "CKM_SHA512_RSA_PKCS_PSS", "CKM_RSA_PKCS_OAEP", "CKM_RSA_AES_KEY_WRAP", "CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA",
    "CKM_ECDSA_SHA1", "CKM_ECDSA_SHA224", "CKM_ECDSA_SHA256", "CKM_ECDSA_SHA384", "CKM_ECDSA_SHA512",
    "CKM_ECDH1_DERIVE", "CKM_EC_EDWARDS_KEY_PAIR_GEN", "CKM_EDDSA", "CKM_EC_MONTGOMERY_KEY_PAIR_GEN",
    "CKM_AES_KEY_GEN", "CKM_AES_ECB", "CKM_AES_CBC", "CKM_AES_CBC_PAD", "CKM_AES_CTR", "CKM_AES_GCM",
    "CKM_AES_CMAC", "CKM_AES_CMAC_GENERAL", "CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD", "CKM_AES_KEY_WRAP_KWP",
    "CKM_AES_ECB_ENCRYPT_DATA", "CKM_AES_CBC_ENCRYPT_DATA", "CKM_DES3_KEY_GEN", "CKM_DES3_ECB", "CKM_DES3_CBC",
    "CKM_DES3_CBC_PAD", "CKM_SHA_1", "CKM_SHA224", "CKM_SHA256", "CKM_SHA384", "CKM_SHA512", "CKM_SHA512_224",
    "CKM_SHA512_256", "CKM_SHA3_224", "CKM_SHA3_256", "CKM_SHA3_384", "CKM_SHA3_512", "CKM_SHA_1_HMAC",
    "CKM_SHA224_HMAC", "CKM_SHA256_HMAC", "CKM_SHA384_HMAC", "CKM_SHA512_HMAC", "CKM_SHA_1_HMAC_GENERAL",
    "CKM_SHA224_HMAC_GENERAL", "CKM_SHA256_HMAC_GENERAL", "CKM_SHA384_HMAC_GENERAL", "CKM_SHA512_HMAC_GENERAL",
    "CKM_SHA3_224_HMAC", "CKM_SHA3_256_HMAC", "CKM_SHA3_384_HMAC", "CKM_SHA3_512_HMAC",
    "CKM_GENERIC_SECRET_KEY_GEN",
}


def test_library_core_rows_present() -> None:
    assert LIBRARY_CORE - {spec.name for spec in REGISTRY.all()} == set()


@pytest.mark.parametrize("mechanism", list(EXPECTED_INFO), ids=lambda m: REGISTRY.get(m).name)
def test_info(mechanism: int) -> None:
    assert REGISTRY.get(mechanism).info() == EXPECTED_INFO[mechanism]


def test_all_is_sorted_and_unique() -> None:
    numbers_ = [spec.mechanism for spec in REGISTRY.all()]
    assert numbers_ == sorted(set(numbers_))
    assert all(not spec.flags & F.HW for spec in REGISTRY.all())


def test_key_types() -> None:
    assert REGISTRY.get(Mechanism.AES_GCM).key_types == {KeyType.AES}
    assert REGISTRY.get(Mechanism.SHA256_HMAC).key_types == {KeyType.GENERIC_SECRET, KeyType.SHA256_HMAC}
    assert REGISTRY.get(Mechanism.ECDH1_DERIVE).key_types == {KeyType.EC, constants.CKK_EC_MONTGOMERY}
    assert REGISTRY.get(Mechanism.SHA256).key_types == frozenset()
    assert REGISTRY.get(Mechanism.GENERIC_SECRET_KEY_GEN).generated_key_types[0] == KeyType.GENERIC_SECRET
    assert REGISTRY.get(constants.CKM_EC_MONTGOMERY_KEY_PAIR_GEN).generated_key_types == (constants.CKK_EC_MONTGOMERY,)


def test_flags_must_match_implementations() -> None:
    with pytest.raises(ValueError, match="ENCRYPT"):
        MechanismSpec(mechanism=0x80000001, flags=F.ENCRYPT)
    with pytest.raises(ValueError, match="DIGEST"):
        MechanismSpec(mechanism=0x80000001, flags=0, digest=lambda param: None)


def test_duplicate_rows_refused() -> None:
    registry = Registry(())
    registry.add(MechanismSpec(mechanism=0x80000001, flags=0))
    with pytest.raises(ValueError, match="twice"):
        registry.add(MechanismSpec(mechanism=0x80000001, flags=0))
    assert [spec.name for spec in registry.all()] == ["CKM_0x80000001"]


def test_mechanism_page_table_is_current() -> None:
    """docs/mechanisms.md's table is scripts/mechanism_table.py's output."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("mechanism_table", root / "scripts" / "mechanism_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in (root / "docs" / "mechanisms.md").read_text()
