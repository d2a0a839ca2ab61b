"""Which mechanisms a slot offers: the config file's allow/deny profile (see `config`).

One helper for every place that names a mechanism for a slot: C_GetMechanismList/Info and the
*Init calls (operations, key management, messages). A denied mechanism is CKR_MECHANISM_INVALID
everywhere, as on an HSM whose firmware does not have it.
"""

from __future__ import annotations

from functools import lru_cache

from . import constants
from .constants import CKR, Mechanism
from .errors import PKCS11Error


@lru_cache(maxsize=None)
def mechanism_number(name: str) -> int:
    """CKM_ name (or 0x number) -> number: python-pkcs11's enum, else `constants`."""
    text = name.strip()
    if text.lower().startswith("0x"):
        return int(text, 16)
    bare = text.upper().removeprefix("CKM_")
    try:
        return int(Mechanism[bare])
    except KeyError:
        pass
    value = getattr(constants, "CKM_" + bare, None)
    if isinstance(value, int):
        return value
    raise ValueError(f"unknown mechanism {name}")


def _apply(allowed: set[int] | None, entries: tuple[str, ...], every: set[int]) -> set[int] | None:
    allows = {mechanism_number(e.lstrip("+")) for e in entries if not e.startswith("-")}
    denies = {mechanism_number(e[1:]) for e in entries if e.startswith("-")}
    current = set(every) if allowed is None else allowed
    if allows:
        current &= allows
    return current - denies


def offered(rules: dict[int | None, tuple[str, ...]], slot_id: int, every: set[int]) -> set[int]:
    """The mechanisms of `every` that slot_id offers under the rules."""
    allowed = None
    for scope in (None, slot_id):
        if scope in rules:
            allowed = _apply(allowed, rules[scope], every)
    return set(every) if allowed is None else allowed


def is_allowed(rules: dict[int | None, tuple[str, ...]], slot_id: int, mechanism: int) -> bool:
    if not rules:
        return True
    return mechanism in offered(rules, slot_id, {mechanism})


def require_allowed(slot_id: int, mechanism: int) -> None:
    """CKR_MECHANISM_INVALID when the slot's profile leaves the mechanism out."""
    from . import library

    rules = getattr(library.state().config, "mechanism_rules", None)
    if rules and not is_allowed(rules, slot_id, mechanism):
        raise PKCS11Error(CKR.MECHANISM_INVALID, "mechanism disabled for this slot by the config file")
