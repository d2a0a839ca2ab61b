"""Slot and token management (PKCS#11 3.0 §5.5)."""

from __future__ import annotations

import time
from typing import Any

from .. import library, mechanism_policy
from ..constants import CK_EFFECTIVELY_INFINITE, CK_UNAVAILABLE_INFORMATION, CKR
from ..errors import PKCS11Error
from ..slots import MANUFACTURER, MAX_PIN_LEN, MIN_PIN_LEN, MODEL
from ..version import LIBRARY_VERSION
from . import marshal
from .handlers import handler


@handler("C_GetSlotList")
def c_get_slot_list(token_present: int, p_slot_list: Any, pul_count: Any) -> int:
    lib = library.state()
    marshal.require(pul_count)
    if p_slot_list == marshal.ffi.NULL:
        lib.slots.refresh()  # §5.5.1: the list may change only on a length query
    # Every slot holds a token (the spare holds an uninitialised one), so both lists are equal.
    return marshal.deliver_ulongs(p_slot_list, pul_count, lib.slots.slot_ids())


@handler("C_GetSlotInfo")
def c_get_slot_info(slot_id: int, p_info: Any) -> None:
    lib = library.state()
    token = lib.slots.get(slot_id)
    marshal.require(p_info)
    description = "nShield module (accelerator)" if token.is_accelerator else f"softshield token slot {slot_id}"
    marshal.fill_text(p_info.slotDescription, description)
    marshal.fill_text(p_info.manufacturerID, MANUFACTURER)
    p_info.flags = lib.slots.slot_flags(token)
    p_info.hardwareVersion.major, p_info.hardwareVersion.minor = LIBRARY_VERSION
    p_info.firmwareVersion.major, p_info.firmwareVersion.minor = LIBRARY_VERSION


@handler("C_GetTokenInfo")
def c_get_token_info(slot_id: int, p_info: Any) -> None:
    lib = library.state()
    token = lib.slots.get(slot_id)
    marshal.require(p_info)
    lib.slots.refresh_info(token)
    marshal.fill_text(p_info.label, token.label)
    marshal.fill_text(p_info.manufacturerID, MANUFACTURER)
    marshal.fill_text(p_info.model, MODEL)
    marshal.fill_text(p_info.serialNumber, token.serial)
    p_info.flags = token.flags()
    sessions, rw_sessions = lib.sessions.counts(token)
    p_info.ulMaxSessionCount = CK_EFFECTIVELY_INFINITE
    p_info.ulSessionCount = sessions
    p_info.ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE
    p_info.ulRwSessionCount = rw_sessions
    p_info.ulMaxPinLen = MAX_PIN_LEN
    p_info.ulMinPinLen = MIN_PIN_LEN
    for field in ("ulTotalPublicMemory", "ulFreePublicMemory", "ulTotalPrivateMemory", "ulFreePrivateMemory"):
        setattr(p_info, field, CK_UNAVAILABLE_INFORMATION)
    p_info.hardwareVersion.major, p_info.hardwareVersion.minor = LIBRARY_VERSION
    p_info.firmwareVersion.major, p_info.firmwareVersion.minor = LIBRARY_VERSION
    marshal.fill_text(p_info.utcTime, time.strftime("%Y%m%d%H%M%S00", time.gmtime()))


@handler("C_GetMechanismList")
def c_get_mechanism_list(slot_id: int, p_list: Any, pul_count: Any) -> int:
    lib = library.state()
    lib.slots.get(slot_id)
    # The registry is imported by the first mechanism question, not with the slot chapter (a process
    # that lists slots never asks); its catalogue answers without importing any mechanism family.
    from ..mechanisms.registry import REGISTRY

    every = REGISTRY.mechanisms()
    offered = mechanism_policy.offered(lib.config.mechanism_rules, slot_id, set(every))
    return marshal.deliver_ulongs(p_list, pul_count, [m for m in every if m in offered])


@handler("C_GetMechanismInfo")
def c_get_mechanism_info(slot_id: int, mechanism: int, p_info: Any) -> None:
    lib = library.state()
    lib.slots.get(slot_id)
    from ..mechanisms.registry import REGISTRY  # see c_get_mechanism_list

    info = REGISTRY.info(mechanism)
    mechanism_policy.require_allowed(slot_id, mechanism)
    marshal.require(p_info)
    p_info.ulMinKeySize, p_info.ulMaxKeySize, p_info.flags = info


@handler("C_InitToken")
def c_init_token(slot_id: int, p_pin: Any, ul_pin_len: int, p_label: Any) -> None:
    lib = library.state()
    lib.slots.get(slot_id)
    marshal.require(p_label)
    if p_pin == marshal.ffi.NULL:
        raise PKCS11Error(CKR.ARGUMENTS_BAD, "no protected authentication path")
    pin = marshal.read_secret(p_pin, ul_pin_len)
    label = marshal.read_bytes(p_label, 32).decode("utf-8", errors="replace").rstrip(" \x00")
    lib.slots.init_token(slot_id, pin, label)


@handler("C_InitPIN")
def c_init_pin(h_session: int, p_pin: Any, ul_pin_len: int) -> None:
    lib = library.state()
    session = lib.sessions.get(h_session)
    lib.sessions.init_pin(session, marshal.read_optional_bytes(p_pin, ul_pin_len))


@handler("C_SetPIN")
def c_set_pin(h_session: int, p_old: Any, ul_old: int, p_new: Any, ul_new: int) -> None:
    lib = library.state()
    session = lib.sessions.get(h_session)
    lib.sessions.set_pin(session, marshal.read_optional_bytes(p_old, ul_old),
                         marshal.read_optional_bytes(p_new, ul_new))
