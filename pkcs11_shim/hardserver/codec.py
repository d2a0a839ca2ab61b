"""One forwarded call: arguments from the wire into C memory, the module's C entry point, outputs back.

Driven by `pkcs11_shim.client_build.plans()`, the same per-function plan the client library was
generated from, so each side reads exactly what the other wrote. The module is our own in-process
library loaded through cffi's ABI mode: the server calls the very C entry points a host would, and
client mode has the in-process semantics by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cffi

from pkcs11_shim.build import NATIVE, read_functions
from pkcs11_shim.client_build import Op, Plan, plans
from pkcs11_shim.hardserver.protocol import MAX_PAYLOAD, ProtocolError, Reader, Writer

CKR_OK = 0
CKR_DEVICE_MEMORY = 0x31  # beyond the protocol's frame limit
CKF_ARRAY_ATTRIBUTE = 0x40000000
CK_UNAVAILABLE = (1 << 64) - 1
MAX_TEMPLATE = 4096      # attributes in one template
MAX_DEPTH = 6            # nesting of parameter nodes and array attributes
MAX_RELOCATIONS = 64


def load_module(path: Path) -> tuple[cffi.FFI, Any]:
    """cffi ABI-mode view of the in-process library: its types and every forwarded entry point."""
    ffi = cffi.FFI()
    types = re.sub(r"/\*.*?\*/", "", (NATIVE / "pkcs11_types.h").read_text(), flags=re.S)
    protos = [f"CK_RV {f.name}({f.params});" for f in read_functions() if not f.in_c]
    ffi.cdef(types + "\n" + "\n".join(protos))
    return ffi, ffi.dlopen(str(path))


#: The C struct behind each registry parameter kind that holds pointers (pkcs11_shim/abi/
#: mechanism_params.py reads the same structs). The server checks that every pointer field in such a
#: parameter is one the client sent (or NULL), so a client whose mechanism table is older than the
#: server's gets CKR_MECHANISM_PARAM_INVALID instead of the module following its addresses.
PARAM_STRUCTS = {
    "oaep": "CK_RSA_PKCS_OAEP_PARAMS", "rsa_aes_key_wrap": "CK_RSA_AES_KEY_WRAP_PARAMS",
    "ecdh1": "CK_ECDH1_DERIVE_PARAMS", "gcm": "CK_GCM_PARAMS", "ccm": "CK_CCM_PARAMS", "eddsa": "CK_EDDSA_PARAMS",
    "key_derivation_string": "CK_KEY_DERIVATION_STRING_DATA", "aes_cbc_encrypt_data": "CK_AES_CBC_ENCRYPT_DATA_PARAMS",
    "hkdf": "CK_HKDF_PARAMS", "pbkd2": "CK_PKCS5_PBKD2_PARAMS2", "sp800_108": "CK_SP800_108_KDF_PARAMS",
    "sign_additional_context": "CK_SIGN_ADDITIONAL_CONTEXT",
    "hash_sign_additional_context": "CK_HASH_SIGN_ADDITIONAL_CONTEXT",
}
CKR_MECHANISM_PARAM_INVALID = 0x71


@dataclass
class Node:
    """One rebuilt parameter buffer and the child buffers patched into it, by offset."""

    buf: Any
    length: int
    children: dict[int, "Node"] = field(default_factory=dict)


@dataclass
class CallMemory:
    """Everything one call allocated, kept alive until its reply is written."""

    keep: list[Any] = field(default_factory=list)
    writebacks: list[tuple[Any, int]] = field(default_factory=list)


class Codec:
    def __init__(self, ffi: cffi.FFI, lib: Any) -> None:
        self.ffi, self.lib = ffi, lib
        self.plans: dict[int, Plan] = {p.fid: p for p in plans() if p.ops is not None}
        self.by_name: dict[str, Plan] = {p.name: p for p in self.plans.values()}
        self.sizeof_attr = ffi.sizeof("CK_ATTRIBUTE")
        self.ptr_size = ffi.sizeof("void *")

    # ---- helpers ------------------------------------------------------------------------------
    def _bytes(self, mem: CallMemory, data: bytes, size: int | None = None) -> Any:
        buf = self.ffi.new("CK_BYTE[]", max(size if size is not None else len(data), 1))
        if data:
            self.ffi.memmove(buf, data, len(data))
        mem.keep.append(buf)
        return buf

    def _capacity(self, n: int, unit: int = 1) -> int:
        if n * unit > MAX_PAYLOAD:
            # The reply could not carry more anyway; the module sees a buffer the frame can return.
            return MAX_PAYLOAD // unit
        return n

    def _node(self, r: Reader, mem: CallMemory, depth: int) -> Node:
        """A parameter node: bytes, then relocations (offset -> child node) patched in as pointers."""
        if depth > MAX_DEPTH:
            raise ProtocolError("mechanism parameter nested too deeply")
        writeback = r.u8()
        length = r.u64()
        if length > MAX_PAYLOAD:
            raise ProtocolError(f"parameter node of {length} bytes")
        node = Node(self._bytes(mem, r.take(length)), length)
        buf = node.buf
        if writeback:
            mem.writebacks.append((buf, length))
        relocations = r.u64()
        if relocations > MAX_RELOCATIONS:
            raise ProtocolError(f"{relocations} pointers in one parameter")
        for _ in range(relocations):
            offset = r.u64()
            if offset + self.ptr_size > length:
                raise ProtocolError(f"pointer at offset {offset} outside a {length}-byte parameter")
            child = self._node(r, mem, depth + 1)
            node.children[offset] = child
            self.ffi.memmove(buf + offset, self.ffi.new("void *[1]", [child.buf]), self.ptr_size)
        return node

    def _check_pointers(self, node: Node, ctype: Any, base: int = 0, depth: int = 0) -> None:
        """Every pointer field of the struct at `base` in `node` is NULL or one we patched in."""
        size = self.ffi.sizeof(ctype)
        if node.length < base + size or depth > MAX_DEPTH:
            return  # too short: the module's reader refuses it by its length
        for name, f in ctype.fields:
            if f.type.kind != "pointer":
                continue
            offset = base + f.offset
            child = node.children.get(offset)
            if child is None:
                if bytes(self.ffi.buffer(node.buf + offset, self.ptr_size)) != bytes(self.ptr_size):
                    raise ProtocolError(f"{ctype.cname}.{name} holds an address the client did not send",
                                        CKR_MECHANISM_PARAM_INVALID)
            elif f.type.item.kind == "struct":
                item = f.type.item  # one struct (CK_RSA_PKCS_OAEP_PARAMS) or an array of them
                for i in range(child.length // self.ffi.sizeof(item)):
                    self._check_pointers(child, item, i * self.ffi.sizeof(item), depth + 1)

    def _param_struct(self, mechanism: int) -> Any:
        from pkcs11_shim.mechanisms.registry import REGISTRY  # the module's own table, in this process

        if mechanism not in REGISTRY:
            return None
        name = PARAM_STRUCTS.get(REGISTRY.get(mechanism).param_kind)
        return self.ffi.typeof(name) if name else None

    def _template(self, r: Reader, mem: CallMemory, io: bool, depth: int = 0) -> tuple[Any, int, list]:
        """(CK_ATTRIBUTE array or NULL, count, per-entry (capacity, nested info) for the reply)."""
        present, count = r.u8(), r.u64()
        if not present:
            return self.ffi.NULL, count, []
        if count > MAX_TEMPLATE or depth > MAX_DEPTH:
            raise ProtocolError(f"template of {count} attributes (depth {depth}) refused")
        attrs = self.ffi.new("CK_ATTRIBUTE[]", max(count, 1))
        mem.keep.append(attrs)
        entries = []
        for i in range(count):
            a_type, flags, length = r.u64(), r.u8(), r.u64()
            attrs[i].type = a_type
            attrs[i].ulValueLen = length
            nested = None
            if flags & 2:
                arr, n, nested_entries = self._template(r, mem, io, depth + 1)
                attrs[i].pValue = arr
                nested = (n, nested_entries)
            elif flags & 1:
                if io:
                    capacity = 0 if length == CK_UNAVAILABLE else self._capacity(length)
                    attrs[i].ulValueLen = length if length == CK_UNAVAILABLE else capacity
                    attrs[i].pValue = self._bytes(mem, b"", capacity)
                else:
                    if length > MAX_PAYLOAD:
                        raise ProtocolError(f"attribute value of {length} bytes")
                    attrs[i].pValue = self._bytes(mem, r.take(length))
            else:
                attrs[i].pValue = self.ffi.NULL
            entries.append((bool(flags & 1), int(attrs[i].ulValueLen), nested))
        return attrs, count, entries

    def _template_reply(self, w: Writer, attrs: Any, count: int, entries: list) -> None:
        w.u64(count)
        if attrs == self.ffi.NULL:
            return
        for i, (present, capacity, nested) in enumerate(entries):
            length = int(attrs[i].ulValueLen)
            w.u64(length)
            if nested is not None and length != CK_UNAVAILABLE:
                w.u8(2)
                self._template_reply(w, attrs[i].pValue, nested[0], nested[1])
            elif present and nested is None and length != CK_UNAVAILABLE and length <= capacity:
                w.u8(1)
                w.raw(bytes(self.ffi.buffer(attrs[i].pValue, length)))
            else:
                w.u8(0)

    # ---- one call -----------------------------------------------------------------------------
    def decode(self, plan: Plan, payload: bytes) -> tuple[list[Any], list[Callable[[Writer, int], None]], CallMemory]:
        """C arguments in parameter order, and one reply encoder per output."""
        ffi, r, mem = self.ffi, Reader(payload), CallMemory()
        args: list[Any] = []
        replies: list[Callable[[Writer, int], None]] = []
        for op in plan.ops or ():
            DECODERS[op.kind](self, op, r, mem, args, replies)
        r.done()
        if mem.writebacks:
            def writebacks(w: Writer, rv: int) -> None:
                w.u64(len(mem.writebacks))
                for buf, length in mem.writebacks:
                    w.raw(bytes(ffi.buffer(buf, length)))
            replies.append(writebacks)
        elif any(op.kind == "msg_param" for op in plan.ops or ()):
            replies.append(lambda w, rv: w.u64(0))
        return args, replies, mem

    def call(self, plan: Plan, args: list[Any]) -> int:
        return int(getattr(self.lib, plan.name)(*args))

    @staticmethod
    def encode(rv: int, replies: list[Callable[[Writer, int], None]]) -> bytes:
        w = Writer()
        w.u64(rv)
        for reply in replies:
            reply(w, rv)
        return w.getvalue()


# ---- per-operation decoders: read the request, append C arguments, register reply encoders -----

def _ulong(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    args.append(r.u64())


def _in_bytes(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, length = r.u8(), r.u64()
    if present and length > MAX_PAYLOAD:
        raise ProtocolError(f"input of {length} bytes")
    args.append(c._bytes(mem, r.take(length)) if present else c.ffi.NULL)
    if op.kind == "in_bytes":
        args.append(length)


def _out_bytes(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    flags, capacity = r.u8(), r.u64()
    capacity = c._capacity(capacity)
    buf = c._bytes(mem, b"", capacity) if flags & 1 else c.ffi.NULL
    plen = c.ffi.new("CK_ULONG *", capacity) if flags & 2 else c.ffi.NULL
    mem.keep.append(plen)
    args += [buf, plen]

    def reply(w: Writer, rv: int) -> None:
        length = int(plen[0]) if plen != c.ffi.NULL else 0
        w.u64(length)
        has = rv == CKR_OK and buf != c.ffi.NULL and length <= capacity
        w.u8(has)
        if has:
            w.raw(bytes(c.ffi.buffer(buf, length)))
    replies.append(reply)


def _out_fixed(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, length = r.u8(), r.u64()
    if length > MAX_PAYLOAD - 64:
        raise ProtocolError(f"output of {length} bytes exceeds what a reply can carry", CKR_DEVICE_MEMORY)
    buf = c._bytes(mem, b"", length) if present else c.ffi.NULL
    args += [buf, length]

    def reply(w: Writer, rv: int) -> None:
        has = rv == CKR_OK and buf != c.ffi.NULL
        w.u8(has)
        if has:
            w.raw(bytes(c.ffi.buffer(buf, length)))
    replies.append(reply)


def _out_ulongs(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    flags, capacity = r.u8(), r.u64()
    capacity = c._capacity(capacity, 8)
    arr = c.ffi.new("CK_ULONG[]", max(capacity, 1)) if flags & 1 else c.ffi.NULL
    pcount = c.ffi.new("CK_ULONG *", capacity) if flags & 2 else c.ffi.NULL
    mem.keep += [arr, pcount]
    args += [arr, pcount]

    def reply(w: Writer, rv: int) -> None:
        count = int(pcount[0]) if pcount != c.ffi.NULL else 0
        w.u64(count)
        has = rv == CKR_OK and arr != c.ffi.NULL and count <= capacity
        w.u8(has)
        if has:
            for i in range(count):
                w.u64(int(arr[i]))
    replies.append(reply)


def _out_handles(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, maximum = r.u8(), r.u64()
    maximum = c._capacity(maximum, 8)
    count_present, count_value = r.u8(), r.u64()
    arr = c.ffi.new("CK_OBJECT_HANDLE[]", max(maximum, 1)) if present else c.ffi.NULL
    pcount = c.ffi.new("CK_ULONG *", count_value) if count_present else c.ffi.NULL
    mem.keep += [arr, pcount]
    args += [arr, maximum, pcount]

    def reply(w: Writer, rv: int) -> None:
        found = int(pcount[0]) if pcount != c.ffi.NULL else 0
        n = min(found, maximum) if rv == CKR_OK and arr != c.ffi.NULL else 0
        w.u64(n)
        for i in range(n):
            w.u64(int(arr[i]))
        w.u64(found)
    replies.append(reply)


def _out_ulong(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, value = r.u8(), r.u64()
    p = c.ffi.new("CK_ULONG *", value) if present else c.ffi.NULL
    mem.keep.append(p)
    args.append(p)
    replies.append(lambda w, rv: w.u64(int(p[0]) if p != c.ffi.NULL else 0))


def _out_struct(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, size = r.u8(), r.u64()
    if size != c.ffi.sizeof(op.ctype):
        raise ProtocolError(f"{op.ctype} of {size} bytes (the server's is {c.ffi.sizeof(op.ctype)})")
    p = c.ffi.new(f"{op.ctype} *") if present else c.ffi.NULL
    mem.keep.append(p)
    args.append(p)

    def reply(w: Writer, rv: int) -> None:
        has = rv == CKR_OK and p != c.ffi.NULL
        w.u8(has)
        if has:
            w.raw(bytes(c.ffi.buffer(p)))
    replies.append(reply)


def _template(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    attrs, count, entries = c._template(r, mem, io=op.kind == "template_io")
    args += [attrs, count]
    if op.kind == "template_io":
        replies.append(lambda w, rv: c._template_reply(w, attrs, count, entries))


def _mechanism(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    if not r.u8():
        args.append(c.ffi.NULL)
        return
    m = c.ffi.new("CK_MECHANISM *")
    mem.keep.append(m)
    m.mechanism = r.u64()
    has_param, m.ulParameterLen = r.u8(), r.u64()
    if has_param:
        node = c._node(r, mem, 0)
        ctype = c._param_struct(int(m.mechanism))
        if ctype is not None:
            c._check_pointers(node, ctype)
        m.pParameter = node.buf
    else:
        m.pParameter = c.ffi.NULL
    args.append(m)


def _msg_param(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, length = r.u8(), r.u64()
    args += [c._node(r, mem, 0).buf if present else c.ffi.NULL, length]


def _never(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    args.append(c.ffi.NULL)


DECODERS: dict[str, Callable[[Codec, Op, Reader, CallMemory, list, list], None]] = {
    "ulong": _ulong, "in_bytes": _in_bytes, "in_fixed32": _in_bytes, "out_bytes": _out_bytes,
    "out_fixed": _out_fixed, "out_ulongs": _out_ulongs, "out_handles": _out_handles, "out_ulong": _out_ulong,
    "out_struct": _out_struct, "template": _template, "template_io": _template, "mechanism": _mechanism,
    "msg_param": _msg_param, "never": _never,
}
