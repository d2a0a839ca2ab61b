"""The operation state model (pkcs11_shim/operations.py) held against the real .so.

A hypothesis RuleBasedStateMachine drives every operation kind of one session through the exported
C symbols (ctypes, tests/p11ctypes.py): *Init, updates, finals, single-part calls, with NULL buffers (length
queries), short, exact and large buffers, interleaved with calls of the other kinds, C_DigestKey,
the dual-function calls, the 3.0 message-based calls, C_FindObjects*, C_SessionCancel and
C_GetOperationState/C_SetOperationState. `Model` (opstate_model.py) is the specification written out: for every
call it says the exact CKR, and the exact output (from `cryptography`, hashlib and hmac), and each
call's answer is checked against it. CKR_GENERAL_ERROR, or any byte the library writes to fd 2
during a call (a logged traceback), fails the step.

    python opstate_machine.py run --kind KIND|all --steps N [--examples N] [--derandomize] [--kmdata DIR]
    python opstate_machine.py sequences [--kmdata DIR]

`run` drives each kind (the kind's own calls are ~3 in 4 of the steps, the rest any kind's) until
that kind has had N steps in its own run, and prints {"focused": {kind: its steps in its own run},
"steps": {kind: all its steps}, "calls": C calls} as JSON.
`sequences` runs the fixed sequences `test_operation_state.py` pins and prints their codes.
It runs in its own process on a fresh world (--kmdata, else a temporary directory), fd 2 redirected
to a file. `make fuzz` runs it with OPSTATE_STEPS (default 2000) steps per kind.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import tempfile
from collections import Counter
from ctypes import byref, c_void_p
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import p11ctypes as ck  # noqa: E402

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from opstate_model import (AES_KEY, CANCEL, CBC_IV, CLASSIC, DUAL, FINAL, GCM_IV, HMAC_KEY, INIT, KINDS,  # noqa: E402
                           MECH_NUMBER, MECHS, MESSAGE, ONESHOT, TAG_LEN, UPDATE, Ended, Model, Op, Rsa, cbc,
                           dry, ecb, gcm_tag_for, mac, pkcs7, restore, snapshot, tamper)
from pkcs11_shim.constants import (Attribute, CKF_END_OF_MESSAGE, CKF_MESSAGE_ENCRYPT, CKG_NO_GENERATE, CKR,
                                  KeyType, Mechanism, MechanismFlag, ObjectClass, UserType)  # noqa: E402

UL = ctypes.c_ulong
BUF = 4096
USER_PIN = b"1234"


# --- the library side ----------------------------------------------------------------------------
class Library:
    """The .so in this process, fd 2 a file: `call` fails on CKR_GENERAL_ERROR and on any byte the
    library wrote to fd 2 during the call."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        os.dup2(self.stderr.fileno(), 2)
        # OPSTATE_SO: another build of the library (the client library, with SOFTSHIELD_HARDSERVER).
        self.lib = ck.load(Path(os.environ.get("OPSTATE_SO", str(ck.SO))))
        self.client = ck.Client(self.lib)
        self.client.initialize()
        self.calls = 0
        import p11cli

        p11cli.mktoken(self.client, "opstate")
        self.session = self.client.open(self.client.slot_by_label("opstate"))
        self.client.login(self.session, UserType.USER, USER_PIN)
        self.rsa = Rsa()
        self.keys = self._make_keys()

    def _create(self, items: list[tuple[int, object]]) -> int:
        t = ck.Template(items)
        out = UL(0)
        ck.call(self.lib, "C_CreateObject", UL(self.session), t.array, UL(t.count), byref(out))
        return out.value

    def _make_keys(self) -> dict[str, int]:
        n = self.rsa.numbers
        b = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
        secret = [(Attribute.CLASS, ObjectClass.SECRET_KEY), (Attribute.TOKEN, False)]
        return {
            "aes": self._create(secret + [(Attribute.KEY_TYPE, KeyType.AES), (Attribute.VALUE, AES_KEY),
                                          (Attribute.ENCRYPT, True), (Attribute.DECRYPT, True),
                                          (Attribute.EXTRACTABLE, True)]),
            "hmac": self._create(secret + [(Attribute.KEY_TYPE, KeyType.GENERIC_SECRET), (Attribute.VALUE, HMAC_KEY),
                                           (Attribute.SIGN, True), (Attribute.VERIFY, True)]),
            "rsa_private": self._create([
                (Attribute.CLASS, ObjectClass.PRIVATE_KEY), (Attribute.KEY_TYPE, KeyType.RSA), (Attribute.TOKEN, False),
                (Attribute.MODULUS, b(n.public_numbers.n)), (Attribute.PUBLIC_EXPONENT, b(n.public_numbers.e)),
                (Attribute.PRIVATE_EXPONENT, b(n.d)), (Attribute.PRIME_1, b(n.p)), (Attribute.PRIME_2, b(n.q)),
                (Attribute.EXPONENT_1, b(n.dmp1)), (Attribute.EXPONENT_2, b(n.dmq1)),
                (Attribute.COEFFICIENT, b(n.iqmp)), (Attribute.SIGN, True), (Attribute.SIGN_RECOVER, True)]),
            "rsa_public": self._create([
                (Attribute.CLASS, ObjectClass.PUBLIC_KEY), (Attribute.KEY_TYPE, KeyType.RSA), (Attribute.TOKEN, False),
                (Attribute.MODULUS, b(n.public_numbers.n)), (Attribute.PUBLIC_EXPONENT, b(n.public_numbers.e)),
                (Attribute.VERIFY, True), (Attribute.VERIFY_RECOVER, True)]),
        }

    def call(self, name: str, *args: Any) -> int:
        before = self.stderr.seek(0, os.SEEK_END)
        rv = ck.raw(self.lib, name, UL(self.session), *args)
        self.calls += 1
        after = self.stderr.seek(0, os.SEEK_END)
        if after != before:
            self.stderr.seek(before)
            raise AssertionError(f"{name} wrote to stderr:\n{self.stderr.read().decode(errors='replace')}")
        if rv == CKR.GENERAL_ERROR:
            raise AssertionError(f"{name} -> CKR_GENERAL_ERROR")
        return rv


