"""A fuzzer for the C ABI: hypothesis builds programs (sequences of C calls with chosen handles,
lengths, NULL pointers, malformed templates and mechanism parameters), a child process runs them
against the .so through ctypes (tests/p11ctypes.py), and the parent checks the outcome.

    python fuzz_cabi.py serve                      the child: one JSON program per stdin line
    python fuzz_cabi.py run [--examples N]         a standalone run (`make fuzz`)

What counts as a failure:
- the child dies by a signal (a crash) or does not answer in HANG_SECONDS (a hang);
- a call returns CKR_GENERAL_ERROR, or the child's stderr shows a Python traceback: both mean an
  exception the library did not expect reached the C boundary;
- a call returns CKR_OK where its input is garbage the spec requires an error for (NULL value with
  a length, lengths and counts past the library's limits, NULL required output pointers, invalid
  session or object handles, sensitive CKA_VALUE).

Memory-safety rule of the generator: a declared length never exceeds the real buffer behind it
unless it is "huge" (past marshal's limits, refused before any read): the library cannot know a C
buffer's size, so a longer lie would be the caller's bug, not the library's.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import subprocess
import sys
import time
from ctypes import byref, c_ubyte, c_void_p, sizeof
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import p11ctypes as ck  # noqa: E402
from pkcs11_shim.constants import (CKA_VENDOR_DEFINED, CKF_DONT_BLOCK, CKR, Attribute, KeyType, Mechanism,  # noqa: E402
                                   ObjectClass, SessionFlag, UserType)

HERE = Path(__file__).resolve().parent
HANG_SECONDS = 30.0
USER_PIN = b"1234"
LABEL = "fuzz"
BUF = 4096  # every buffer the child passes is this large
MAX_SMALL = 64  # small declared lengths and counts stay well inside BUF
HUGE_MIN = 1 << 31  # past marshal.MAX_DATA_LEN and MAX_TEMPLATE_COUNT
ULONG_MAX = (1 << 64) - 1

#: Functions the generic action never calls: token administration (would lock the PINs the
#: fixture needs, or re-initialise its token) and the blocking form of C_WaitForSlotEvent.
GENERIC_EXCLUDED = {"C_InitToken", "C_InitPIN", "C_SetPIN", "C_GetFunctionList", "C_GetInterfaceList",
                    "C_GetInterface"}

MECHANISMS = [Mechanism.AES_KEY_GEN, Mechanism.AES_ECB, Mechanism.AES_CBC_PAD, Mechanism.AES_CMAC, Mechanism.AES_GCM,
              Mechanism.SHA256, Mechanism.SHA256_HMAC, Mechanism.GENERIC_SECRET_KEY_GEN, Mechanism.AES_CBC,
              Mechanism.AES_CTR, Mechanism.AES_KEY_WRAP, Mechanism.RSA_PKCS, Mechanism.RSA_PKCS_OAEP, Mechanism.RSA_PKCS_PSS,
              Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA, Mechanism.SHA_1, Mechanism.ECDH1_DERIVE]
ATTRIBUTES = [Attribute.CLASS, Attribute.TOKEN, Attribute.PRIVATE, Attribute.LABEL, Attribute.VALUE, Attribute.KEY_TYPE,
              Attribute.ID, Attribute.SENSITIVE, Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.SIGN, Attribute.VERIFY,
              Attribute.VALUE_LEN,
              Attribute.EXTRACTABLE, Attribute.WRAP_TEMPLATE, Attribute.UNWRAP_TEMPLATE, Attribute.ALLOWED_MECHANISMS,
              Attribute.MODIFIABLE, CKA_VENDOR_DEFINED | 1]


def _functions() -> list[tuple[str, list[str]]]:
    """(name, parameter types) of every C function the library exports, from native/functions.txt."""
    out = []
    for line in (ck.ROOT / "native" / "functions.txt").read_text().splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith("C_") or "(" not in parts[2]:
            continue
        inner = parts[2].strip()[1:-1].strip()
        params = [] if inner in ("", "void") else [p.strip().rsplit(None, 1)[0] for p in inner.split(",")]
        out.append((parts[1], params))
    return out


# ================================================================================================
# The child: executes programs
# ================================================================================================
class Child:
    def __init__(self) -> None:
        self.lib = ck.load()
        self.client = ck.Client(self.lib)
        self.functions = dict(_functions())
        self.h: dict[str, int] = {}
        self.relogin = True

    # --- state the programs start from ---------------------------------------------------------
    def ready(self) -> None:
        code = ck.raw(self.lib, "C_Initialize", None)
        if code not in (CKR.OK, CKR.CRYPTOKI_ALREADY_INITIALIZED):
            raise RuntimeError(f"C_Initialize -> 0x{code:x}")
        if code == CKR.OK:
            self.h.clear()
            self.relogin = True
        info = (c_ubyte * 256)()
        if "rw" in self.h and ck.raw(self.lib, "C_GetSessionInfo", ck.CK_ULONG(self.h["rw"]), info) != CKR.OK:
            self.h.clear()
            self.relogin = True
        c = self.client
        if not self.h:
            self.relogin = True  # new sessions: the login went with the old ones (or was never made)
            slot = c.slot_by_label(LABEL)
            self.slot, self.all_slots = slot, c.slots() + [s for s in self._all_slots()]
            self.h = {"slot": slot, "rw": c.open(slot), "ro": c.open(slot, rw=False)}
            closed = c.open(slot)
            c.close(closed)
            self.h["closed"] = closed
        if self.relogin:
            ck.raw(self.lib, "C_Logout", ck.CK_ULONG(self.h["rw"]))
            c.login(self.h["rw"], UserType.USER, USER_PIN)
            self.relogin = False
        s = self.h["rw"]
        for name, make in (("aes", self._make_aes), ("hmac", self._make_hmac), ("data", self._make_data)):
            found = c.find(s, [(Attribute.LABEL, f"fuzz-{name}")])
            self.h[name] = found[0] if found else make(s)
        if "destroyed" not in self.h:
            gone = self._make_data(s, "fuzz-gone")
            c.destroy(s, gone)
            self.h["destroyed"] = gone

    def _all_slots(self) -> list[int]:
        count = ck.CK_ULONG(0)
        ck.call(self.lib, "C_GetSlotList", c_ubyte(0), None, byref(count))
        array = (ck.CK_ULONG * count.value)()
        ck.call(self.lib, "C_GetSlotList", c_ubyte(0), array, byref(count))
        return list(array[:count.value])

    def _make_aes(self, s: int) -> int:
        return self.client.generate_key(s, Mechanism.AES_KEY_GEN, [
            (Attribute.VALUE_LEN, 16), (Attribute.LABEL, "fuzz-aes"), (Attribute.ENCRYPT, True), (Attribute.DECRYPT, True),
            (Attribute.SIGN, True), (Attribute.VERIFY, True), (Attribute.SENSITIVE, True), (Attribute.EXTRACTABLE, False)])

    def _make_hmac(self, s: int) -> int:
        return self.client.generate_key(s, Mechanism.GENERIC_SECRET_KEY_GEN, [
            (Attribute.VALUE_LEN, 32), (Attribute.LABEL, "fuzz-hmac"), (Attribute.SIGN, True), (Attribute.VERIFY, True),
            (Attribute.KEY_TYPE, KeyType.GENERIC_SECRET), (Attribute.SENSITIVE, True)])

    def _make_data(self, s: int, label: str = "fuzz-data") -> int:
        t = ck.Template([(Attribute.CLASS, 0), (Attribute.LABEL, label), (Attribute.VALUE, b"fuzz data")])
        out = ck.CK_ULONG(0)
        ck.call(self.lib, "C_CreateObject", ck.CK_ULONG(s), t.array, ck.CK_ULONG(t.count), byref(out))
        return out.value

    # --- argument builders ---------------------------------------------------------------------
    def handle(self, choice: Any) -> tuple[int, bool]:
        """(value, invalid): a named handle or a literal number."""
        if isinstance(choice, int):
            valid = choice in self.h.values()
            return choice & ULONG_MAX, not valid
        if choice == "zero" or choice not in self.h:
            return 0, True  # (a handle named after a C_Finalize in the same program: gone)
        return self.h[choice], choice in ("closed", "destroyed")

    @staticmethod
    def length(mode: Any, actual: int) -> tuple[int, bool]:
        """(declared length, huge)."""
        if isinstance(mode, int):
            return mode, True  # huge
        return {"exact": actual, "short": max(0, actual - 1), "zero": 0}[mode], False

    def template(self, spec: dict, keep: list) -> tuple[Any, int, bool]:
        """A CK_ATTRIBUTE array from `spec`; garbage when the spec requires an error."""
        attrs = spec["attrs"]
        array = (ck.CK_ATTRIBUTE * max(len(attrs), 1))()
        keep.append(array)
        count = spec["count"]
        huge_count = isinstance(count, int) and count >= HUGE_MIN
        if not huge_count:
            count = len(attrs) if count == "all" else min(len(attrs), 1)
        # Only the entries the call is told about can make it garbage ("fewer" passes the first one).
        garbage = huge_count
        for i, a in enumerate(attrs):
            data = bytes.fromhex(a["value"])
            declared, huge = self.length(a["len"], len(data))
            array[i].type = a["type"] & ULONG_MAX
            counted = huge_count or i < count
            if a["null"]:
                array[i].pValue = None
                garbage |= counted and declared > 0
            else:
                buf = ctypes.create_string_buffer(data.ljust(BUF, b"\0"), BUF)
                keep.append(buf)
                array[i].pValue = ctypes.cast(buf, c_void_p)
            array[i].ulValueLen = declared
            garbage |= counted and huge
        if spec["null"]:
            garbage |= count > 0
            return None, count, garbage
        return array, count, garbage

    def mechanism(self, spec: dict, keep: list) -> tuple[Any, bool]:
        m = ck.CK_MECHANISM()
        m.mechanism = spec["mech"] & ULONG_MAX
        data = bytes.fromhex(spec["param"])
        declared, huge = self.length(spec["len"], len(data))
        garbage = huge
        if spec["null"]:
            m.pParameter = None
            garbage |= declared > 0
        else:
            buf = ctypes.create_string_buffer(data.ljust(BUF, b"\0"), BUF)
            keep.append(buf)
            m.pParameter = ctypes.cast(buf, c_void_p)
        m.ulParameterLen = declared
        keep.append(m)
        return byref(m), garbage

    def data(self, spec: dict, keep: list) -> tuple[Any, int, bool]:
        raw = bytes.fromhex(spec["value"])
        declared, huge = self.length(spec["len"], len(raw))
        if spec["null"]:
            return None, declared, huge or declared > 0
        buf = ctypes.create_string_buffer(raw.ljust(BUF, b"\0"), BUF)
        keep.append(buf)
        return buf, declared, huge

    # --- actions -------------------------------------------------------------------------------
    def run(self, program: list[dict]) -> list[dict]:
        self.ready()
        results = []
        for action in program:
            keep: list = []
            self.violation = None
            rvs, must_fail = getattr(self, "act_" + action["kind"])(action, keep)
            results.append({"kind": action["kind"], "rvs": rvs, "must_fail": must_fail, "violation": self.violation})
        return results

    def _call(self, name: str, *args: Any) -> int:
        return ck.raw(self.lib, name, *args)

    def act_get_attr(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        o, bad_o = self.handle(a["object"])
        n = len(a["types"])
        array = (ck.CK_ATTRIBUTE * max(n, 1))()
        for i, (atype, out, declared) in enumerate(zip(a["types"], a["out"], a["lens"])):
            array[i].type = atype & ULONG_MAX
            if out:
                buf = ctypes.create_string_buffer(BUF)
                keep.append(buf)
                array[i].pValue = ctypes.cast(buf, c_void_p)
                array[i].ulValueLen = declared if declared <= BUF else declared & ULONG_MAX
            else:
                array[i].pValue, array[i].ulValueLen = None, 0
        rv = self._call("C_GetAttributeValue", ck.CK_ULONG(s), array if n else None, ck.CK_ULONG(n))
        sensitive = a["object"] in ("aes", "hmac") and Attribute.VALUE in a["types"]
        return [rv], bad_s or bad_o or sensitive

    def act_create(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        array, count, garbage = self.template(a["template"], keep)
        out = ck.CK_ULONG(0)
        rv = self._call("C_CreateObject", ck.CK_ULONG(s), array, ck.CK_ULONG(count),
                        None if a["out_null"] else byref(out))
        if rv == CKR.OK and out.value:
            self._call("C_DestroyObject", ck.CK_ULONG(s), out)
        return [rv], bad_s or garbage or a["out_null"]

    def act_generate(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        mech, bad_m = self.mechanism(a["mech"], keep)
        array, count, garbage = self.template(a["template"], keep)
        out = ck.CK_ULONG(0)
        rv = self._call("C_GenerateKey", ck.CK_ULONG(s), mech, array, ck.CK_ULONG(count),
                        None if a["out_null"] else byref(out))
        if rv == CKR.OK and out.value:
            self._call("C_DestroyObject", ck.CK_ULONG(s), out)
        return [rv], bad_s or bad_m or garbage or a["out_null"]

    def act_set_attr(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        o, bad_o = self.handle(a["object"])
        if a["object"] in ("aes", "hmac", "data"):
            o, bad_o = self.h.get("destroyed", 0), True  # never change the fixture's objects
        array, count, garbage = self.template(a["template"], keep)
        rv = self._call("C_SetAttributeValue", ck.CK_ULONG(s), ck.CK_ULONG(o), array, ck.CK_ULONG(count))
        return [rv], bad_s or bad_o or garbage

    def act_find(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        array, count, garbage = self.template(a["template"], keep)
        rv1 = self._call("C_FindObjectsInit", ck.CK_ULONG(s), array, ck.CK_ULONG(count))
        out = (ck.CK_ULONG * (BUF // sizeof(ck.CK_ULONG)))()
        n = ck.CK_ULONG(0)
        limit = a["max"] if a["max"] <= len(out) else a["max"] & ULONG_MAX
        rv2 = self._call("C_FindObjects", ck.CK_ULONG(s), None if a["out_null"] else out, ck.CK_ULONG(limit),
                         None if a["count_null"] else byref(n))
        self._call("C_FindObjectsFinal", ck.CK_ULONG(s))  # ends the search; its rv is not what is judged
        # The init is what the garbage is fed to; FindObjects with NULL pulCount must fail too.
        if bad_s or garbage:
            return [rv1], True
        return [rv2], a["count_null"] or (a["out_null"] and limit > 0 and rv1 == CKR.OK)

    def act_crypt(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        k, bad_k = self.handle(a["key"])
        bad_k |= a["key"] == "data"  # a data object is no key
        mech, bad_m = self.mechanism(a["mech"], keep)
        op = a["op"]
        init = {"encrypt": "C_EncryptInit", "decrypt": "C_DecryptInit", "sign": "C_SignInit",
                "verify": "C_VerifyInit", "digest": "C_DigestInit"}[op]
        rv_init = (self._call(init, ck.CK_ULONG(s), mech) if op == "digest"
                   else self._call(init, ck.CK_ULONG(s), mech, ck.CK_ULONG(k)))
        data, length, bad_d = self.data(a["data"], keep)
        out = ctypes.create_string_buffer(BUF)
        out_len = ck.CK_ULONG(a["out_len"] & ULONG_MAX)
        out_ptr = None if a["out_null"] else out
        len_ptr = None if a["len_null"] else byref(out_len)
        if op == "verify":
            rv = self._call("C_Verify", ck.CK_ULONG(s), data, ck.CK_ULONG(length), out, ck.CK_ULONG(min(a["out_len"], 64)))
        elif a["update"]:
            rv = self._call({"encrypt": "C_EncryptUpdate", "decrypt": "C_DecryptUpdate", "sign": "C_SignUpdate",
                             "digest": "C_DigestUpdate"}[op], *(
                [ck.CK_ULONG(s), data, ck.CK_ULONG(length)] if op in ("sign", "digest")
                else [ck.CK_ULONG(s), data, ck.CK_ULONG(length), out_ptr, len_ptr]))
        else:
            rv = self._call({"encrypt": "C_Encrypt", "decrypt": "C_Decrypt", "sign": "C_Sign",
                             "digest": "C_Digest"}[op], ck.CK_ULONG(s), data, ck.CK_ULONG(length), out_ptr, len_ptr)
        # Leave no operation active for the next action.
        for final in ("C_EncryptFinal", "C_DecryptFinal", "C_SignFinal", "C_DigestFinal"):
            ln = ck.CK_ULONG(BUF)
            self._call(final, ck.CK_ULONG(s), out, byref(ln))
        self._call("C_VerifyFinal", ck.CK_ULONG(s), out, ck.CK_ULONG(0))
        if bad_s or bad_m or (bad_k and op != "digest"):
            return [rv_init], True
        uses_len_ptr = op != "verify" and not (a["update"] and op in ("sign", "digest"))
        return [rv], rv_init == CKR.OK and (bad_d or (a["len_null"] and uses_len_ptr))

    def act_struct_param(self, a: dict, keep: list) -> tuple[list[int], bool]:
        """C_EncryptInit with a CK_GCM_PARAMS / CK_CCM_PARAMS whose inner pointers and lengths lie."""
        fields = {"gcm": [("pIv", c_void_p), ("ulIvLen", ck.CK_ULONG), ("ulIvBits", ck.CK_ULONG),
                          ("pAAD", c_void_p), ("ulAADLen", ck.CK_ULONG), ("ulTagBits", ck.CK_ULONG)],
                  "ccm": [("ulDataLen", ck.CK_ULONG), ("pNonce", c_void_p), ("ulNonceLen", ck.CK_ULONG),
                          ("pAAD", c_void_p), ("ulAADLen", ck.CK_ULONG), ("ulMACLen", ck.CK_ULONG)]}[a["kind_"]]
        struct_type = type("P", (ctypes.Structure,), {"_fields_": fields})
        st = struct_type()
        keep.append(st)
        garbage = False
        pointers = [name for name, t in fields if t is c_void_p]
        for (name, spec) in zip(pointers, a["buffers"]):
            length_field = {"pIv": "ulIvLen", "pAAD": "ulAADLen", "pNonce": "ulNonceLen"}[name]
            data, length, bad = self.data(spec, keep)
            setattr(st, name, ctypes.cast(data, c_void_p) if data is not None else None)
            setattr(st, length_field, length)
            garbage |= bad
        for name, value in a["numbers"].items():
            if hasattr(st, name) and name not in ("ulIvLen", "ulAADLen", "ulNonceLen"):
                if value == "match":  # the consistent value, so that some calls get past the checks
                    value = st.ulIvLen * 8
                setattr(st, name, value & ULONG_MAX)
        m = ck.CK_MECHANISM()
        m.mechanism = Mechanism.AES_GCM if a["kind_"] == "gcm" else Mechanism.AES_CCM
        m.pParameter = ctypes.cast(byref(st), c_void_p)
        # Only shorter than the struct (a longer lie would make the library read past it).
        m.ulParameterLen = max(ctypes.sizeof(st) + a["size_delta"], 0)
        garbage |= m.ulParameterLen != ctypes.sizeof(st)
        s, bad_s = self.handle(a["session"])
        rv = self._call("C_EncryptInit", ck.CK_ULONG(s), byref(m), ck.CK_ULONG(self.h.get("aes", 0)))
        if rv == CKR.OK:
            out = ctypes.create_string_buffer(BUF)
            self._call("C_Encrypt", ck.CK_ULONG(s), b"x" * 16, ck.CK_ULONG(16), out, byref(ck.CK_ULONG(BUF)))
            self._call("C_EncryptFinal", ck.CK_ULONG(s), out, byref(ck.CK_ULONG(BUF)))
        return [rv], garbage or bad_s

    def act_login(self, a: dict, keep: list) -> tuple[list[int], bool]:
        s, bad_s = self.handle(a["session"])
        pin, length, bad_p = self.data(a["pin"], keep)
        self.relogin = True
        rv = self._call("C_Login", ck.CK_ULONG(s), ck.CK_ULONG(a["user"] & ULONG_MAX), pin, ck.CK_ULONG(length))
        return [rv], bad_s or bad_p or (a["user"] not in (0, 1, 2))

    def act_session(self, a: dict, keep: list) -> tuple[list[int], bool]:
        out = ck.CK_ULONG(0)
        slot = a["slot"] if isinstance(a["slot"], int) else self.slot
        rv = self._call("C_OpenSession", ck.CK_ULONG(slot & ULONG_MAX), ck.CK_ULONG(a["flags"] & ULONG_MAX), None,
                        None, None if a["out_null"] else byref(out))
        if rv == CKR.OK:
            self._call("C_CloseSession", out)
        # PKCS#11 3.0 §5.6: CKF_SERIAL_SESSION must be set; the slot must exist.
        garbage = a["out_null"] or not a["flags"] & SessionFlag.SERIAL_SESSION or slot not in self.all_slots
        return [rv], garbage

    def act_lifecycle(self, a: dict, keep: list) -> tuple[list[int], bool]:
        """C_Finalize, a call (must say NOT_INITIALIZED), a malformed C_Initialize, then a good one."""
        self._call("C_Initialize", None)  # an earlier action may have left it finalized
        rvs = [self._call("C_Finalize", None)]
        info = (c_ubyte * 256)()
        rvs.append(self._call("C_GetInfo", info))
        args = ck.CK_C_INITIALIZE_ARGS()
        if a["bad_init"] == "reserved":
            args.pReserved = 1
        else:
            args.LockMutex = ck.MUTEX_FN(lambda m: 0)  # only one of the four callbacks
            keep.append(args.LockMutex)
        rvs.append(self._call("C_Initialize", byref(args)))
        self.h.clear()
        self.relogin = True
        if not (rvs[0] == CKR.OK and rvs[1] == CKR.CRYPTOKI_NOT_INITIALIZED and rvs[2] == CKR.ARGUMENTS_BAD):
            self.violation = f"finalize / call / malformed initialize gave {[hex(r) for r in rvs]}"
        self.ready()  # the rest of the program runs on a fresh C_Initialize
        return rvs, False

    def act_selftest(self, a: dict, keep: list) -> tuple[list[int], bool]:
        """What the parent must catch (tests of the harness itself; never generated)."""
        if a["what"] == "crash":
            os.kill(os.getpid(), 11)
        if a["what"] == "hang":
            time.sleep(3600)
        if a["what"] == "traceback":
            sys.stderr.write("Traceback (most recent call last):\n  (injected)\n")
            sys.stderr.flush()
        return [CKR.OK], a["what"] == "ok_on_garbage"

    def act_generic(self, a: dict, keep: list) -> tuple[list[int], bool]:
        """Any function with any arguments: pointers NULL or a zeroed buffer, numbers small or huge."""
        name = a["fn"]
        params = self.functions[name]
        args: list[Any] = []
        for ptype, value in zip(params, a["args"]):
            if ptype.endswith("_PTR") or ptype.endswith("*") or ptype == "CK_NOTIFY":
                if value == 0 or ptype == "CK_NOTIFY":
                    args.append(None)
                else:
                    buf = ctypes.create_string_buffer(BUF)
                    keep.append(buf)
                    args.append(buf)
            elif ptype == "CK_SESSION_HANDLE" and isinstance(value, str):
                args.append(ck.CK_ULONG(self.handle(value)[0]))
            else:
                number = value if isinstance(value, int) else 0
                if name == "C_WaitForSlotEvent" and ptype == "CK_FLAGS":
                    number |= CKF_DONT_BLOCK
                args.append(ck.CK_ULONG(number & ULONG_MAX))
        if name in ("C_Login", "C_LoginUser", "C_Logout"):
            self.relogin = True
        rv = self._call(name, *args)
        if name in ("C_Finalize", "C_CloseAllSessions", "C_CloseSession"):
            self.h.clear()
        return [rv], False


def serve() -> int:
    child = Child()
    for line in sys.stdin:
        program = json.loads(line)
        try:
            results = child.run(program)
            reply = {"results": results}
        except Exception as exc:  # noqa: BLE001 - a setup failure is reported, not a crash
            reply = {"setup_error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


# ================================================================================================
# The parent: strategies, the child's lifecycle, the oracles
# ================================================================================================
def strategies() -> Any:
    from hypothesis import strategies as st

    # Mostly well-formed, so that calls get past the first check and reach the deeper code.
    rarely = st.sampled_from([False] * 5 + [True])
    huge = st.integers(HUGE_MIN, ULONG_MAX)
    length = st.sampled_from(["exact"] * 6 + ["short", "zero"]) | huge
    small_bytes = st.binary(max_size=MAX_SMALL).map(bytes.hex)

    def mostly(choices: list, other: Any) -> Any:
        """One of `choices`, or (one time in len(choices) + 1) a draw from `other`."""
        return st.sampled_from(choices + [None]).flatmap(lambda c: other if c is None else st.just(c))

    session = mostly(["rw"] * 12 + ["ro"] * 3 + ["closed", "zero"], st.integers(0, ULONG_MAX))
    obj = mostly(["aes"] * 4 + ["hmac"] * 4 + ["data", "destroyed", "zero"], st.integers(0, 64))
    attr_type = mostly(ATTRIBUTES, st.integers(0, ULONG_MAX))
    value = (st.sampled_from([b"\x01", b"\x00", ObjectClass.SECRET_KEY.to_bytes(8, "little"), KeyType.AES.to_bytes(8, "little"),
                              (16).to_bytes(8, "little")]).map(bytes.hex) | small_bytes)
    attribute = st.fixed_dictionaries({"type": attr_type, "value": value, "len": length, "null": rarely})
    template = st.fixed_dictionaries({
        "attrs": st.lists(attribute, max_size=6),
        "count": st.sampled_from(["all"] * 5 + ["fewer"]) | huge,
        "null": rarely})
    no_param = st.fixed_dictionaries({"mech": st.sampled_from(MECHANISMS), "param": st.just(""),
                                      "len": st.just("zero"), "null": st.just(True)})
    mech = no_param | st.fixed_dictionaries({"mech": mostly(MECHANISMS, st.integers(0, ULONG_MAX)),
                                             "param": small_bytes, "len": length, "null": rarely})
    data = st.fixed_dictionaries({"value": small_bytes, "len": length, "null": rarely})
    types = st.lists(attr_type, max_size=5)

    def get_attr(ts: list[int]) -> Any:
        n = len(ts)
        return st.fixed_dictionaries({
            "kind": st.just("get_attr"), "session": session, "object": obj, "types": st.just(ts),
            "out": st.lists(st.booleans(), min_size=n, max_size=n),
            "lens": st.lists(st.integers(0, BUF) | huge, min_size=n, max_size=n)})

    functions = [name for name, _ in _functions() if name not in GENERIC_EXCLUDED]
    param_counts = dict(_functions())
    arg = st.sampled_from([0, 1, 2, 16]) | st.integers(0, MAX_SMALL) | huge | st.sampled_from(["rw", "ro"])

    def generic(name: str) -> Any:
        n = len(param_counts[name])
        return st.fixed_dictionaries({"kind": st.just("generic"), "fn": st.just(name),
                                      "args": st.lists(arg, min_size=n, max_size=n)})

    action = st.one_of(
        types.flatmap(get_attr),
        st.fixed_dictionaries({"kind": st.just("create"), "session": session, "template": template,
                               "out_null": rarely}),
        st.fixed_dictionaries({"kind": st.just("generate"), "session": session, "mech": mech, "template": template,
                               "out_null": rarely}),
        st.fixed_dictionaries({"kind": st.just("set_attr"), "session": session, "object": obj, "template": template}),
        st.fixed_dictionaries({"kind": st.just("find"), "session": session, "template": template,
                               "max": st.integers(0, 16) | huge, "out_null": rarely,
                               "count_null": rarely}),
        st.fixed_dictionaries({"kind": st.just("crypt"), "session": session, "key": obj, "mech": mech, "data": data,
                               "op": st.sampled_from(["encrypt", "decrypt", "sign", "verify", "digest"]),
                               "out_len": st.integers(0, BUF), "out_null": rarely,
                               "len_null": rarely, "update": st.booleans()}),
        st.fixed_dictionaries({"kind": st.just("login"), "session": session, "pin": data,
                               "user": mostly([0, 1, 2], st.integers(0, ULONG_MAX))}),
        st.fixed_dictionaries({"kind": st.just("session"), "slot": mostly(["token"] * 3, st.integers(0, ULONG_MAX)),
                               "flags": mostly([4, 6, 0, 2], st.integers(0, ULONG_MAX)),
                               "out_null": rarely}),
        st.fixed_dictionaries({"kind": st.just("lifecycle"), "bad_init": st.sampled_from(["reserved", "partial"])}),
        st.fixed_dictionaries({"kind": st.just("struct_param"), "kind_": st.sampled_from(["gcm", "ccm"]),
                               "session": session, "buffers": st.lists(
                                   st.fixed_dictionaries({"value": st.binary(min_size=7, max_size=16).map(bytes.hex),
                                                          "len": length, "null": rarely}) | data,
                                   min_size=2, max_size=2),
                               "numbers": st.fixed_dictionaries({
                                   "ulIvBits": mostly(["match"] * 6 + [0, 96], huge),
                                   "ulTagBits": mostly([128] * 6 + [96, 64, 0, 7], huge),
                                   "ulDataLen": mostly([16] * 6 + [0], st.integers(0, ULONG_MAX)),
                                   "ulMACLen": mostly([16] * 4 + [8, 4, 0, 3], st.integers(0, ULONG_MAX))}),
                               "size_delta": st.sampled_from([0] * 6 + [-1, -8, -48])}),
        st.sampled_from(functions).flatmap(generic),
    )
    return st.lists(action, min_size=1, max_size=8)


class FuzzTarget:
    """The child process and the oracles; restarts the child after a crash."""

    def __init__(self, kmdata: Path, env: dict[str, str], hang_seconds: float = HANG_SECONDS) -> None:
        self.kmdata, self.env, self.hang_seconds = kmdata, env, hang_seconds
        self.stderr_path = kmdata.parent / "fuzz-child.stderr"
        self.proc: subprocess.Popen | None = None
        self._stderr_seen = 0

    def start(self) -> None:
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fuzz_cabi.py"), "serve"], env=self.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     text=True, bufsize=1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.stderr_file.close()

    def _new_stderr(self) -> str:
        self.stderr_file.flush()
        data = self.stderr_path.read_bytes()
        text = data[self._stderr_seen:].decode(errors="replace")
        self._stderr_seen = len(data)
        return text

    def check(self, program: list[dict]) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        assert self.proc is not None
        self.proc.stdin.write(json.dumps(program) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.hang_seconds)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            raise AssertionError(f"hang: no answer in {self.hang_seconds}s to {json.dumps(program)}")
        line = self.proc.stdout.readline()
        if not line:
            status = self.proc.wait()
            self.proc = None
            raise AssertionError(f"crash: the child exited with {status} "
                                 f"(signal {-status if status < 0 else None}) on {json.dumps(program)}\n"
                                 f"{self._new_stderr()[-3000:]}")
        reply = json.loads(line)
        stderr = self._new_stderr()
        assert "Traceback" not in stderr and "unexpected error" not in stderr, stderr[-4000:]
        assert "setup_error" not in reply, reply
        for action, result in zip(program, reply["results"]):
            for rv in result["rvs"]:
                assert rv != CKR.GENERAL_ERROR, f"CKR_GENERAL_ERROR from {action}"
            assert result["violation"] is None, f"{result['violation']}: {action}"
            if result["must_fail"]:
                assert CKR.OK not in result["rvs"], f"CKR_OK on garbage: {action}"


def make_fuzz_world(kmdata: Path, env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, str(HERE / "p11cli.py"), "mktoken", LABEL], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)


def fuzz_world(kmdata: Path, env: dict[str, str], examples: int, *, derandomize: bool = False) -> None:
    """`examples` random programs against a fresh token in `kmdata`; raises on the first failure.
    `derandomize`: the same programs every run (CI's bounded run is reproducible; `make fuzz` explores)."""
    from hypothesis import HealthCheck, given, settings

    make_fuzz_world(kmdata, env)
    target = FuzzTarget(kmdata, env)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(strategies())
    def fuzz(program: list[dict]) -> None:
        target.check(program)

    try:
        fuzz()
    finally:
        target.stop()


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        return serve()
    import argparse
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("cmd", choices=["run"])
    parser.add_argument("--examples", type=int, default=5000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kmdata = Path(tmp) / "kmdata"
        kmdata.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CKNFAST_", "SOFTSHIELD_LOG"))}
        env["NFAST_KMDATA"] = str(kmdata)
        start = time.monotonic()
        fuzz_world(kmdata, env, opts.examples)
        print(f"fuzz: {opts.examples} programs in {time.monotonic() - start:.0f}s, no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
