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

    # ---- pieces the per-operation decoders share -----------------------------------------------
    def byte_buffer(self, memory: CallMemory, data: bytes, size: int | None = None) -> Any:
        """A C byte buffer of `size` bytes (at least one) starting with `data`, alive as long as `memory`."""
        buf = self.ffi.new("CK_BYTE[]", max(size if size is not None else len(data), 1))
        if data:
            self.ffi.memmove(buf, data, len(data))
        memory.keep.append(buf)
        return buf

    def capped(self, n: int, unit: int = 1) -> int:
        """`n` elements of `unit` bytes, or as many as one reply frame can carry."""
        if n * unit > MAX_PAYLOAD:
            # The reply could not carry more anyway; the module sees a buffer the frame can return.
            return MAX_PAYLOAD // unit
        return n

    @staticmethod
    def take_exact(reader: Reader, length: int, what: str) -> bytes:
        """The `length` bytes an input buffer's length says it holds: all of them, or the call is refused."""
        if length > reader.remaining():
            raise ProtocolError(f"{what}: length {length}, but only {reader.remaining()} bytes follow",
                                CKR.ARGUMENTS_BAD)
        return reader.take(length)

    def read_node(self, reader: Reader, memory: CallMemory, depth: int) -> Node:
        """A parameter node: bytes, then relocations (offset -> child node) patched in as pointers."""
        if depth > MAX_DEPTH:
            raise ProtocolError("mechanism parameter nested too deeply")
        writeback = reader.u8()
        length = reader.u64()
        node = Node(self.byte_buffer(memory, self.take_exact(reader, length, "mechanism parameter")), length)
        buf = node.buf
        if writeback:
            memory.writebacks.append((buf, length))
        relocations = reader.u64()
        if relocations > MAX_RELOCATIONS:
            raise ProtocolError(f"{relocations} pointers in one parameter")
        for _ in range(relocations):
            offset = reader.u64()
            if offset + self.ptr_size > length:
                raise ProtocolError(f"pointer at offset {offset} outside a {length}-byte parameter")
            if offset in node.children:
                raise ProtocolError(f"two pointers at offset {offset} of one parameter", CKR.MECHANISM_PARAM_INVALID)
            child = self.read_node(reader, memory, depth + 1)
            node.children[offset] = child
            self.ffi.memmove(buf + offset, self.ffi.new("void *[1]", [child.buf]), self.ptr_size)
        return node

    def check_layout(self, node: Node, layout: layouts.Layout | None, what: str) -> None:
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

    def param_layout(self, mechanism: int, message: bool = False) -> layouts.Layout | None:
        """The pointer layout of `mechanism`'s parameter (or of its per-message parameter), if it has one."""
        from pkcs11_shim.mechanisms.registry import REGISTRY  # the module's own table, in this process

        if mechanism not in REGISTRY:
            return None
        kind = REGISTRY.get(mechanism).param_kind
        return (layouts.MESSAGE_BY_KIND if message else layouts.BY_KIND).get(kind)

    def remember_message(self, session: int, family: str, mechanism: int) -> None:
        """A C_Message*Init succeeded: later per-message parameters of `session` follow its layout."""
        layout = self.param_layout(mechanism, message=True)
        self.message_kinds[(session, family)] = layout.kind if layout is not None else ""

    def forget_session(self, session: int) -> None:
        for key in [k for k in self.message_kinds if k[0] == session]:
            del self.message_kinds[key]

    def read_template(self, reader: Reader, memory: CallMemory, io: bool, depth: int = 0) -> tuple[Any, int, list]:
        """(CK_ATTRIBUTE array or NULL, count, per-entry (capacity, nested info) for the reply)."""
        present, count = reader.u8(), reader.u64()
        if not present:
            return self.ffi.NULL, count, []
        if count > MAX_TEMPLATE or depth > MAX_DEPTH:
            raise ProtocolError(f"template of {count} attributes (depth {depth}) refused")
        attrs = self.ffi.new("CK_ATTRIBUTE[]", max(count, 1))
        memory.keep.append(attrs)
        entries = []
        for i in range(count):
            a_type, flags, length = reader.u64(), reader.u8(), reader.u64()
            attrs[i].type = a_type
            attrs[i].ulValueLen = length
            nested = None
            if flags not in (0, VALUE, VALUE | NESTED):
                raise ProtocolError(f"attribute 0x{a_type:x}: entry flags {flags} unknown", CKR.ARGUMENTS_BAD)
            if flags & NESTED:
                if a_type not in self.nested:
                    raise ProtocolError(f"attribute 0x{a_type:x} is no attribute array, yet a template is nested "
                                        "in it", CKR.ARGUMENTS_BAD)
                arr, n, nested_entries = self.read_template(reader, memory, io, depth + 1)
                if arr == self.ffi.NULL or n != length // self.sizeof_attr:
                    # The module reads ulValueLen / sizeof(CK_ATTRIBUTE) entries from pValue.
                    raise ProtocolError(f"attribute 0x{a_type:x}: ulValueLen {length} names "
                                        f"{length // self.sizeof_attr} attributes, {n} sent", CKR.ARGUMENTS_BAD)
                attrs[i].pValue = arr
                nested = (arr, n, nested_entries)  # the typed array: pValue reads back as void *
            elif flags & VALUE:
                if io:
                    capacity = 0 if length == CK_UNAVAILABLE_INFORMATION else self.capped(length)
                    attrs[i].ulValueLen = length if length == CK_UNAVAILABLE_INFORMATION else capacity
                    attrs[i].pValue = self.byte_buffer(memory, b"", capacity)
                else:
                    value = self.take_exact(reader, length, f"attribute 0x{a_type:x} value")
                    attrs[i].pValue = self.byte_buffer(memory, value)
            else:
                attrs[i].pValue = self.ffi.NULL
            entries.append((bool(flags & 1), int(attrs[i].ulValueLen), nested))
        return attrs, count, entries

    def write_template(self, writer: Writer, attrs: Any, count: int, entries: list, depth: int = 0) -> None:
        writer.u64(count)
        if attrs == self.ffi.NULL:
            return
        for i, (present, capacity, nested) in enumerate(entries):
            length = int(attrs[i].ulValueLen)
            if depth:
                # Reading an attribute array, the module writes the types of its entries too (the
                # caller may pass them zeroed, having only the array's size).
                writer.u64(int(attrs[i].type))
            writer.u64(length)
            if nested is not None and length != CK_UNAVAILABLE_INFORMATION:
                writer.u8(2)
                self.write_template(writer, *nested, depth + 1)
            elif present and nested is None and length != CK_UNAVAILABLE_INFORMATION and length <= capacity:
                writer.u8(1)
                writer.raw(bytes(self.ffi.buffer(attrs[i].pValue, length)))
            else:
                writer.u8(0)

    # ---- one call -----------------------------------------------------------------------------
    def decode(self, plan: Plan, payload: bytes) -> tuple[list[Any], list[Callable[[Writer, int], None]], CallMemory]:
        """C arguments in parameter order, and one reply encoder per output."""
        ffi, reader, memory = self.ffi, Reader(payload), CallMemory(family=plan.family)
        args: list[Any] = []
        replies: list[Callable[[Writer, int], None]] = []
        for op in plan.ops or ():
            DECODERS[op.kind](self, op, reader, memory, args, replies)
        for name in plan.env:
            present, length = reader.u8(), reader.u64()
            value = self.take_exact(reader, length, name)
            memory.env[name] = value.decode("utf-8", "surrogateescape") if present else None
        reader.done()
        if memory.writebacks:
            def writebacks(writer: Writer, rv: int) -> None:
                writer.u64(len(memory.writebacks))
                for buf, length in memory.writebacks:
                    writer.raw(bytes(ffi.buffer(buf, length)))
            replies.append(writebacks)
        elif any(op.kind == "msg_param" for op in plan.ops or ()):
            replies.append(lambda writer, rv: writer.u64(0))
        return args, replies, memory

    def call(self, plan: Plan, args: list[Any]) -> int:
        return int(getattr(self.lib, plan.name)(*args))

    @staticmethod
    def encode(rv: int, replies: list[Callable[[Writer, int], None]]) -> bytes:
        writer = Writer()
        writer.u64(rv)
        for reply in replies:
            reply(writer, rv)
        return writer.getvalue()


