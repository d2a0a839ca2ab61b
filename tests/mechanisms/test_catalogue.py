"""The registry's catalogue (generated data: each row's family and CK_MECHANISM_INFO) and the loading
it allows: one family per first use, none for C_GetMechanismList/Info."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkcs11_shim.constants import CKR, Mechanism
from pkcs11_shim.errors import PKCS11Error
from pkcs11_shim.mechanisms import catalogue
from pkcs11_shim import constants
from pkcs11_shim.mechanisms.registry import FAMILIES, REGISTRY, Registry, catalogue_source


def fresh() -> Registry:
    """A registry like the library's, with no family loaded yet."""
    return Registry(FAMILIES, catalogue.ROWS)


def test_catalogue_is_current() -> None:
    # After a row changes: .venv/bin/python -m pkcs11_shim.mechanisms.registry
    assert Path(catalogue.__file__).read_text() == catalogue_source(Registry(FAMILIES))


def test_list_and_info_load_no_family() -> None:
    registry = fresh()
    assert registry.mechanisms() == [spec.mechanism for spec in REGISTRY.all()]
    assert [registry.info(m) for m in registry.mechanisms()] == [spec.info() for spec in REGISTRY.all()]
    assert registry.loaded_families() == set()


@pytest.mark.parametrize(("mechanism", "family"), [
    (Mechanism.SHA256_RSA_PKCS, "rsa"),
    (Mechanism.AES_KEY_WRAP_PAD, "keywrap"),
    (Mechanism.ECDSA_SHA256, "ec"),
    (constants.CKM_HKDF_DERIVE, "derive"),
    (Mechanism.ML_DSA, "mldsa"),
])
def test_first_use_loads_only_its_family(mechanism: int, family: str) -> None:
    registry = fresh()
    assert registry.get(mechanism) is not None and mechanism in registry
    assert registry.loaded_families() == {family}
    assert registry.get(mechanism).info() == REGISTRY.get(mechanism).info()


def test_unknown_number_is_refused_after_every_family_loaded() -> None:
    registry = fresh()
    with pytest.raises(PKCS11Error) as raised:
        registry.get(Mechanism.DSA)  # a number no family offers
    assert raised.value.rv == CKR.MECHANISM_INVALID
    assert registry.loaded_families() == set(FAMILIES)
    with pytest.raises(PKCS11Error) as raised:
        fresh().info(Mechanism.DSA)
    assert raised.value.rv == CKR.MECHANISM_INVALID


def test_failed_family_leaves_no_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from pkcs11_shim.mechanisms import rsa

    def half(registry: Registry) -> None:
        real(registry)
        raise RuntimeError("family failed after its rows")

    real = rsa.register
    monkeypatch.setattr(rsa, "register", half)
    registry = fresh()
    with pytest.raises(RuntimeError):
        registry.get(Mechanism.RSA_PKCS)
    assert registry.loaded_families() == set()
    monkeypatch.setattr(rsa, "register", real)
    assert registry.get(Mechanism.RSA_PKCS).mechanism == Mechanism.RSA_PKCS
