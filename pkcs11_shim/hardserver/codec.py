"""One forwarded call: arguments from the wire into C memory, the module's C entry point, outputs back.

Driven by `pkcs11_shim.functions.plans()`, the same per-function plan the client library was
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

from pkcs11_shim.constants import CK_UNAVAILABLE_INFORMATION, CKR
from pkcs11_shim.functions import NATIVE, Op, Plan, nested_attributes, plans, read_functions
from pkcs11_shim.hardserver import layouts
from pkcs11_shim.hardserver.protocol import MAX_PAYLOAD, ProtocolError, Reader, Writer

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


#: The fixed-size inputs the module reads without a length argument (C_InitToken's label, §5.6).
FIXED_INPUT = {"in_fixed32": 32}
#: Template entry flags as the client sends them: value bytes follow (1), a nested template follows (3).
VALUE, NESTED = 1, 2


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
    family: str = ""  # the message family of a message-based call (its parameter's layout)
    env: dict[str, str | None] = field(default_factory=dict)  # the caller's FORWARDED_ENV values


class Codec:
    def __init__(self, ffi: cffi.FFI, lib: Any) -> None:
        self.ffi, self.lib = ffi, lib
        self.plans: dict[int, Plan] = {p.fid: p for p in plans() if p.ops is not None}
        self.by_name: dict[str, Plan] = {p.name: p for p in self.plans.values()}
        self.sizeof_attr = ffi.sizeof("CK_ATTRIBUTE")
        #: What may arrive nested: what the client nests and the module reads as a template (by kind).
        self.nested = frozenset(nested_attributes())
        self.ptr_size = ffi.sizeof("void *")
        self.ulong = ffi.typeof("CK_ULONG *")
        #: (session, message family) -> the parameter kind of the mechanism its C_Message*Init
        #: started, as the client library remembers it (ss_msg_remember), for the layout of the
        #: per-message parameters.
        self.message_kinds: dict[tuple[int, str], str] = {}

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

    @staticmethod
    def _exact(r: Reader, length: int, what: str) -> bytes:
        """The `length` bytes an input buffer's length says it holds: all of them, or the call is refused."""
        if length > r.remaining():
            raise ProtocolError(f"{what}: length {length}, but only {r.remaining()} bytes follow", CKR.ARGUMENTS_BAD)
        return r.take(length)

    def _node(self, r: Reader, mem: CallMemory, depth: int) -> Node:
        """A parameter node: bytes, then relocations (offset -> child node) patched in as pointers."""
        if depth > MAX_DEPTH:
            raise ProtocolError("mechanism parameter nested too deeply")
        writeback = r.u8()
        length = r.u64()
        node = Node(self._bytes(mem, self._exact(r, length, "mechanism parameter")), length)
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
            if offset in node.children:
                raise ProtocolError(f"two pointers at offset {offset} of one parameter", CKR.MECHANISM_PARAM_INVALID)
            child = self._node(r, mem, depth + 1)
            node.children[offset] = child
            self.ffi.memmove(buf + offset, self.ffi.new("void *[1]", [child.buf]), self.ptr_size)
        return node

    def _check_layout(self, node: Node, layout: layouts.Layout | None, what: str) -> None:
        """Every pointer the client relocated into `node` sits in a pointer member of its layout, and
        the buffer behind it is exactly as long as the struct's length member says; every other
        pointer member is NULL. The module then reads no byte the server does not hold."""
        ctype = self.ffi.typeof(layout.struct) if layout is not None else None
        if ctype is None or node.length < self.ffi.sizeof(ctype):
            # No pointers in this parameter (or too short for its struct: the module's reader
            # refuses it by its length): nothing may be patched in.
            if node.children:
                raise ProtocolError(f"{what} carries pointers where its mechanism's parameter has none",
                                    CKR.MECHANISM_PARAM_INVALID)
            return
        self._no_stray(node, self._pointer_offsets(layout, 0), layout.struct, what)
        self._check_struct(node, layout, 0, what, 0)

    def _pointer_offsets(self, layout: layouts.Layout, base: int) -> set[int]:
        fields = dict(self.ffi.typeof(layout.struct).fields)
        return {base + fields[f.pointer].offset for f in layout.fields}

    @staticmethod
    def _no_stray(node: Node, expected: set[int], struct: str, what: str) -> None:
        # Checked before any length member is read: a pointer patched over a length member would
        # make that "length" one of the server's own addresses.
        stray = sorted(set(node.children) - expected)
        if stray:
            raise ProtocolError(f"{what}: a pointer at offset {stray[0]}, which is no pointer member of {struct}",
                                CKR.MECHANISM_PARAM_INVALID)

    def _check_struct(self, node: Node, layout: layouts.Layout, base: int, what: str, depth: int) -> None:
        """The struct at `base` in `node`: each pointer member NULL or relocated to a buffer exactly as
        long as its length member says (its own pointers checked likewise)."""
        ffi, fields = self.ffi, dict(self.ffi.typeof(layout.struct).fields)
        if depth > MAX_DEPTH:
            raise ProtocolError("mechanism parameter nested too deeply", CKR.MECHANISM_PARAM_INVALID)
        for f in layout.fields:
            offset = base + fields[f.pointer].offset
            name = f"{layout.struct}.{f.pointer}"
            child = node.children.get(offset)
            if child is None:
                if bytes(ffi.buffer(node.buf + offset, self.ptr_size)) != bytes(self.ptr_size):
                    raise ProtocolError(f"{name} holds an address the client did not send",
                                        CKR.MECHANISM_PARAM_INVALID)
                continue
            if f.unit == layouts.DROP:
                raise ProtocolError(f"{name} is not carried by the protocol (send NULL)", CKR.MECHANISM_PARAM_INVALID)
            sub = layouts.BY_KIND[f.sub] if f.sub else None
            declared = int(ffi.cast(self.ulong, node.buf + base + fields[f.length].offset)[0]) if f.length else 0
            element = ffi.sizeof(sub.struct) if sub is not None else 1
            needed = {layouts.BYTES: declared, layouts.BITS: (declared + 7) // 8, layouts.STRUCT: element,
                      layouts.ARRAY: declared * element}[f.unit]
            if child.length != needed:
                length = f"{f.length} = {declared}" if f.length else f"sizeof({sub.struct if sub else '?'})"
                raise ProtocolError(f"{name}: {child.length} bytes sent; {length} needs {needed}",
                                    CKR.MECHANISM_PARAM_INVALID)
            elements = range(child.length // element) if sub is not None else range(0)
            inner = set().union(*(self._pointer_offsets(sub, i * element) for i in elements)) if sub else set()
            self._no_stray(child, inner, sub.struct if sub else f"the buffer of {name}", what)
            for i in elements:
                self._check_struct(child, sub, i * element, what, depth + 1)

    def _param_layout(self, mechanism: int, message: bool = False) -> layouts.Layout | None:
        from pkcs11_shim.mechanisms.registry import REGISTRY  # the module's own table, in this process

        if mechanism not in REGISTRY:
            return None
        kind = REGISTRY.get(mechanism).param_kind
        return (layouts.MESSAGE_BY_KIND if message else layouts.BY_KIND).get(kind)

    def remember_message(self, session: int, family: str, mechanism: int) -> None:
        """A C_Message*Init succeeded: later per-message parameters of `session` follow its layout."""
        layout = self._param_layout(mechanism, message=True)
        self.message_kinds[(session, family)] = layout.kind if layout is not None else ""

    def forget_session(self, session: int) -> None:
        for key in [k for k in self.message_kinds if k[0] == session]:
            del self.message_kinds[key]

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
            if flags not in (0, VALUE, VALUE | NESTED):
                raise ProtocolError(f"attribute 0x{a_type:x}: entry flags {flags} unknown", CKR.ARGUMENTS_BAD)
            if flags & NESTED:
                if a_type not in self.nested:
                    raise ProtocolError(f"attribute 0x{a_type:x} is no attribute array, yet a template is nested "
                                        "in it", CKR.ARGUMENTS_BAD)
                arr, n, nested_entries = self._template(r, mem, io, depth + 1)
                if arr == self.ffi.NULL or n != length // self.sizeof_attr:
                    # The module reads ulValueLen / sizeof(CK_ATTRIBUTE) entries from pValue.
                    raise ProtocolError(f"attribute 0x{a_type:x}: ulValueLen {length} names "
                                        f"{length // self.sizeof_attr} attributes, {n} sent", CKR.ARGUMENTS_BAD)
                attrs[i].pValue = arr
                nested = (arr, n, nested_entries)  # the typed array: pValue reads back as void *
            elif flags & VALUE:
                if io:
                    capacity = 0 if length == CK_UNAVAILABLE_INFORMATION else self._capacity(length)
                    attrs[i].ulValueLen = length if length == CK_UNAVAILABLE_INFORMATION else capacity
                    attrs[i].pValue = self._bytes(mem, b"", capacity)
                else:
                    attrs[i].pValue = self._bytes(mem, self._exact(r, length, f"attribute 0x{a_type:x} value"))
            else:
                attrs[i].pValue = self.ffi.NULL
            entries.append((bool(flags & 1), int(attrs[i].ulValueLen), nested))
        return attrs, count, entries

    def _template_reply(self, w: Writer, attrs: Any, count: int, entries: list, depth: int = 0) -> None:
        w.u64(count)
        if attrs == self.ffi.NULL:
            return
        for i, (present, capacity, nested) in enumerate(entries):
            length = int(attrs[i].ulValueLen)
            if depth:
                # Reading an attribute array, the module writes the types of its entries too (the
                # caller may pass them zeroed, having only the array's size).
                w.u64(int(attrs[i].type))
            w.u64(length)
            if nested is not None and length != CK_UNAVAILABLE_INFORMATION:
                w.u8(2)
                self._template_reply(w, *nested, depth + 1)
            elif present and nested is None and length != CK_UNAVAILABLE_INFORMATION and length <= capacity:
                w.u8(1)
                w.raw(bytes(self.ffi.buffer(attrs[i].pValue, length)))
            else:
                w.u8(0)

    # ---- one call -----------------------------------------------------------------------------
    def decode(self, plan: Plan, payload: bytes) -> tuple[list[Any], list[Callable[[Writer, int], None]], CallMemory]:
        """C arguments in parameter order, and one reply encoder per output."""
        ffi, r, mem = self.ffi, Reader(payload), CallMemory(family=plan.family)
        args: list[Any] = []
        replies: list[Callable[[Writer, int], None]] = []
        for op in plan.ops or ():
            DECODERS[op.kind](self, op, r, mem, args, replies)
        for name in plan.env:
            present, length = r.u8(), r.u64()
            value = self._exact(r, length, name)
            mem.env[name] = value.decode("utf-8", "surrogateescape") if present else None
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
    fixed = FIXED_INPUT.get(op.kind)
    if present and fixed is not None and length != fixed:
        # The module reads exactly `fixed` bytes from this pointer, whatever the client says.
        raise ProtocolError(f"{op.args[0]}: {length} bytes sent, the function reads {fixed}", CKR.ARGUMENTS_BAD)
    args.append(c._bytes(mem, c._exact(r, length, op.args[0])) if present else c.ffi.NULL)
    if fixed is None:
        args.append(length)


def _counted_output(c: Codec, r: Reader, mem: CallMemory, args: list, replies: list, item: str, unit: int,
                    write: Callable[[Writer, Any, int], None]) -> None:
    """An output array with the two-call convention (pointer, pointer to its capacity): the module
    gets exactly the capacity the client asked for (capped by what a reply can carry)."""
    flags, capacity = r.u8(), r.u64()
    capacity = c._capacity(capacity, unit)
    buf = c.ffi.new(f"{item}[]", max(capacity, 1)) if flags & 1 else c.ffi.NULL
    pcount = c.ffi.new("CK_ULONG *", capacity) if flags & 2 else c.ffi.NULL
    mem.keep += [buf, pcount]
    args += [buf, pcount]

    def reply(w: Writer, rv: int) -> None:
        count = int(pcount[0]) if pcount != c.ffi.NULL else 0
        w.u64(count)
        has = rv == CKR.OK and buf != c.ffi.NULL and count <= capacity
        w.u8(has)
        if has:
            write(w, buf, count)
    replies.append(reply)


def _out_bytes(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    _counted_output(c, r, mem, args, replies, "CK_BYTE", 1, lambda w, buf, n: w.raw(bytes(c.ffi.buffer(buf, n))))


def _out_fixed(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, length = r.u8(), r.u64()
    if length > MAX_PAYLOAD - 64:
        raise ProtocolError(f"output of {length} bytes exceeds what a reply can carry", CKR.DEVICE_MEMORY)
    buf = c._bytes(mem, b"", length) if present else c.ffi.NULL
    args += [buf, length]

    def reply(w: Writer, rv: int) -> None:
        has = rv == CKR.OK and buf != c.ffi.NULL
        w.u8(has)
        if has:
            w.raw(bytes(c.ffi.buffer(buf, length)))
    replies.append(reply)


def _out_ulongs(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    def write(w: Writer, arr: Any, n: int) -> None:
        for i in range(n):
            w.u64(int(arr[i]))
    _counted_output(c, r, mem, args, replies, "CK_ULONG", 8, write)


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
        n = min(found, maximum) if rv == CKR.OK and arr != c.ffi.NULL else 0
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
        has = rv == CKR.OK and p != c.ffi.NULL
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
        m.pParameter = _parameter(c, r, mem, int(m.ulParameterLen), c._param_layout(int(m.mechanism)),
                                  f"the parameter of mechanism 0x{int(m.mechanism):x}")
    else:
        m.pParameter = c.ffi.NULL
    args.append(m)


def _parameter(c: Codec, r: Reader, mem: CallMemory, length: int, layout: Any, what: str) -> Any:
    """A parameter node checked against its layout, as long as the length argument beside it says."""
    node = c._node(r, mem, 0)
    if node.length != length:
        raise ProtocolError(f"{what}: {node.length} bytes sent, its length argument says {length}", CKR.ARGUMENTS_BAD)
    c._check_layout(node, layout, what)
    return node.buf


def _msg_param(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    present, length = r.u8(), r.u64()
    if not present:
        args += [c.ffi.NULL, length]
        return
    kind = c.message_kinds.get((int(args[0]), mem.family), "")
    layout = layouts.MESSAGE_BY_KIND.get(kind)
    args += [_parameter(c, r, mem, length, layout, "the per-message parameter"), length]


def _never(c: Codec, op: Op, r: Reader, mem: CallMemory, args: list, replies: list) -> None:
    args.append(c.ffi.NULL)


DECODERS: dict[str, Callable[[Codec, Op, Reader, CallMemory, list, list], None]] = {
    "ulong": _ulong, "in_bytes": _in_bytes, "in_fixed32": _in_bytes, "out_bytes": _out_bytes,
    "out_fixed": _out_fixed, "out_ulongs": _out_ulongs, "out_handles": _out_handles, "out_ulong": _out_ulong,
    "out_struct": _out_struct, "template": _template, "template_io": _template, "mechanism": _mechanism,
    "msg_param": _msg_param, "never": _never,
}