# ---- per-operation decoders: read the request, append C arguments, register reply encoders -----

def _ulong(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    args.append(reader.u64())


def _in_bytes(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    present, length = reader.u8(), reader.u64()
    fixed = FIXED_INPUT.get(op.kind)
    if present and fixed is not None and length != fixed:
        # The module reads exactly `fixed` bytes from this pointer, whatever the client says.
        raise ProtocolError(f"{op.args[0]}: {length} bytes sent, the function reads {fixed}", CKR.ARGUMENTS_BAD)
    args.append(codec.byte_buffer(memory, codec.take_exact(reader, length, op.args[0])) if present else codec.ffi.NULL)
    if fixed is None:
        args.append(length)


def _counted_output(codec: Codec, reader: Reader, memory: CallMemory, args: list, replies: list, item: str, unit: int,
                    write: Callable[[Writer, Any, int], None]) -> None:
    """An output array with the two-call convention (pointer, pointer to its capacity): the module
    gets exactly the capacity the client asked for (capped by what a reply can carry)."""
    flags, capacity = reader.u8(), reader.u64()
    capacity = codec.capped(capacity, unit)
    buf = codec.ffi.new(f"{item}[]", max(capacity, 1)) if flags & 1 else codec.ffi.NULL
    pcount = codec.ffi.new("CK_ULONG *", capacity) if flags & 2 else codec.ffi.NULL
    memory.keep += [buf, pcount]
    args += [buf, pcount]

    def reply(writer: Writer, rv: int) -> None:
        count = int(pcount[0]) if pcount != codec.ffi.NULL else 0
        writer.u64(count)
        has = rv == CKR.OK and buf != codec.ffi.NULL and count <= capacity
        writer.u8(has)
        if has:
            write(writer, buf, count)
    replies.append(reply)


def _out_bytes(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    def write(writer: Writer, buf: Any, n: int) -> None:
        writer.raw(bytes(codec.ffi.buffer(buf, n)))
    _counted_output(codec, reader, memory, args, replies, "CK_BYTE", 1, write)


def _out_fixed(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    present, length = reader.u8(), reader.u64()
    if length > MAX_PAYLOAD - 64:
        raise ProtocolError(f"output of {length} bytes exceeds what a reply can carry", CKR.DEVICE_MEMORY)
    buf = codec.byte_buffer(memory, b"", length) if present else codec.ffi.NULL
    args += [buf, length]

    def reply(writer: Writer, rv: int) -> None:
        has = rv == CKR.OK and buf != codec.ffi.NULL
        writer.u8(has)
        if has:
            writer.raw(bytes(codec.ffi.buffer(buf, length)))
    replies.append(reply)


def _out_ulongs(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    def write(writer: Writer, arr: Any, n: int) -> None:
        for i in range(n):
            writer.u64(int(arr[i]))
    _counted_output(codec, reader, memory, args, replies, "CK_ULONG", 8, write)


def _out_handles(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    present, maximum = reader.u8(), reader.u64()
    maximum = codec.capped(maximum, 8)
    count_present, count_value = reader.u8(), reader.u64()
    arr = codec.ffi.new("CK_OBJECT_HANDLE[]", max(maximum, 1)) if present else codec.ffi.NULL
    pcount = codec.ffi.new("CK_ULONG *", count_value) if count_present else codec.ffi.NULL
    memory.keep += [arr, pcount]
    args += [arr, maximum, pcount]

    def reply(writer: Writer, rv: int) -> None:
        found = int(pcount[0]) if pcount != codec.ffi.NULL else 0
        n = min(found, maximum) if rv == CKR.OK and arr != codec.ffi.NULL else 0
        writer.u64(n)
        for i in range(n):
            writer.u64(int(arr[i]))
        writer.u64(found)
    replies.append(reply)


def _out_ulong(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    present, value = reader.u8(), reader.u64()
    p = codec.ffi.new("CK_ULONG *", value) if present else codec.ffi.NULL
    memory.keep.append(p)
    args.append(p)
    replies.append(lambda writer, rv: writer.u64(int(p[0]) if p != codec.ffi.NULL else 0))


def _out_struct(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    present, size = reader.u8(), reader.u64()
    if size != codec.ffi.sizeof(op.ctype):
        raise ProtocolError(f"{op.ctype} of {size} bytes (the server's is {codec.ffi.sizeof(op.ctype)})")
    p = codec.ffi.new(f"{op.ctype} *") if present else codec.ffi.NULL
    memory.keep.append(p)
    args.append(p)

    def reply(writer: Writer, rv: int) -> None:
        has = rv == CKR.OK and p != codec.ffi.NULL
        writer.u8(has)
        if has:
            writer.raw(bytes(codec.ffi.buffer(p)))
    replies.append(reply)


def _template(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    attrs, count, entries = codec.read_template(reader, memory, io=op.kind == "template_io")
    args += [attrs, count]
    if op.kind == "template_io":
        replies.append(lambda writer, rv: codec.write_template(writer, attrs, count, entries))


def _mechanism(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    if not reader.u8():
        args.append(codec.ffi.NULL)
        return
    m = codec.ffi.new("CK_MECHANISM *")
    memory.keep.append(m)
    m.mechanism = reader.u64()
    has_param, m.ulParameterLen = reader.u8(), reader.u64()
    if has_param:
        m.pParameter = _parameter(codec, reader, memory, int(m.ulParameterLen), codec.param_layout(int(m.mechanism)),
                                  f"the parameter of mechanism 0x{int(m.mechanism):x}")
    else:
        m.pParameter = codec.ffi.NULL
    args.append(m)


def _parameter(codec: Codec, reader: Reader, memory: CallMemory, length: int, layout: Any, what: str) -> Any:
    """A parameter node checked against its layout, as long as the length argument beside it says."""
    node = codec.read_node(reader, memory, 0)
    if node.length != length:
        raise ProtocolError(f"{what}: {node.length} bytes sent, its length argument says {length}", CKR.ARGUMENTS_BAD)
    codec.check_layout(node, layout, what)
    return node.buf


def _msg_param(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    present, length = reader.u8(), reader.u64()
    if not present:
        args += [codec.ffi.NULL, length]
        return
    kind = codec.message_kinds.get((int(args[0]), memory.family), "")
    layout = layouts.MESSAGE_BY_KIND.get(kind)
    args += [_parameter(codec, reader, memory, length, layout, "the per-message parameter"), length]


def _never(codec: Codec, op: Op, reader: Reader, memory: CallMemory, args: list, replies: list) -> None:
    args.append(codec.ffi.NULL)


DECODERS: dict[str, Callable[[Codec, Op, Reader, CallMemory, list, list], None]] = {
    "ulong": _ulong, "in_bytes": _in_bytes, "in_fixed32": _in_bytes, "out_bytes": _out_bytes,
    "out_fixed": _out_fixed, "out_ulongs": _out_ulongs, "out_handles": _out_handles, "out_ulong": _out_ulong,
    "out_struct": _out_struct, "template": _template, "template_io": _template, "mechanism": _mechanism,
    "msg_param": _msg_param, "never": _never,
}
