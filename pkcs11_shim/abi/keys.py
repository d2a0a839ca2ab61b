"""Key management and random numbers (PKCS#11 3.0 §5.18-5.19)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import keymgmt, library
from ..constants import CKR
from ..errors import PKCS11Error
from . import answers, marshal
from .handlers import handler


def _session(h_session: int) -> Any:
    return library.state().sessions.get(h_session)


def make_key(h_session: int, p_mechanism: Any, p_template: Any, ul_count: int, ph_key: Any,
             make: Callable[[Any, int, Any, list], int],
             before_param: Callable[[Any, int], None] | None = None) -> None:
    """The shape of every call that makes one key under a template (C_GenerateKey, C_UnwrapKey,
    C_DeriveKey, C_DecapsulateKey, ...): `make(session, mechanism, param, raw template)` gives the
    handle, stored in *ph_key (which must not be NULL). `before_param(session, mechanism)` runs
    before the mechanism's parameter is read (C_DeriveKey checks its base key there)."""
    session = _session(h_session)
    # The arguments before the mechanism: a NULL template (count > 0) or key-handle pointer is
    # CKR_ARGUMENTS_BAD whatever the mechanism, even one the token does not know.
    marshal.require(ph_key)
    raw = marshal.read_template(p_template, ul_count)
    if before_param is not None and p_mechanism != marshal.ffi.NULL:
        before_param(session, int(p_mechanism.mechanism))
    mechanism, param = marshal.read_mechanism(p_mechanism)
    ph_key[0] = make(session, mechanism, param, raw)


def answered(make: Callable[[Any, int, Any, list], int]) -> Callable[[Any, int, Any, list], int]:
    """`make`, then the new key's attributes left for the C entry point, which answers the caller's
    next C_GetAttributeValue on it without Python (answers.stage, native/answers.h)."""

    def make_and_stage(session: Any, mechanism: int, param: Any, raw: list) -> int:
        handle = make(session, mechanism, param, raw)
        obj = session.token.objects.get(handle)
        if obj is not None:
            answers.stage(obj)
        return handle

    return make_and_stage


_generate_and_stage = answered(keymgmt.generate_key)


@handler("C_GenerateKey")
def c_generate_key(h_session: int, p_mechanism: Any, p_template: Any, ul_count: int, ph_key: Any) -> None:
    make_key(h_session, p_mechanism, p_template, ul_count, ph_key, _generate_and_stage)


@handler("C_GenerateKeyPair")
def c_generate_key_pair(h_session: int, p_mechanism: Any, p_pub: Any, ul_pub: int, p_priv: Any,
                        ul_priv: int, ph_pub: Any, ph_priv: Any) -> None:
    session = _session(h_session)
    mechanism, param = marshal.read_mechanism(p_mechanism)
    raw_pub = marshal.read_template(p_pub, ul_pub)
    raw_priv = marshal.read_template(p_priv, ul_priv)
    marshal.require(ph_pub)
    marshal.require(ph_priv)
    ph_pub[0], ph_priv[0] = handles = keymgmt.generate_key_pair(session, mechanism, param, raw_pub, raw_priv)
    # Both halves' attributes for the C entry point (native/answers.h): clients read them right away.
    objects = session.token.objects
    for half, handle in enumerate(handles):
        obj = objects.get(handle)
        if obj is not None:
            answers.stage(obj, half)


def wrap_into(session: Any, mechanism: int, param: Any, h_wrapping: int, h_key: int, p_wrapped: Any,
              pul_wrapped: Any) -> int:
    """The output half of every call that wraps a key (C_WrapKey, C_WrapKeyAuthenticated): the
    two-call convention, a length query answered without wrapping."""
    capacity = marshal.output_capacity(p_wrapped, pul_wrapped)
    out = keymgmt.wrap_key(session, mechanism, param, h_wrapping, h_key, capacity)
    if isinstance(out, int):
        return marshal.deliver_length(pul_wrapped, out)
    return marshal.deliver_read(p_wrapped, pul_wrapped, capacity, out)


@handler("C_WrapKey")
def c_wrap_key(h_session: int, p_mechanism: Any, h_wrapping: int, h_key: int, p_wrapped: Any,
               pul_wrapped: Any) -> int:
    session = _session(h_session)
    mechanism, param = marshal.read_mechanism(p_mechanism)
    return wrap_into(session, mechanism, param, h_wrapping, h_key, p_wrapped, pul_wrapped)


@handler("C_UnwrapKey")
def c_unwrap_key(h_session: int, p_mechanism: Any, h_unwrapping: int, p_wrapped: Any, ul_wrapped: int,
                 p_template: Any, ul_count: int, ph_key: Any) -> None:
    # `make_key`'s shape and order of checks, with the template recognised from the image the C entry
    # point took of it (a repeated template is not read again) and no closures made per call.
    wrapped = marshal.read_bytes(p_wrapped, ul_wrapped)
    session = _session(h_session)
    marshal.require(ph_key)
    raw, image = marshal.read_template_imaged(p_template, ul_count)
    mechanism, param = marshal.read_mechanism(p_mechanism)
    obj, memo = keymgmt.unwrap_object(session, mechanism, param, h_unwrapping, wrapped, raw, image)
    ph_key[0] = obj.handle
    answers.stage(obj, memo=memo)


@handler("C_DeriveKey")
def c_derive_key(h_session: int, p_mechanism: Any, h_base: int, p_template: Any, ul_count: int,
                 ph_key: Any) -> None:
    make_key(h_session, p_mechanism, p_template, ul_count, ph_key, lambda session, mechanism, param, raw:
             keymgmt.derive_key(session, mechanism, param, h_base, raw),
             before_param=lambda session, mechanism: keymgmt.check_derive_base(session, mechanism, h_base))


@handler("C_SeedRandom")
def c_seed_random(h_session: int, p_seed: Any, ul_seed: int) -> None:
    _session(h_session)
    keymgmt.seed_random(marshal.read_bytes(p_seed, ul_seed))


@handler("C_GenerateRandom")
def c_generate_random(h_session: int, p_random: Any, ul_len: int) -> None:
    """The checks only: on CKR_OK the C entry point fills the buffer from the kernel's CSPRNG
    (native/random_fill.h, getrandom), without the GIL and without a Python copy of the bytes."""
    library.state().sessions.get(h_session)
    if ul_len and (p_random == marshal.ffi.NULL or ul_len > marshal.MAX_DATA_LEN):
        raise PKCS11Error(CKR.ARGUMENTS_BAD)
