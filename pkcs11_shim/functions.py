"""The C functions the library exports and how each one's arguments cross the wire, for run time.

`native/functions.txt` lists every C function (its table, whether C answers it, its parameters); both
build scripts generate C from it (`pkcs11_shim.build`, `pkcs11_shim.client_build`) and the hardserver
decodes calls with the same plans (`plans()`), so this module holds what both sides read and nothing
that needs a compiler: the hardserver imports it, never a build script.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"


@dataclass(frozen=True)
class CFunction:
    table: str  # "2.40", "3.0", "3.2" (the table that first has it) or "vendor" (exported, in no table)
    in_c: bool  # answered in C (hands out tables), no Python handler
    name: str
    params: str  # the C parameter list without parentheses

    @property
    def arg_names(self) -> list[str]:
        if self.params.strip() in ("", "void"):
            return []
        return [p.strip().split()[-1] for p in self.params.split(",")]


def read_functions(path: Path = NATIVE / "functions.txt") -> list[CFunction]:
    line_re = re.compile(r"^(2\.40|3\.0|3\.2|vendor)(c?)\s+(C_\w+)\s+\((.*)\)\s*$")
    functions = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            raise SystemExit(f"{path}: cannot parse line: {line}")
        functions.append(CFunction(m.group(1), m.group(2) == "c", m.group(3), m.group(4)))
    return functions


#: Answered in the client itself: the server is initialized once, by the server.
LOCAL = {"C_Initialize": "ss_initialize", "C_Finalize": "ss_finalize"}
SCALARS = frozenset({"CK_ULONG", "CK_SLOT_ID", "CK_SESSION_HANDLE", "CK_OBJECT_HANDLE", "CK_USER_TYPE",
                     "CK_FLAGS", "CK_MECHANISM_TYPE", "CK_BBOOL", "CK_SESSION_VALIDATION_FLAGS_TYPE",
                     "CK_STATE", "CK_ATTRIBUTE_TYPE", "CK_PROFILE_ID"})
BYTE_POINTERS = frozenset({"CK_BYTE_PTR", "CK_UTF8CHAR_PTR", "CK_VOID_PTR", "CK_CHAR_PTR"})
ULONG_OUT = frozenset({"CK_OBJECT_HANDLE_PTR", "CK_SESSION_HANDLE_PTR", "CK_ULONG_PTR", "CK_SLOT_ID_PTR",
                       "CK_FLAGS_PTR"})
ULONG_LISTS = frozenset({"CK_SLOT_ID_PTR", "CK_MECHANISM_TYPE_PTR"})
STRUCT_OUT = {"CK_INFO_PTR": "CK_INFO", "CK_SLOT_INFO_PTR": "CK_SLOT_INFO", "CK_TOKEN_INFO_PTR": "CK_TOKEN_INFO",
              "CK_SESSION_INFO_PTR": "CK_SESSION_INFO", "CK_MECHANISM_INFO_PTR": "CK_MECHANISM_INFO"}
#: Arguments that never cross: callbacks and reserved pointers (the server passes NULL).
NEVER_SENT = frozenset({"pApplication", "Notify", "pReserved"})
#: Parameters the protocol does not carry: the 3.2 asynchronous family names an earlier call by a
#: NUL-terminated function name and returns results into the caller's memory across calls.
NOT_CARRIED = frozenset({"pFunctionName", "pResult"})
#: (function, parameter) -> the operation, where the type alone says too little.
OVERRIDES = {("C_GenerateRandom", "RandomData"): ("out_fixed", 2),  # caller-sized output, no length query
             ("C_InitToken", "pLabel"): ("in_fixed32", 1)}  # 32 blank-padded bytes (§5.6)

#: Environment variables the module reads while answering a call, which describe the calling process
#: rather than the module: the client library sends its own values with the call (after the
#: arguments), and the server answers the call under them. The vendor K-of-N login reads which
#: cards the operator put in the slot, in order (emulator.transfer.SLOT_ENV).
FORWARDED_ENV: dict[str, tuple[str, ...]] = {"C_LoginBegin": ("SOFTSHIELD_CARD_SLOT",),
                                             "C_LoginNext": ("SOFTSHIELD_CARD_SLOT",)}

MESSAGE_INIT = re.compile(r"^C_Message(Encrypt|Decrypt|Sign|Verify)Init$")
MESSAGE_CALL = re.compile(r"^C_(Encrypt|Decrypt|Sign|Verify)Message(Begin|Next)?$")
FAMILY = {"Encrypt": "SS_MSG_ENCRYPT", "Decrypt": "SS_MSG_DECRYPT", "Sign": "SS_MSG_SIGN", "Verify": "SS_MSG_VERIFY"}

@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[str, ...]
    ctype: str = ""  # out_struct: the struct


@dataclass(frozen=True)
class Plan:
    function: CFunction
    fid: int
    ops: tuple[Op, ...] | None  # None: not carried by the protocol
    family: str = ""  # message family of a message call or init
    env: tuple[str, ...] = ()  # FORWARDED_ENV: the caller's values travel after the arguments

    @property
    def name(self) -> str:
        return self.function.name


def function_id(f: CFunction) -> int:
    """A call's id: the CRC of its full signature, so a client and server built from different
    function lists refuse each other's calls instead of misreading the arguments. Forwarded
    environment variables are part of the arguments, so of the id."""
    env = "".join(f" ${name}" for name in FORWARDED_ENV.get(f.name, ()))
    return zlib.crc32(f"{f.name}({' '.join(f.params.split())}){env}".encode())


def params_of(f: CFunction) -> list[tuple[str, str]]:
    if f.params.strip() in ("", "void"):
        return []
    out = []
    for p in f.params.split(","):
        words = p.split()
        out.append((" ".join(words[:-1]), words[-1]))
    return out


def classify(f: CFunction) -> tuple[Op, ...] | None:
    """The wire operations of one function's parameters, or None when one cannot be carried."""
    params = params_of(f)
    ops: list[Op] = []
    i = 0
    while i < len(params):
        ctype, name = params[i]
        nxt = params[i + 1][0] if i + 1 < len(params) else ""
        nxt2 = params[i + 2][0] if i + 2 < len(params) else ""
        override = OVERRIDES.get((f.name, name))
        if name in NOT_CARRIED:
            return None
        if override:
            kind, used = override
        elif name in NEVER_SENT or ctype == "CK_NOTIFY":
            kind, used = "never", 1
        elif ctype == "CK_MECHANISM_PTR":
            kind, used = "mechanism", 1
        elif ctype == "CK_ATTRIBUTE_PTR" and nxt == "CK_ULONG":
            kind, used = ("template_io" if f.name == "C_GetAttributeValue" else "template"), 2
        elif ctype == "CK_OBJECT_HANDLE_PTR" and nxt == "CK_ULONG" and nxt2 == "CK_ULONG_PTR":
            kind, used = "out_handles", 3
        elif ctype in ULONG_LISTS and nxt == "CK_ULONG_PTR":
            kind, used = "out_ulongs", 2
        elif ctype in BYTE_POINTERS and nxt == "CK_ULONG_PTR":
            kind, used = "out_bytes", 2
        elif ctype in BYTE_POINTERS and nxt == "CK_ULONG":
            kind = "msg_param" if name == "pParameter" and MESSAGE_CALL.match(f.name) else "in_bytes"
            used = 2
        elif ctype in ULONG_OUT:
            kind, used = "out_ulong", 1
        elif ctype in STRUCT_OUT:
            ops.append(Op("out_struct", (name,), STRUCT_OUT[ctype]))
            i += 1
            continue
        elif ctype in SCALARS:
            kind, used = "ulong", 1
        else:
            return None
        ops.append(Op(kind, tuple(n for _t, n in params[i:i + used])))
        i += used
    return tuple(ops)


def plans(functions: list[CFunction] | None = None) -> list[Plan]:
    """One plan per forwarded function (not the local and table-handing ones)."""
    result = []
    for f in functions if functions is not None else read_functions():
        if f.in_c or f.name in LOCAL:
            continue
        m = MESSAGE_INIT.match(f.name) or MESSAGE_CALL.match(f.name)
        result.append(Plan(f, function_id(f), classify(f), FAMILY[m.group(1)] if m else "",
                           FORWARDED_ENV.get(f.name, ())))
    return result


def nested_attributes() -> list[int]:
    """The attributes whose value is a CK_ATTRIBUTE array, sorted: the in-process kind table decides
    (abi.marshal.read_template reads the same), so the client nests exactly what the module reads."""
    from pkcs11_shim.attributes.codecs import KINDS, Kind

    return sorted(int(a) for a, kind in KINDS.items() if kind is Kind.TEMPLATE)