class Output:
    """An output buffer for one call: NULL ("query"), or `capacity` bytes declared."""

    def __init__(self, mode: str, expected: int | None) -> None:
        self.mode = mode
        want = expected or 0
        self.capacity = {"query": 0, "short": max(want - 1, 0), "exact": want, "big": BUF}[mode]
        self.buffer = None if mode == "query" else ctypes.create_string_buffer(BUF)
        self.length = UL(self.capacity)

    @property
    def holds(self) -> bool:
        """Whether an output of the expected length stays with the library (not delivered)."""
        return self.mode == "query" or self.capacity < self._expected

    def args(self) -> tuple[Any, Any]:
        return self.buffer, byref(self.length)

    def bytes(self) -> bytes:
        return b"" if self.buffer is None else self.buffer.raw[:self.length.value]


def output(mode: str, expected: bytes | None) -> Output:
    out = Output(mode, None if expected is None else len(expected))
    out._expected = 0 if expected is None else len(expected)
    return out


def check_output(name: str, rv: int, out: Output, expected_rv: int, expected: bytes | None) -> None:
    assert rv == expected_rv, f"{name}: 0x{rv:x}, the model says 0x{expected_rv:x}"
    if rv == CKR.OK and out.mode != "query":
        assert out.bytes() == expected, f"{name}: output {out.bytes().hex()} != {expected.hex()}"
    if rv in (CKR.OK, CKR.BUFFER_TOO_SMALL):
        assert out.length.value == len(expected), f"{name}: length {out.length.value} != {len(expected)}"


