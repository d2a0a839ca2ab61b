"""The one mechanism registry: CKM number -> what the mechanism can do and how.

A row (`MechanismSpec`) carries the CK_MECHANISM_INFO data (flags, key sizes in the unit the
specification names for the mechanism), the key types it accepts, the name of its parameter reader
(`abi.mechanism_params.READERS`), a validator, and the implementation callables. Family modules
(`digest`, `mac`, `aes`, ...) each offer `register(registry)`; the registry loads a family when one
of its mechanisms is first used, so importing it never imports the families (which import it), and
a signing tool never loads the PQC, KDF or AEAD families.

Which family holds a number, and the CK_MECHANISM_INFO of every row, come from `catalogue.ROWS`: data
generated from the rows themselves (`python -m pkcs11_shim.mechanisms.registry` rewrites it; a test
fails when it is stale), so C_GetMechanismList and C_GetMechanismInfo answer without importing any
family. A number the catalogue lacks loads every family before it is refused.

Implementation signatures (material classes from `emulator.crypto.material`; op classes in `ops`):

    encrypt(material, param) -> CipherOp          decrypt(material, param) -> CipherOp
    sign(material, param) -> SignOp               verify(material, param) -> VerifyOp
    sign_recover(material, param) -> SignOp       verify_recover(material, param) -> RecoverOp
    digest(param) -> DigestOp
    wrap(wrapping_material, param, target_material) -> bytes
    unwrap(unwrapping_material, param, wrapped, target_kind, value_len) -> Material
    generate(param, key_type, value_len) -> SecretMaterial
    generate_pair(param, public_attrs, private_attrs) -> PrivateMaterial
    derive(base_material, param, key_type, value_len, resolve_key) -> SecretMaterial
        (resolve_key(handle) -> material of another key the parameter names, checked for CKA_DERIVE)

A primitive's failure inside an implementation, or inside the operation object it returns, becomes the
code `failures.BY_OPERATION` names for that operation, or the row's own `failure_codes`: the row is
built with its implementations wrapped, so family modules never catch emulator errors.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import constants
from ..constants import CKR, Mechanism, MechanismFlag
from ..errors import FailureCodes, PKCS11Error

Impl = Callable[..., Any] | None


def no_parameter(param: Any) -> None:
    """The validator of a mechanism without a parameter."""
    if param is not None:
        raise PKCS11Error(CKR.MECHANISM_PARAM_INVALID, "this mechanism takes no parameter")


#: Which implementation field each CK_MECHANISM_INFO flag promises.
FLAG_FIELDS: tuple[tuple[int, str], ...] = (
    (MechanismFlag.ENCRYPT, "encrypt"),
    (MechanismFlag.DECRYPT, "decrypt"),
    (MechanismFlag.DIGEST, "digest"),
    (MechanismFlag.SIGN, "sign"),
    (MechanismFlag.SIGN_RECOVER, "sign_recover"),
    (MechanismFlag.VERIFY, "verify"),
    (MechanismFlag.VERIFY_RECOVER, "verify_recover"),
    (MechanismFlag.GENERATE, "generate"),
    (MechanismFlag.GENERATE_KEY_PAIR, "generate_pair"),
    (MechanismFlag.WRAP, "wrap"),
    (MechanismFlag.UNWRAP, "unwrap"),
    (MechanismFlag.DERIVE, "derive"),
    (MechanismFlag.ENCAPSULATE, "encapsulate"),  # PKCS#11 3.2 C_EncapsulateKey
    (MechanismFlag.DECAPSULATE, "decapsulate"),
)


def ckm_name(mechanism: int) -> str:
    """CKM_ name of a number: python-pkcs11's enum, else `constants`."""
    try:
        # python-pkcs11 keeps the deprecated numbers (single DES, MD5) as `_DES_ECB` ...
        return "CKM_" + Mechanism(mechanism).name.lstrip("_")
    except ValueError:
        pass
    for attr, value in vars(constants).items():
        if attr.startswith("CKM_") and value == mechanism:
            return attr
    return f"CKM_0x{mechanism:x}"


