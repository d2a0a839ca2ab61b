"""Encryption, decryption, digests, signatures and the dual-function calls (PKCS#11 3.0 §5.8-5.17).

Each handler reads its arguments inside `operations.guard`, so a bad argument ends the operation as
any other error does; the operation's state (held output, final phase) is `operations`' alone."""

from __future__ import annotations

from typing import Any

from .. import library, operations
from ..errors import PKCS11Error
from . import marshal
from .handlers import handler


def _session(h_session: int) -> Any:
    return library.state().sessions.get(h_session)


def _init(kind: str, with_key: bool = True) -> Any:
    def init(h_session: int, p_mechanism: Any, h_key: int = 0) -> None:
        session = _session(h_session)
        if p_mechanism == marshal.ffi.NULL:
            # 3.0 §5.8.1 (and each *Init): a NULL mechanism ends the active operation.
            operations.end(session, kind)
            return
        mechanism, param = marshal.read_mechanism(p_mechanism)
        operations.begin(session, kind, mechanism, param, h_key if with_key else None)

    return init


def _output_step(kind: str, step: str) -> Any:
    def call(h_session: int, p_in: Any, ul_in: int, p_out: Any, pul_out: Any) -> int:
        session = _session(h_session)
        with operations.guard(session, kind):
            capacity = marshal.output_capacity(p_out, pul_out)
            data = marshal.read_bytes(p_in, ul_in)
            out = operations.run(session, kind, step, data, capacity)
            return marshal.deliver(p_out, pul_out, out)

    return call


def _final(kind: str) -> Any:
    def call(h_session: int, p_out: Any, pul_out: Any) -> int:
        session = _session(h_session)
        with operations.guard(session, kind):
            capacity = marshal.output_capacity(p_out, pul_out)
            out = operations.run(session, kind, "final", b"", capacity)
            return marshal.deliver(p_out, pul_out, out)

    return call


def _absorb(kind: str) -> Any:
    def call(h_session: int, p_part: Any, ul_part: int) -> None:
        session = _session(h_session)
        with operations.guard(session, kind):
            operations.absorb(session, kind, marshal.read_bytes(p_part, ul_part))

    return call


def _verify(kind: str) -> Any:
    def call(h_session: int, p_data: Any, ul_data: int, p_sig: Any, ul_sig: int) -> None:
        session = _session(h_session)
        with operations.guard(session, kind):
            data = marshal.read_bytes(p_data, ul_data)
            signature = marshal.read_bytes(p_sig, ul_sig)
            operations.verify(session, kind, "oneshot", data, signature)

    return call


def _verify_final(h_session: int, p_sig: Any, ul_sig: int) -> None:
    session = _session(h_session)
    with operations.guard(session, "verify"):
        operations.verify(session, "verify", "final", b"", marshal.read_bytes(p_sig, ul_sig))


# The table: function -> handler made from one of the shapes above.
for _name, _fn in {
    "C_EncryptInit": _init("encrypt"),
    "C_Encrypt": _output_step("encrypt", "oneshot"),
    "C_EncryptUpdate": _output_step("encrypt", "update"),
    "C_EncryptFinal": _final("encrypt"),
    "C_DecryptInit": _init("decrypt"),
    "C_Decrypt": _output_step("decrypt", "oneshot"),
    "C_DecryptUpdate": _output_step("decrypt", "update"),
    "C_DecryptFinal": _final("decrypt"),
    "C_DigestInit": (lambda h, m: _init("digest", with_key=False)(h, m)),
    "C_Digest": _output_step("digest", "oneshot"),
    "C_DigestUpdate": _absorb("digest"),
    "C_DigestFinal": _final("digest"),
    "C_SignInit": _init("sign"),
    "C_Sign": _output_step("sign", "oneshot"),
    "C_SignUpdate": _absorb("sign"),
    "C_SignFinal": _final("sign"),
    "C_SignRecoverInit": _init("sign_recover"),
    "C_SignRecover": _output_step("sign_recover", "oneshot"),
    "C_VerifyInit": _init("verify"),
    "C_Verify": _verify("verify"),
    "C_VerifyUpdate": _absorb("verify"),
    "C_VerifyFinal": _verify_final,
    "C_VerifyRecoverInit": _init("verify_recover"),
    "C_VerifyRecover": _output_step("verify_recover", "oneshot"),
}.items():
    handler(_name)(_fn)


@handler("C_DigestKey")
def c_digest_key(h_session: int, h_key: int) -> None:
    operations.digest_key(_session(h_session), h_key)  # an update: its error ends the digest


def _dual(first: str, second: str, feed_output: bool) -> Any:
    """Dual-function updates (§5.13): `operations.dual`; an error ends both operations."""

    def call(h_session: int, p_in: Any, ul_in: int, p_out: Any, pul_out: Any) -> int:
        session = _session(h_session)
        with operations.guard(session, first, second):
            capacity = marshal.output_capacity(p_out, pul_out)
            data = marshal.read_bytes(p_in, ul_in)
            out = operations.dual(session, first, second, data, capacity, feed_output=feed_output)
            return marshal.deliver(p_out, pul_out, out)

    return call


handler("C_DigestEncryptUpdate")(_dual("encrypt", "digest", feed_output=False))
handler("C_DecryptDigestUpdate")(_dual("decrypt", "digest", feed_output=True))
handler("C_SignEncryptUpdate")(_dual("encrypt", "sign", feed_output=False))
handler("C_DecryptVerifyUpdate")(_dual("decrypt", "verify", feed_output=True))

__all__ = ["PKCS11Error"]