# --- the machine ---------------------------------------------------------------------------------
class Machine:
    """One action per step, each against the model. Built on a Library made once per process."""

    def __init__(self, lib: Library, counts: Counter) -> None:
        self.lib = lib
        self.counts = counts
        lib.call("C_SessionCancel", UL(0xFFFFFFFF))  # every example starts with no operation
        self.model = Model(lib.rsa, lib.keys["aes"])
        self.saved: list[tuple[bytes, bytes, bool]] = []  # (blob, digest input, multipart)

    # -- helpers --
    def _end(self, exc: Ended) -> int:
        for kind in exc.kinds:
            self.model.ops.pop(kind, None)
        return exc.rv

    def _mechanism(self, mech: str) -> tuple[ck.CK_MECHANISM, Any]:
        return ck.mechanism(MECH_NUMBER[mech], CBC_IV if mech == "cbcpad" else None)

    def _key_for(self, kind: str, mech: str) -> int:
        if mech in ("ecb", "cbcpad", "gcm"):
            return self.lib.keys["aes"]
        if mech == "hmac":
            return self.lib.keys["hmac"]
        return self.lib.keys["rsa_private" if kind in ("sign", "sign_recover") else "rsa_public"]

    # -- the actions --
    def do(self, action: dict) -> None:
        self.counts[action["kind"]] += 1
        getattr(self, "act_" + action["op"])(**{k: v for k, v in action.items() if k != "op"})

    def act_init(self, kind: str, mech_index: int, target: bytes = b"", flavor: str = "good") -> None:
        mechs = MECHS[kind]
        mech = mechs[mech_index % len(mechs)]
        m, _keep = self._mechanism(mech)
        key = UL(self._key_for(kind, mech))
        if kind == "digest":
            rv = self.lib.call(INIT[kind], byref(m))
        elif kind == "verify_signature":
            sig = {"good": mac(target), "bad": tamper(mac(target)), "short": mac(target)[:-1]}[flavor]
            rv = self.lib.call(INIT[kind], byref(m), key, sig, UL(len(sig)))
        else:
            rv = self.lib.call(INIT[kind], byref(m), key)
        if kind in self.model.ops:
            expected = CKR.OPERATION_ACTIVE  # the active operation stays as it was
        elif kind in ("message_sign", "message_verify"):
            expected = CKR.MECHANISM_INVALID  # no mechanism offers message-based signing
        else:
            expected = CKR.OK
            self.model.ops[kind] = Op(mech, signature=sig if kind == "verify_signature" else b"")
        assert rv == expected, f"{INIT[kind]}: 0x{rv:x}, the model says 0x{expected:x}"

    def act_init_null(self, kind: str) -> None:
        if kind == "verify_signature":
            rv = self.lib.call(INIT[kind], None, UL(0), None, UL(0))
        elif kind == "digest":
            rv = self.lib.call(INIT[kind], None)
        else:
            rv = self.lib.call(INIT[kind], None, UL(0))
        if kind in MESSAGE:
            expected = CKR.ARGUMENTS_BAD  # no "NULL ends it" rule for C_Message*Init: a bad argument
        else:
            expected = CKR.OK
            self.model.ops.pop(kind, None)  # 3.0: *Init with a NULL mechanism ends the operation
        assert rv == expected, f"{INIT[kind]}(NULL): 0x{rv:x}, the model says 0x{expected:x}"

    def _output_call(self, kind: str, name: str, step: str, data: bytes, mode: str, args_in: tuple) -> None:
        model = self.model
        try:
            op = model.active(kind)
            held_match = op.held is not None and op.held[0] == step and op.held[1] == data
            peek = op.held[2] if held_match else None
        except Ended:
            peek = None
        # Decide the expected output first (the model changes as the library must), then call.
        saved_ops = snapshot(model)
        try:
            expected = peek if peek is not None else dry(model, kind, step, data)
        except Ended:
            expected = None
        restore(model, saved_ops)
        out = output(mode, expected)
        try:
            result = model.produce(kind, step, data, hold=expected is not None and out.holds)
            expected_rv = CKR.BUFFER_TOO_SMALL if (out.holds and mode != "query") else CKR.OK
        except Ended as exc:
            expected_rv, result = self._end(exc), None
        rv = self.lib.call(name, *args_in, *out.args())
        check_output(name, rv, out, expected_rv, result)

    def act_update(self, kind: str, data: bytes, mode: str = "big") -> None:
        if kind in ("encrypt", "decrypt"):
            return self._output_call(kind, UPDATE[kind], "update", data, mode, (data, UL(len(data))))
        rv = self.lib.call(UPDATE[kind], data, UL(len(data)))
        try:
            op = self.model.active(kind)
            self.model.refuse_held(op, kind)
            self.model.compute(kind, op, "update", data)
            expected = CKR.OK
        except Ended as exc:
            expected = self._end(exc)
        assert rv == expected, f"{UPDATE[kind]}: 0x{rv:x}, the model says 0x{expected:x}"

    def act_final(self, kind: str, mode: str = "big", flavor: str = "good") -> None:
        if kind in ("verify", "verify_signature"):
            return self._verify(kind, "final", b"", flavor)
        self._output_call(kind, FINAL[kind], "final", b"", mode, ())

    def act_oneshot(self, kind: str, data: bytes, mode: str = "big", flavor: str = "good") -> None:
        if kind in ("verify", "verify_signature"):
            return self._verify(kind, "oneshot", data, flavor)
        if kind == "verify_recover":
            return self._verify_recover(data, mode, flavor)
        self._output_call(kind, ONESHOT[kind], "oneshot", data, mode, (data, UL(len(data))))

    def _verify(self, kind: str, step: str, data: bytes, flavor: str) -> None:
        model = self.model
        op = model.ops.get(kind)
        signature = b""
        expected = CKR.OK
        try:
            op = model.active(kind)
            model.refuse_held(op, kind)
            if step == "oneshot" and op.multipart:
                raise Ended(CKR.OPERATION_ACTIVE, kind)
            if op.mech == "rsa" and step != "oneshot":
                raise Ended(CKR.OPERATION_NOT_INITIALIZED, kind)
            message = data if step == "oneshot" else op.acc
            if op.mech == "rsa" and not message:
                # OpenSSL verifies no PKCS#1 v1.5 signature over empty data (it signs it): a
                # primitive limit, not the state model's; give the single-part call one byte.
                data = message = b"."
            if kind == "verify_signature":
                good = op.signature == mac(message)
                expected = (CKR.OK if good else CKR.SIGNATURE_LEN_RANGE if len(op.signature) != 32
                            else CKR.SIGNATURE_INVALID)
            else:
                right = self.lib.rsa.sign(message) if op.mech == "rsa" else mac(message)
                signature = {"good": right, "bad": tamper(right), "short": right[:-1]}[flavor]
                expected = {"good": CKR.OK, "bad": CKR.SIGNATURE_INVALID, "short": CKR.SIGNATURE_LEN_RANGE}[flavor]
            model.ops.pop(kind, None)  # a verification ends either way
        except Ended as exc:
            expected = self._end(exc)
        if kind == "verify_signature":
            args = (data, UL(len(data))) if step == "oneshot" else ()
        else:
            args = (data, UL(len(data)), signature, UL(len(signature))) if step == "oneshot" else \
                (signature, UL(len(signature)))
        name = (ONESHOT if step == "oneshot" else FINAL)[kind]
        rv = self.lib.call(name, *args)
        assert rv == expected, f"{name}: 0x{rv:x}, the model says 0x{expected:x}"

    def _verify_recover(self, data: bytes, mode: str, flavor: str) -> None:
        right = self.lib.rsa.sign(data)
        signature = {"good": right, "bad": tamper(right), "short": right[:-1]}[flavor]
        model = self.model
        expected: bytes | None = None
        try:
            op = model.active("verify_recover")
            if op.held is not None and op.held[0] == "oneshot" and op.held[1] == signature:
                expected = op.held[2]
            else:
                model.refuse_held(op, "verify_recover")
                if flavor == "short":
                    raise Ended(CKR.SIGNATURE_LEN_RANGE, "verify_recover")
                if flavor == "bad":
                    raise Ended(CKR.SIGNATURE_INVALID, "verify_recover")
                expected = data
            out = output(mode, expected)
            if out.holds:
                op.held = ("oneshot", signature, expected, True)
                expected_rv = CKR.OK if mode == "query" else CKR.BUFFER_TOO_SMALL
            else:
                model.ops.pop("verify_recover", None)
                expected_rv = CKR.OK
        except Ended as exc:
            expected_rv, out = self._end(exc), output(mode, None)
        rv = self.lib.call("C_VerifyRecover", signature, UL(len(signature)), *out.args())
        check_output("C_VerifyRecover", rv, out, expected_rv, expected)

    def act_digest_key(self, kind: str, which: str) -> None:
        handle = {"aes": self.lib.keys["aes"], "public": self.lib.keys["rsa_public"], "invalid": 0xDEAD}[which]
        rv = self.lib.call("C_DigestKey", UL(handle))
        try:
            op = self.model.active("digest")
            self.model.refuse_held(op, "digest")
            if which == "invalid":
                raise Ended(CKR.KEY_HANDLE_INVALID, "digest")
            if which == "public":
                raise Ended(CKR.KEY_INDIGESTIBLE, "digest")
            op.acc += AES_KEY
            op.multipart = op.keyed = True
            expected = CKR.OK
        except Ended as exc:
            expected = self._end(exc)
        assert rv == expected, f"C_DigestKey: 0x{rv:x}, the model says 0x{expected:x}"

    def needs_start(self, focus: str) -> bool:
        """Whether the focused kind has nothing to call on (the machine then starts it, half the time)."""
        if focus == "dual":
            return not any(a in self.model.ops and b in self.model.ops for a, b, _ in DUAL.values())
        return focus not in self.model.ops

    def act_dual_start(self, kind: str, name: str) -> None:
        first, second, _ = DUAL[name]
        for needed in (first, second):
            if needed not in self.model.ops:
                self.act_init(needed, 0)

    def act_dual(self, kind: str, name: str, data: bytes, mode: str) -> None:
        first, second, feed_output = DUAL[name]
        model = self.model
        call = f"update+{second}"
        expected: bytes | None = None
        saved_ops = snapshot(model)  # a dry run for the expected output, then the real one
        try:
            a, b = model.active(first), model.active(second)
            model.refuse_held(b, second)
            if a.held is not None and a.held[0] == call and a.held[1] == data:
                expected = a.held[2]
            else:
                model.refuse_held(a, first)
                expected = model.compute(first, a, "update", data)
        except Ended:
            pass
        restore(model, saved_ops)
        out = output(mode, expected)
        try:
            a, b = model.active(first), model.active(second)
            model.refuse_held(b, second)
            result = model.produce(first, "update", data, hold=out.holds, call=call)
            if not out.holds:  # delivered: the second operation absorbs
                model.compute(second, b, "update", result if feed_output else data)
            expected_rv = CKR.BUFFER_TOO_SMALL if (out.holds and mode != "query") else CKR.OK
        except Ended as exc:  # a dual call's error ends both operations
            expected_rv, result = self._end(Ended(exc.rv, first, second)), None
        rv = self.lib.call(name, data, UL(len(data)), *out.args())
        check_output(name, rv, out, expected_rv, result)

    # -- message based --
    def _gcm_param(self, tag: bytes) -> tuple[ck.CK_GCM_MESSAGE_PARAMS, Any]:
        iv = ctypes.create_string_buffer(GCM_IV, len(GCM_IV))
        tag_buf = ctypes.create_string_buffer(tag, TAG_LEN)
        p = ck.CK_GCM_MESSAGE_PARAMS(ctypes.cast(iv, c_void_p), len(GCM_IV), 0, CKG_NO_GENERATE,
                             ctypes.cast(tag_buf, c_void_p), TAG_LEN * 8)
        return p, (iv, tag_buf)

    def act_message(self, kind: str, data: bytes, aad: bytes, mode: str, null_param: bool, bad_tag: bool) -> None:
        encrypt = kind == "message_encrypt"
        if kind in ("message_sign", "message_verify"):
            name = "C_SignMessage" if kind == "message_sign" else "C_VerifyMessage"
            out = output(mode, None)
            args = (None, UL(0), data, UL(len(data))) + (out.args() if kind == "message_sign" else (data, UL(0)))
            rv = self.lib.call(name, *args)
            assert rv == CKR.OPERATION_NOT_INITIALIZED, f"{name}: 0x{rv:x}"
            return
        plain, tag = gcm_tag_for(data, aad)
        if encrypt:
            sealed = AESGCM(AES_KEY).encrypt(GCM_IV, data, aad)
            expected, tag = sealed[:-TAG_LEN], sealed[-TAG_LEN:]
        else:
            expected, tag = plain, (tamper(tag) if bad_tag else tag)
        param, _keep = self._gcm_param(bytes(TAG_LEN) if encrypt else tag)
        out = output(mode, expected)
        if kind not in self.model.ops:
            expected_rv = CKR.OPERATION_NOT_INITIALIZED
        elif null_param:
            expected_rv = CKR.MECHANISM_PARAM_INVALID
        elif out.holds:  # a length query or short buffer computes nothing (the output is as long as the input)
            expected_rv = CKR.OK if mode == "query" else CKR.BUFFER_TOO_SMALL
        elif not encrypt and bad_tag:
            expected_rv = CKR.AEAD_DECRYPT_FAILED
        else:
            expected_rv = CKR.OK
        p = (None, UL(0)) if null_param else (c_void_p(ctypes.addressof(param)), UL(ctypes.sizeof(param)))
        name = "C_EncryptMessage" if encrypt else "C_DecryptMessage"
        rv = self.lib.call(name, *p, aad, UL(len(aad)), data, UL(len(data)), *out.args())
        check_output(name, rv, out, expected_rv, expected)
        if rv == CKR.OK and encrypt and mode != "query":
            assert _keep[1].raw[:TAG_LEN] == tag, "the tag written back differs"

    def act_message_begin(self, kind: str, aad: bytes, null_param: bool) -> None:
        names = {"message_encrypt": "C_EncryptMessageBegin", "message_decrypt": "C_DecryptMessageBegin",
                 "message_sign": "C_SignMessageBegin", "message_verify": "C_VerifyMessageBegin"}
        param, _keep = self._gcm_param(bytes(TAG_LEN))
        p = (None, UL(0)) if null_param else (c_void_p(ctypes.addressof(param)), UL(ctypes.sizeof(param)))
        if kind in ("message_sign", "message_verify"):
            rv = self.lib.call(names[kind], *p)
            assert rv == CKR.OPERATION_NOT_INITIALIZED, f"{names[kind]}: 0x{rv:x}"
            return
        rv = self.lib.call(names[kind], *p, aad, UL(len(aad)))
        op = self.model.ops.get(kind)
        if op is None:
            expected = CKR.OPERATION_NOT_INITIALIZED
        elif op.message is not None:
            expected = CKR.OPERATION_ACTIVE  # one message at a time; the one begun stays
        elif null_param:
            expected = CKR.MECHANISM_PARAM_INVALID
        else:
            expected = CKR.OK
            op.message = (aad, b"")
        assert rv == expected, f"{names[kind]}: 0x{rv:x}, the model says 0x{expected:x}"

    def act_message_next(self, kind: str, data: bytes, last: bool, mode: str, null_param: bool,
                         bad_tag: bool) -> None:
        encrypt = kind == "message_encrypt"
        if kind in ("message_sign", "message_verify"):
            name = "C_SignMessageNext" if kind == "message_sign" else "C_VerifyMessageNext"
            out = output(mode, None)
            args = (None, UL(0), data, UL(len(data))) + (out.args() if kind == "message_sign" else (data, UL(0)))
            rv = self.lib.call(name, *args)
            assert rv == CKR.OPERATION_NOT_INITIALIZED, f"{name}: 0x{rv:x}"
            return
        name = "C_EncryptMessageNext" if encrypt else "C_DecryptMessageNext"
        op = self.model.ops.get(kind)
        aad, buffered = op.message if op is not None and op.message is not None else (b"", b"")
        whole = buffered + data
        plain, tag = gcm_tag_for(whole, aad)
        if encrypt:
            sealed = AESGCM(AES_KEY).encrypt(GCM_IV, whole, aad)
            expected, tag = (sealed[:-TAG_LEN] if last else b""), sealed[-TAG_LEN:]
        else:
            expected, tag = (plain if last else b""), (tamper(tag) if bad_tag else tag)
        param, _keep = self._gcm_param(bytes(TAG_LEN) if encrypt else tag)
        out = output(mode, expected)
        if op is None:
            expected_rv = CKR.OPERATION_NOT_INITIALIZED
        elif op.message is None:
            expected_rv = CKR.OPERATION_NOT_INITIALIZED
        elif null_param:
            expected_rv = CKR.MECHANISM_PARAM_INVALID
            op.message = None  # an error ends the message in progress
        elif out.holds:
            expected_rv = CKR.OK if mode == "query" else CKR.BUFFER_TOO_SMALL  # nothing consumed
        elif last:
            op.message = None
            expected_rv = CKR.AEAD_DECRYPT_FAILED if (bad_tag and not encrypt) else CKR.OK
        else:
            op.message = (aad, whole)
            expected_rv = CKR.OK
        p = (None, UL(0)) if null_param else (c_void_p(ctypes.addressof(param)), UL(ctypes.sizeof(param)))
        flags = UL(CKF_END_OF_MESSAGE if last else 0)
        rv = self.lib.call(name, *p, data, UL(len(data)), *out.args(), flags)
        check_output(name, rv, out, expected_rv, expected)
        if rv == CKR.OK and encrypt and last and mode != "query":
            assert _keep[1].raw[:TAG_LEN] == tag, "the tag written back differs"

    def act_message_final(self, kind: str) -> None:
        names = {"message_encrypt": "C_MessageEncryptFinal", "message_decrypt": "C_MessageDecryptFinal",
                 "message_sign": "C_MessageSignFinal", "message_verify": "C_MessageVerifyFinal"}
        rv = self.lib.call(names[kind])
        expected = CKR.OK if self.model.ops.pop(kind, None) is not None else CKR.OPERATION_NOT_INITIALIZED
        assert rv == expected, f"{names[kind]}: 0x{rv:x}, the model says 0x{expected:x}"

    # -- find --
    def act_find_init(self, kind: str) -> None:
        t = ck.Template([(Attribute.KEY_TYPE, KeyType.AES)])
        rv = self.lib.call("C_FindObjectsInit", t.array, UL(t.count))
        if "find" in self.model.ops:
            expected = CKR.OPERATION_ACTIVE
        else:
            expected = CKR.OK
            self.model.ops["find"] = Op("find", found=[self.lib.keys["aes"]])
        assert rv == expected, f"C_FindObjectsInit: 0x{rv:x}, the model says 0x{expected:x}"

    def act_find_next(self, kind: str, most: int) -> None:
        handles = (UL * 8)()
        count = UL(99)
        rv = self.lib.call("C_FindObjects", handles, UL(most), byref(count))
        op = self.model.ops.get("find")
        if op is None:
            assert rv == CKR.OPERATION_NOT_INITIALIZED, f"C_FindObjects: 0x{rv:x}"
            return
        chunk, op.found = op.found[:most], op.found[most:]
        assert rv == CKR.OK and list(handles[:count.value]) == chunk, (hex(rv), list(handles[:count.value]), chunk)

    def act_find_final(self, kind: str) -> None:
        rv = self.lib.call("C_FindObjectsFinal")
        expected = CKR.OK if self.model.ops.pop("find", None) is not None else CKR.OPERATION_NOT_INITIALIZED
        assert rv == expected, f"C_FindObjectsFinal: 0x{rv:x}, the model says 0x{expected:x}"

    # -- session-wide --
    def act_cancel(self, kind: str, kinds: list[str]) -> None:
        flags = 0
        for name in kinds:
            flags |= CANCEL[name]
        rv = self.lib.call("C_SessionCancel", UL(flags))
        assert rv == CKR.OK, f"C_SessionCancel: 0x{rv:x}"
        for name, flag in CANCEL.items():
            if flags & flag:
                self.model.ops.pop(name, None)

    def act_get_state(self, kind: str, mode: str) -> None:
        ops = self.model.ops
        crypto = [k for k in ops if k != "find"]
        digest = ops.get("digest")
        if not crypto:
            expected_rv, length = CKR.OPERATION_NOT_INITIALIZED, None
        elif crypto != ["digest"] or digest.keyed or digest.held is not None:
            expected_rv, length = CKR.STATE_UNSAVEABLE, None
        else:
            length = 5 + 9 + len(digest.acc)  # magic, mechanism and multipart flag, the input so far
            expected_rv = CKR.OK
        out = output(mode, None if length is None else bytes(length))
        if length is not None and out.holds and mode != "query":
            expected_rv = CKR.BUFFER_TOO_SMALL
        rv = self.lib.call("C_GetOperationState", *out.args())
        assert rv == expected_rv, f"C_GetOperationState: 0x{rv:x}, the model says 0x{expected_rv:x}"
        if rv in (CKR.OK, CKR.BUFFER_TOO_SMALL):
            assert out.length.value == length, (out.length.value, length)
        if rv == CKR.OK and mode != "query":
            self.saved.append((out.bytes(), digest.acc, digest.multipart))

    def act_set_state(self, kind: str, choice: int) -> None:
        if self.saved and choice >= 0:
            blob, acc, multipart = self.saved[choice % len(self.saved)]
        else:
            blob, acc, multipart = b"not a saved state", b"", False
        rv = self.lib.call("C_SetOperationState", blob, UL(len(blob)), UL(0), UL(0))
        if blob.startswith(b"not"):
            expected = CKR.SAVED_STATE_INVALID
        else:
            expected = CKR.OK
            self.model.ops["digest"] = Op("sha256", multipart=multipart, acc=acc)
        assert rv == expected, f"C_SetOperationState: 0x{rv:x}, the model says 0x{expected:x}"