@dataclass(frozen=True, eq=False)
class MechanismSpec:
    """One mechanism. `flags` must list exactly the operations that have an implementation."""

    mechanism: int
    flags: int
    min_key: int = 0
    max_key: int = 0
    key_types: frozenset[int] = frozenset()
    param_kind: str = "none"
    validate: Callable[[Any], None] = no_parameter
    encrypt: Impl = None
    decrypt: Impl = None
    sign: Impl = None
    sign_recover: Impl = None
    verify: Impl = None
    verify_recover: Impl = None
    digest: Impl = None
    wrap: Impl = None
    #: Optional: (wrapping material, param) -> wrap(target material) -> bytes, i.e. `wrap` with the
    #: checks that depend only on the wrapping key and the parameter made once; C_WrapKey keeps
    #: it with its cached checks, so a client wrapping under one key repeats only the crypto.
    prepare_wrap: Impl = None
    unwrap: Impl = None
    generate: Impl = None
    generate_pair: Impl = None
    derive: Impl = None
    #: Key types a generate/generate_pair row makes; the first is the default (keymgmt reads it).
    generated_key_types: tuple[int, ...] = ()
    #: 3.0 message-based factories (C_MessageEncryptInit ...); the row's flags carry CKF_MESSAGE_*.
    message_encrypt: Impl = None
    message_decrypt: Impl = None
    message_sign: Impl = None
    message_verify: Impl = None
    #: 3.2 KEMs: encapsulate(public, param) -> (ciphertext, secret); decapsulate(private, param,
    #: ciphertext) -> secret; encapsulated_len(public) -> ciphertext length (the length query).
    encapsulate: Impl = None
    decapsulate: Impl = None
    encapsulated_len: Impl = None
    name: str = ""  # filled from the number when not given
    #: What this row's primitive failures mean where they differ from `failures.BY_OPERATION`:
    #: implementation field -> {emulator error class: CKR}.
    failure_codes: Mapping[str, FailureCodes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", ckm_name(self.mechanism))
        for flag, name in FLAG_FIELDS:
            has_flag = bool(self.flags & flag)
            has_impl = getattr(self, name) is not None
            if has_flag != has_impl:
                raise ValueError(f"{self.name}: flag {flag.name} and field {name!r} disagree")
        if self.prepare_wrap is not None and self.wrap is None:
            raise ValueError(f"{self.name}: prepare_wrap without wrap")
        from . import failures  # with the first row: a process that only lists mechanisms never needs it

        for name in self.failure_codes:
            if getattr(self, name, None) is None:
                raise ValueError(f"{self.name}: failure_codes for {name!r}, which the row does not implement")
        for name in {*failures.BY_OPERATION, *self.failure_codes}:
            fn = getattr(self, name)
            if fn is not None:
                object.__setattr__(self, name, failures.implementation(name, fn, self.failure_codes))

    def info(self) -> tuple[int, int, int]:
        """(ulMinKeySize, ulMaxKeySize, flags) for C_GetMechanismInfo."""
        return self.min_key, self.max_key, int(self.flags)


#: A catalogue row: (CKM number, family, CK_MECHANISM_INFO flags, ulMinKeySize, ulMaxKeySize).
CatalogueRow = tuple[int, str, int, int, int]


class Registry:
    """Mechanism rows by number, filled by the family modules' `register()` on first use."""

    def __init__(self, families: tuple[str, ...], catalogue: tuple[CatalogueRow, ...] = ()) -> None:
        self._families = families
        self._catalogue = {row[0]: row for row in catalogue}
        self._rows: dict[int, MechanismSpec] = {}
        self._family_of: dict[int, str] = {}
        self._loaded: set[str] = set()
        self._all_loaded = False
        self._lock = threading.RLock()  # a family whose import asks the registry must not hang

    def add(self, spec: MechanismSpec) -> None:
        if spec.mechanism in self._rows:
            raise ValueError(f"mechanism {spec.name} (0x{spec.mechanism:x}) registered twice")
        self._rows[spec.mechanism] = spec

    def _load_family(self, family: str) -> None:
        """Import `family` and add its rows (the caller holds the lock); all or none of them."""
        if family in self._loaded:
            return
        before = set(self._rows)
        try:
            importlib.import_module(f"{__package__}.{family}").register(self)
        except BaseException:
            for mechanism in set(self._rows) - before:
                del self._rows[mechanism]
            raise
        for mechanism in set(self._rows) - before:
            self._family_of[mechanism] = family
        self._loaded.add(family)

    def _load_all(self) -> None:
        if self._all_loaded:
            return
        with self._lock:
            for family in self._families:
                self._load_family(family)
            self._all_loaded = True

    def _load_for(self, mechanism: int) -> None:
        row = self._catalogue.get(mechanism)
        if row is None:
            self._load_all()  # only the rows themselves can say that a number is not there
            return
        _number, family, _flags, _min, _max = row
        with self._lock:
            self._load_family(family)

    def get(self, mechanism: int) -> MechanismSpec:
        spec = self._rows.get(int(mechanism))
        if spec is not None:
            return spec
        self._load_for(int(mechanism))
        try:
            return self._rows[int(mechanism)]
        except KeyError:
            raise PKCS11Error(CKR.MECHANISM_INVALID, f"mechanism 0x{int(mechanism):x} not supported") from None

    def __contains__(self, mechanism: int) -> bool:
        if int(mechanism) not in self._rows:
            self._load_for(int(mechanism))
        return int(mechanism) in self._rows

    def all(self) -> list[MechanismSpec]:
        """Every row, by mechanism number (imports every family)."""
        self._load_all()
        return [self._rows[m] for m in sorted(self._rows)]

    def mechanisms(self) -> list[int]:
        """Every mechanism number, ascending (the order C_GetMechanismList reports), from the
        catalogue when there is one: no family is imported."""
        if self._catalogue:
            return sorted(self._catalogue)
        return [spec.mechanism for spec in self.all()]

    def info(self, mechanism: int) -> tuple[int, int, int]:
        """(ulMinKeySize, ulMaxKeySize, flags) for C_GetMechanismInfo: the row's when its family is
        loaded, else the catalogue's (CKR_MECHANISM_INVALID for a number neither has)."""
        spec = self._rows.get(int(mechanism))
        if spec is None:
            row = self._catalogue.get(int(mechanism))
            if row is not None:
                _number, _family, flags, min_key, max_key = row
                return min_key, max_key, flags
            spec = self.get(mechanism)
        return spec.info()

    def loaded_families(self) -> set[str]:
        """The families imported so far."""
        return set(self._loaded)

    def family_of(self, mechanism: int) -> str:
        """The family whose `register()` added `mechanism` (the family must be loaded)."""
        return self._family_of[int(mechanism)]


FAMILIES = ("digest", "mac", "generic", "aes", "aesmodes", "des3", "keywrap", "rsa", "ec", "edwards", "derive",
            "mldsa", "mlkem")


def catalogue_source(registry: Registry) -> str:
    """The text of `catalogue.py` for every row of `registry` (which this loads in full)."""
    lines = [
        '"""Every mechanism row\'s family and CK_MECHANISM_INFO, for the registry to answer',
        "C_GetMechanismList and C_GetMechanismInfo and to find a mechanism's family without importing any.",
        "",
        "Generated from the families' rows; do not edit. After changing a row, rewrite it with",
        "",
        "    .venv/bin/python -m pkcs11_shim.mechanisms.registry",
        "",
        'tests/mechanisms/test_catalogue.py fails while it is stale."""',
        "",
        "#: (CKM number, family, CK_MECHANISM_INFO flags, ulMinKeySize, ulMaxKeySize), by number.",
        "ROWS: tuple[tuple[int, str, int, int, int], ...] = (",
    ]
    for spec in registry.all():
        min_key, max_key, flags = spec.info()
        lines.append(f'    (0x{spec.mechanism:08x}, "{registry.family_of(spec.mechanism)}", 0x{flags:08x}, '
                     f"{min_key}, {max_key}),  # {spec.name}")
    lines.append(")")
    return "\n".join(lines) + "\n"


def _catalogue_rows() -> tuple[CatalogueRow, ...]:
    try:
        from .catalogue import ROWS
    except ImportError:  # not generated yet: every first use loads every family
        return ()
    return ROWS


REGISTRY = Registry(FAMILIES, _catalogue_rows())


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).with_name("catalogue.py")
    target.write_text(catalogue_source(Registry(FAMILIES)))
    print(target)