# --- strategies ----------------------------------------------------------------------------------
def strategies() -> dict[str, Any]:
    from hypothesis import strategies as st

    # A valid CBC-PAD ciphertext among them, so that padded decryption also succeeds.
    sealed = cbc(pkcs7(b"hello"), True)
    data = st.one_of(st.sampled_from([b"", b"a", b"ab", bytes(16), bytes(range(32)), sealed]), st.binary(max_size=48))
    mode = st.sampled_from(["query", "short", "exact", "big"])
    flavor = st.sampled_from(["good", "bad", "short"])
    target = st.sampled_from([b"", b"a", b"ab"])
    k = st.just

    def classic(kind: str) -> Any:
        acts = [st.fixed_dictionaries({"op": k("init"), "kind": k(kind), "mech_index": st.integers(0, 1),
                                       "target": target, "flavor": flavor}),
                st.fixed_dictionaries({"op": k("init_null"), "kind": k(kind)})]
        if kind in UPDATE:
            acts.append(st.fixed_dictionaries({"op": k("update"), "kind": k(kind), "data": data, "mode": mode}))
        if kind in FINAL:
            acts.append(st.fixed_dictionaries({"op": k("final"), "kind": k(kind), "mode": mode, "flavor": flavor}))
        acts.append(st.fixed_dictionaries({"op": k("oneshot"), "kind": k(kind), "data": data, "mode": mode,
                                           "flavor": flavor}))
        if kind == "digest":
            acts.append(st.fixed_dictionaries({"op": k("digest_key"), "kind": k(kind),
                                               "which": st.sampled_from(["aes", "aes", "public", "invalid"])}))
        return st.one_of(*acts)

    def message(kind: str) -> Any:
        small = st.sampled_from([b"", b"hdr"])
        return st.one_of(
            st.fixed_dictionaries({"op": k("init"), "kind": k(kind), "mech_index": k(0)}),
            st.fixed_dictionaries({"op": k("init_null"), "kind": k(kind)}),
            st.fixed_dictionaries({"op": k("message"), "kind": k(kind), "data": data, "aad": small, "mode": mode,
                                   "null_param": st.booleans(), "bad_tag": st.booleans()}),
            st.fixed_dictionaries({"op": k("message_begin"), "kind": k(kind), "aad": small,
                                   "null_param": st.booleans()}),
            st.fixed_dictionaries({"op": k("message_next"), "kind": k(kind), "data": data, "last": st.booleans(),
                                   "mode": mode, "null_param": st.booleans(), "bad_tag": st.booleans()}),
            st.fixed_dictionaries({"op": k("message_final"), "kind": k(kind)}))

    state = st.one_of(
        st.fixed_dictionaries({"op": k("get_state"), "kind": k("session"), "mode": mode}),
        st.fixed_dictionaries({"op": k("set_state"), "kind": k("session"), "choice": st.integers(-1, 3)}))
    cancel = st.fixed_dictionaries({"op": k("cancel"), "kind": k("session"),
                                    "kinds": st.lists(st.sampled_from(sorted(CANCEL)), max_size=3)})
    own: dict[str, Any] = {kind: classic(kind) for kind in CLASSIC}
    own.update({kind: message(kind) for kind in MESSAGE})
    own["find"] = st.one_of(st.fixed_dictionaries({"op": k("find_init"), "kind": k("find")}),
                            st.fixed_dictionaries({"op": k("find_next"), "kind": k("find"),
                                                   "most": st.integers(0, 3)}),
                            st.fixed_dictionaries({"op": k("find_final"), "kind": k("find")}))
    dual_calls = st.fixed_dictionaries({"op": k("dual"), "kind": k("dual"), "name": st.sampled_from(sorted(DUAL)),
                                        "data": data, "mode": mode})
    # The dual calls need their two operations: their steps mix in those kinds' own calls.
    components = st.one_of(own["encrypt"], own["decrypt"], own["digest"], own["sign"], own["verify"])
    own["dual"] = st.integers(0, 2).flatmap(lambda i: dual_calls if i < 2 else components)
    # Saving and restoring state is a digest's business (the only state that can leave the module).
    digest_own = own["digest"]
    own["digest"] = st.integers(0, 3).flatmap(lambda i: digest_own if i < 3 else state)
    anything = st.one_of(*own.values(), state, cancel)
    # Three steps in four are the kind's own (st.one_of would flatten and weigh every branch alike).
    steps = {kind: st.integers(0, 3).flatmap(lambda i, kind=kind: own[kind] if i < 3 else anything)
             for kind in KINDS}
    starts = {kind: st.fixed_dictionaries({"op": k("init"), "kind": k(kind), "mech_index": st.integers(0, 1),
                                           "target": target, "flavor": flavor}) for kind in CLASSIC + MESSAGE}
    starts["find"] = st.fixed_dictionaries({"op": k("find_init"), "kind": k("find")})
    starts["dual"] = st.fixed_dictionaries({"op": k("dual_start"), "kind": k("dual"),
                                            "name": st.sampled_from(sorted(DUAL))})
    return {kind: (starts[kind], steps[kind]) for kind in KINDS}


def drive(lib: Library, focus: str, steps: int, examples: int, derandomize: bool, counts: Counter) -> None:
    """Run the machine focused on `focus` until that kind has had `steps` steps."""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

    starts, actions = strategies()[focus]

    class OperationStates(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.machine = Machine(lib, counts)

        # While the focused kind has nothing active, starting it is one of the two rules.
        @precondition(lambda self: self.machine.needs_start(focus))
        @rule(action=starts)
        def start(self, action: dict) -> None:
            self.machine.do(action)

        @rule(action=actions)
        def step(self, action: dict) -> None:
            self.machine.do(action)

    per_example = 50
    target = counts[focus] + steps
    while counts[focus] < target:
        # At least half of a focused run's steps are the kind's own: enough examples for the rest.
        wanted = -(-(target - counts[focus]) // (per_example // 2))
        run_state_machine_as_test(OperationStates, settings=settings(
            max_examples=max(1, min(examples, wanted)), stateful_step_count=per_example, deadline=None,
            database=None, derandomize=derandomize, suppress_health_check=list(HealthCheck)))
        if derandomize:
            break  # the same examples again would add nothing


# --- fixed sequences ------------------------------------------------------------------------------
def sequences(lib: Library) -> dict[str, list[int]]:
    """The four sequences of the digest finding, and the 3.x session calls, as codes."""
    call = lib.call
    sha256, _ = ck.mechanism(Mechanism.SHA256)
    out: dict[str, list[int]] = {}

    def digest_final(buf: Any, size: int) -> int:
        return call("C_DigestFinal", buf, byref(UL(size)))

    def digest(buf: Any, size: int) -> int:
        return call("C_Digest", b"abc", UL(3), buf, byref(UL(size)))

    one = ctypes.create_string_buffer(1)
    big = ctypes.create_string_buffer(64)
    for name, first_update, finish in (
            ("final_length_query", True, lambda: digest_final(None, 0)),
            ("final_short_buffer", True, lambda: digest_final(one, 1)),
            ("digest_length_query", False, lambda: digest(None, 0)),
            ("digest_short_buffer", False, lambda: digest(one, 1))):
        codes = [call("C_DigestInit", byref(sha256))]
        if first_update:
            codes.append(call("C_DigestUpdate", b"abc", UL(3)))
        codes += [finish(), call("C_DigestUpdate", b"more", UL(4)), call("C_DigestUpdate", b"more", UL(4))]
        out[name] = codes
        # ... and in another round, the same call again collects the held digest of b"abc".
        codes = [call("C_DigestInit", byref(sha256))]
        if first_update:
            codes.append(call("C_DigestUpdate", b"abc", UL(3)))
        codes.append(finish())
        size = UL(64)
        codes.append(call("C_DigestFinal", big, byref(size)) if first_update else
                     call("C_Digest", b"abc", UL(3), big, byref(size)))
        out[name + "_then_collect"] = codes + [int(big.raw[:size.value] == hashlib.sha256(b"abc").digest())]
    # C_SessionCancel(CKF_DIGEST), then a new digest.
    out["cancel_digest"] = [call("C_DigestInit", byref(sha256)), call("C_DigestUpdate", b"x", UL(1)),
                            call("C_SessionCancel", UL(MechanismFlag.DIGEST)), call("C_DigestInit", byref(sha256)),
                            call("C_DigestFinal", big, byref(UL(64)))]
    # Multi-part C_VerifySignatureInit/Update/Final (HMAC), then one that fails, then single-part.
    hm, _ = ck.mechanism(Mechanism.SHA256_HMAC)
    key = UL(lib.keys["hmac"])
    sig = mac(b"hello world")
    out["verify_signature_multipart"] = [
        call("C_VerifySignatureInit", byref(hm), key, sig, UL(len(sig))), call("C_VerifySignatureUpdate", b"hello ", UL(6)),
        call("C_VerifySignatureUpdate", b"world", UL(5)), call("C_VerifySignatureFinal"),
        call("C_VerifySignatureInit", byref(hm), key, sig, UL(len(sig))), call("C_VerifySignatureUpdate", b"hello", UL(5)),
        call("C_VerifySignatureFinal"), call("C_VerifySignatureFinal"),
        call("C_VerifySignatureInit", byref(hm), key, sig, UL(len(sig))), call("C_VerifySignature", b"hello world", UL(11))]
    flags = UL(0xFF)
    out["session_validation_flags"] = [call("C_GetSessionValidationFlags", UL(1), byref(flags)), flags.value,
                                       call("C_GetSessionValidationFlags", UL(0x1234), byref(flags)),
                                       call("C_GetSessionValidationFlags", UL(1), None)]
    # Message-based AES-GCM: no parameter at C_MessageEncryptInit (3.0: each message brings its own);
    # every call that needs the message parameter refuses a NULL one.
    gcm = ck.CK_MECHANISM()
    gcm.mechanism = Mechanism.AES_GCM
    aes = UL(lib.keys["aes"])
    data = b"sixteen byte msg"
    codes = []
    for init, one_call, begin, nxt, final in (
            ("C_MessageEncryptInit", "C_EncryptMessage", "C_EncryptMessageBegin", "C_EncryptMessageNext",
             "C_MessageEncryptFinal"),
            ("C_MessageDecryptInit", "C_DecryptMessage", "C_DecryptMessageBegin", "C_DecryptMessageNext",
             "C_MessageDecryptFinal")):
        size = UL(64)
        codes += [call(init, None, aes), call(init, byref(gcm), aes),
                  call(one_call, None, UL(0), None, UL(0), data, UL(16), big, byref(size)),
                  call(begin, None, UL(0), None, UL(0))]
        machine = Machine.__new__(Machine)
        param, _keep = machine._gcm_param(bytes(TAG_LEN))
        p = (c_void_p(ctypes.addressof(param)), UL(ctypes.sizeof(param)))
        codes += [call(begin, *p, None, UL(0)), call(nxt, None, UL(0), data, UL(16), big, byref(UL(64)), UL(0)),
                  call(nxt, *p, data, UL(16), big, byref(UL(64)), UL(CKF_END_OF_MESSAGE)), call(final)]
    out["message_null_parameter"] = codes
    # C_SessionCancel(CKF_MESSAGE_ENCRYPT) ends a message-based encryption.
    out["cancel_message"] = [call("C_MessageEncryptInit", byref(gcm), aes),
                             call("C_SessionCancel", UL(CKF_MESSAGE_ENCRYPT)),
                             call("C_MessageEncryptInit", byref(gcm), aes), call("C_MessageEncryptFinal"),
                             call("C_MessageEncryptFinal")]
    # C_GetOperationState refuses a digest whose result is held; the result is still collected.
    size = UL(0)
    out["state_while_held"] = [call("C_DigestInit", byref(sha256)), call("C_DigestUpdate", b"abc", UL(3)),
                               call("C_GetOperationState", None, byref(UL(0))),
                               call("C_DigestFinal", None, byref(size)),
                               call("C_GetOperationState", None, byref(UL(0))),
                               call("C_DigestFinal", big, byref(UL(64)))]
    # ECB: an update whose output is empty (5 bytes buffered). Its length query, then the same call
    # (collects the empty output: the 5 bytes are not fed twice), then another update of 11.
    ecb_mech, _ = ck.mechanism(Mechanism.AES_ECB)
    first, second = b"12345", b"67890abcdef"
    length = UL(0)
    codes = [call("C_EncryptInit", byref(ecb_mech), aes),
             call("C_EncryptUpdate", first, UL(5), None, byref(length)), length.value,
             call("C_EncryptUpdate", first, UL(5), big, byref(UL(64)))]
    size = UL(64)
    codes += [call("C_EncryptUpdate", second, UL(11), big, byref(size)),
              int(big.raw[:size.value] == ecb(first + second, True))]
    # ... and a caller told "0 bytes" that goes straight on to the next part.
    codes += [call("C_EncryptUpdate", first, UL(5), None, byref(length)), length.value]
    size = UL(64)
    codes += [call("C_EncryptUpdate", second, UL(11), big, byref(size)),
              int(big.raw[:size.value] == ecb(first + second, True)), call("C_EncryptFinal", big, byref(UL(64)))]
    out["empty_update_output"] = codes
    return out


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--kind", default="all")
    run.add_argument("--steps", type=int, default=100)
    run.add_argument("--examples", type=int, default=100, help="most examples per hypothesis run")
    run.add_argument("--derandomize", action="store_true")
    seq = sub.add_parser("sequences")
    for command in (run, seq):
        command.add_argument("--kmdata", help="an empty directory for the world (default: a temporary one)")
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith(("CKNFAST_", "SOFTSHIELD_LOG"))]:
        del os.environ[name]
    if args.kmdata is None:
        args.kmdata = tempfile.mkdtemp(prefix="opstate-kmdata-")
        import atexit
        import shutil

        atexit.register(shutil.rmtree, args.kmdata, True)
    os.environ["NFAST_KMDATA"] = args.kmdata  # read at C_Initialize
    lib = Library()
    try:
        if args.command == "sequences":
            print(json.dumps(sequences(lib)))
            return 0
        counts: Counter = Counter()
        focused: dict[str, int] = {}
        for kind in (KINDS if args.kind == "all" else args.kind.split(",")):
            before = counts[kind]
            drive(lib, kind, args.steps, args.examples, args.derandomize, counts)
            focused[kind] = counts[kind] - before
    except BaseException:
        import traceback

        # fd 2 is the library's file: the failure goes to stdout, where the test shows it.
        print(traceback.format_exc(), flush=True)
        return 1
    print(json.dumps({"focused": focused, "steps": dict(counts), "calls": lib.calls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
