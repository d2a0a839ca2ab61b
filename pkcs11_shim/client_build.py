"""Build libsoftshield-client.so: the C-only PKCS#11 library that forwards every call to a hardserver.

    python -m pkcs11_shim.client_build [--out DIR]

Every entry point is generated from `native/functions.txt` (the same file the in-process library is
generated from), so a function added there is forwarded without touching C: each parameter is
classified by its C type and name (`classify`) into one wire operation (`OPS`), and the server
(`hardserver.protocol`) decodes a call with the same plan. The hand-written runtime lives in
`native/client/` (connections, framing, encoders, mechanism-parameter layouts); the mechanism ->
parameter-kind table comes from the mechanism registry. No Python runs in the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from pkcs11_shim.build import c_constants, interface_source, libpython_soname, output_dir, table_members
# classify and function_id are read by the build's tests from here, beside what this script generates.
from pkcs11_shim.functions import (LOCAL, MESSAGE_INIT, NATIVE, CFunction, Plan, classify,  # noqa: F401
                                   function_id, nested_attributes, plans, read_functions)
from pkcs11_shim.hardserver import layouts

CLIENT_DIR = NATIVE / "client"
FRONT_DIR = NATIVE / "front"
LIBRARY = "libsoftshield-client.so"
#: The one library users load: it chooses embedded or forwarded per process (native/front/).
FRONT_LIBRARY = "libsoftshield-pkcs11.so"

#: In the front end, library state first chooses the way the process is served (native/front/front.c).
FRONT_LOCAL = {"C_Initialize": "ss_front_initialize", "C_Finalize": "ss_front_finalize"}

#: Functions whose arguments the protocol does not carry (PKCS#11 3.2 asynchronous family: the
#: function names and CK_ASYNC_DATA results refer to the caller's memory across calls). They answer
#: CKR_FUNCTION_NOT_SUPPORTED in client mode; anything else unclassifiable fails the check test.
UNSUPPORTED_ALLOWED = frozenset({"C_AsyncComplete", "C_AsyncGetID", "C_AsyncJoin"})

#: Wire operations: kind -> (C encoder call, C decoder call or None). `{0}`, `{1}`... are the
#: argument names the operation consumes; the reply carries outputs in parameter order.
OPS: dict[str, tuple[str, str | None]] = {
    "ulong": ("ss_put_ulong(&c, (CK_ULONG){0});", None),
    "in_bytes": ("ss_put_in_bytes(&c, {0}, {1});", None),
    "in_fixed32": ("ss_put_in_fixed(&c, {0}, 32);", None),
    "out_bytes": ("ss_put_out_bytes(&c, {0}, {1});", "ss_get_out_bytes(&c, {0}, {1});"),
    "out_fixed": ("ss_put_out_fixed(&c, {0}, {1});", "ss_get_out_fixed(&c, {0}, {1});"),
    "out_ulongs": ("ss_put_out_ulongs(&c, {0}, {1});", "ss_get_out_ulongs(&c, {0}, {1});"),
    "out_handles": ("ss_put_out_handles(&c, {0}, {1}); ss_put_out_ulong(&c, {2});",
                    "ss_get_out_handles(&c, {0}, {1}); ss_get_out_ulong(&c, {2});"),
    "out_ulong": ("ss_put_out_ulong(&c, {0});", "ss_get_out_ulong(&c, {0});"),
    "out_struct": ("ss_put_out_struct(&c, {0}, sizeof({ctype}));", "ss_get_out_struct(&c, {0}, sizeof({ctype}));"),
    "template": ("ss_put_template(&c, {0}, {1});", None),
    "template_io": ("ss_put_template_io(&c, {0}, {1});", "ss_get_template_io(&c, {0}, {1});"),
    "mechanism": ("ss_put_mechanism(&c, {0});", None),
    "msg_param": ("ss_put_msg_param(&c, hSession, {family}, {0}, {1});", None),
    "never": ("(void){0};", None),
}


#: Functions whose length query is sent as a call with a buffer, the result held for the host's
#: next call with the same arguments (native/client/held.c): name -> (session, output pointer,
#: output length). The module holds a wrap result the same way (keymgmt.wrap_key).
HELD = {"C_WrapKey": ("hSession", "pWrappedKey", "pulWrappedKeyLen")}


#: In the front end's embedded mode, functions answered in C around the module's own entry point:
#: name -> the C function given that entry point first (native/front/held_wrap.c). Every other
#: embedded call first makes held wrap results stale, as every other forwarded call does.
FRONT_EMBEDDED = {"C_WrapKey": "ss_front_wrap_key"}


#: Functions whose meaning spans the servers of a load-sharing client (native/client/loadshare.c):
#: the exported entry point calls `ss_ls_<name>`, which calls the forwarder once per server it needs.
ROUTED = ("C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_Login", "C_Logout")


def loadshare_constants() -> list[str]:
    """The PKCS#11 numbers loadshare.c needs beyond ss_constants.h, from pkcs11_shim.constants."""
    from pkcs11.constants import UserType

    from pkcs11_shim.constants import CKU_CONTEXT_SPECIFIC, SessionFlag

    ro = SessionFlag.SERIAL_SESSION
    return [f"const CK_FLAGS ss_ls_session_ro = 0x{int(ro):x}UL;",
            f"const CK_FLAGS ss_ls_session_rw = 0x{int(ro | SessionFlag.RW_SESSION):x}UL;",
            f"const CK_USER_TYPE ss_ls_user_so = {int(UserType.SO)}UL;",
            f"const CK_USER_TYPE ss_ls_user_context = {int(CKU_CONTEXT_SPECIFIC)}UL;", ""]


def _session_first(f: CFunction) -> bool:
    """Whether the function's first parameter is the session it runs in (routed to its server)."""
    return f.params.split(",")[0].split() == ["CK_SESSION_HANDLE", "hSession"]


def shared_tables() -> list[str]:
    """The tables the client's marshal code and the server's decoders both read (layouts.c): the
    attributes whose value is a nested template, and the mechanism-parameter layouts."""
    nested = nested_attributes()
    out = ["const CK_ATTRIBUTE_TYPE ss_nested_attrs[] = {"]
    out += [f"    0x{a:x}UL," for a in nested]
    out += ["};", f"const size_t ss_nested_attr_count = {len(nested)};", ""]
    return out + layouts.c_tables()


def mechanism_kinds() -> list[tuple[int, str]]:
    """(mechanism, param_kind) of every registry row whose parameter is not opaque bytes."""
    from pkcs11_shim.mechanisms.registry import REGISTRY

    return [(row.mechanism, row.param_kind) for row in REGISTRY.all()
            if row.param_kind not in ("none", "bytes", "ulong", "ulong_or_none")]


def _forwarder(plan: Plan) -> list[str]:
    """`ss_fwd_<name>`: one call sent to the hardserver and its reply written back. A session's
    handle travels as its server's handle (`c.session`, set by ss_call_begin_session). Not static:
    loadshare.c calls the forwarders of ROUTED functions (hidden: the library exports C_* only)."""
    f = plan.function
    out = [f"CK_RV ss_fwd_{f.name}({f.params})", "{"]
    if plan.ops is None:
        out += [f"    (void){a};" for a in f.arg_names]
        out += ["    return CKR_FUNCTION_NOT_SUPPORTED; /* not carried by the protocol */", "}", ""]
        return out
    out.append("    ss_call c;")
    session = _session_first(f)
    begin = f"ss_call_begin_session(&c, 0x{plan.fid:08x}u, hSession)" if session else f"ss_call_begin(&c, 0x{plan.fid:08x}u)"
    out.append(f"    if ({begin} != CKR_OK)")
    out.append("        return ss_call_end(&c);")
    held = HELD.get(f.name)
    for op in plan.ops:
        put, _get = OPS[op.kind]
        if held and op.args == held[1:]:
            session, p, plen = held
            out += [f"    if (ss_held_take(&c, {session}, {p}, {plen}))", "        return ss_call_end(&c);",
                    f"    ss_put_held_out_bytes(&c, {p}, {plen});"]
            continue
        args = ("c.session",) if session and op.kind == "ulong" and op.args == ("hSession",) else op.args
        out.append("    " + put.format(*args, ctype=op.ctype, family=plan.family))
    out += [f'    ss_put_env(&c, "{name}");' for name in plan.env]
    out.append("    ss_call_exchange(&c);")
    gets = [(f"ss_get_held_out_bytes(&c, {held[0]}, {held[1]}, {held[2]});" if held and op.args == held[1:]
             else OPS[op.kind][1].format(*op.args, ctype=op.ctype)) for op in plan.ops if OPS[op.kind][1]]
    if any(op.kind == "msg_param" for op in plan.ops):
        gets.append("ss_get_writebacks(&c);")
    if gets:
        out.append("    if (!c.failed) {")
        out += [f"        {g}" for g in gets]
        out.append("    }")
    if MESSAGE_INIT.match(f.name):
        out.append(f"    if (!c.failed && c.rv == CKR_OK) ss_msg_remember(hSession, {plan.family}, pMechanism);")
    out += ["    return ss_call_end(&c);", "}", ""]
    return out


#: Run on a call's answer in both modes: CK_INFO names the way the process is served.
AFTER = {"C_GetInfo": "if (rv == CKR_OK && pInfo != NULL) ss_describe(pInfo, {embedded});"}


def _exported(f: CFunction, front: bool) -> list[str]:
    """The exported entry point: the embedded module's function when the front end chose it, else
    the forwarder (or the library-state function of the chosen way)."""
    args = ", ".join(f.arg_names)
    local = FRONT_LOCAL if front else LOCAL
    if f.name in local:
        return [f"CK_RV {f.name}({f.params})", "{", f"    return {local[f.name]}({args});", "}", ""]
    out = [f"CK_RV {f.name}({f.params})", "{", "    CK_RV rv;"]
    forward = "ss_ls_" if f.name in ROUTED else "ss_fwd_"
    if front:
        if f.name in FRONT_EMBEDDED:
            embedded = [f"        rv = {FRONT_EMBEDDED[f.name]}(ss_embedded.{f.name}, {args});"]
        else:
            # Once the call is done: a wrap held by another thread meanwhile may predate what it changed.
            embedded = [f"        rv = ss_embedded.{f.name}({args});", "        ss_held_forget_all();"]
        out += ["    if (ss_mode_embedded()) {", *embedded, "    } else {",
                f"        rv = {forward}{f.name}({args});", "    }"]
    else:
        out.append(f"    rv = {forward}{f.name}({args});")
    if f.name in AFTER:
        out.append("    " + AFTER[f.name].format(embedded="ss_mode_embedded()" if front else "0"))
    out += ["    return rv;", "}", ""]
    return out


def _embedded_table(functions: list[CFunction]) -> list[str]:
    """The embedded module's entry points, found by name in its handle (every Python-answered
    function of native/functions.txt, the vendor ones included)."""
    handled = [f for f in functions if not f.in_c]
    out = ["static struct {"]
    out += [f"    CK_RV (*{f.name})({f.params});" for f in handled]
    out += ["} ss_embedded;", "", "int ss_embedded_bind(void *handle, const char **missing)", "{"]
    for f in handled:
        out += [f'    *(void **)&ss_embedded.{f.name} = dlsym(handle, "{f.name}");',
                f"    if (ss_embedded.{f.name} == NULL) {{", f'        *missing = "{f.name}";', "        return -1;",
                "    }"]
    out += ["    return 0;", "}", "",
            "CK_RV ss_embedded_initialize(CK_VOID_PTR pInitArgs)", "{",
            "    return ss_embedded.C_Initialize(pInitArgs);", "}", "",
            "CK_RV ss_embedded_finalize(CK_VOID_PTR pReserved)", "{",
            "    return ss_embedded.C_Finalize(pReserved);", "}", ""]
    return out


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def recorded_python() -> tuple[str, str]:
    """(interpreter, libpython) the embedded module is built with: the hardserver is started with
    that interpreter, and a process that already runs any other libpython is never embedded into."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libpython = Path(libdir) / libpython_soname()
    return sys.executable, str(libpython.resolve()) if libpython.exists() else str(libpython)


def c_source(functions: list[CFunction], front: bool = False) -> str:
    tables = table_members(functions)
    python, libpython = recorded_python()
    out = ['#include <dlfcn.h>', '#include <string.h>', '#include "ss_client.h"',
           *(['#include "ss_front.h"'] if front else []),
           f"const char ss_recorded_python[] = {_c_string(python)};",
           f"const char ss_recorded_libpython[] = {_c_string(libpython)};",

           '#define SS_EXPORT __attribute__((visibility("default")))', "",
           "typedef struct CK_FUNCTION_LIST CK_FUNCTION_LIST;",
           "typedef CK_FUNCTION_LIST *CK_FUNCTION_LIST_PTR;",
           "typedef CK_FUNCTION_LIST_PTR *CK_FUNCTION_LIST_PTR_PTR;", ""]
    out += [f"SS_EXPORT CK_RV {f.name}({f.params});" for f in functions]
    out.append("")
    for struct, _var, _literal, members in tables:
        out.append(f"struct {struct} {{\n    CK_VERSION version;")
        out += [f"    CK_RV (*{f.name})({f.params});" for f in members]
        out += ["};", ""]
    rows = mechanism_kinds()
    out.append("const ss_mech_kind ss_mech_kinds[] = {")
    out += [f'    {{0x{m:x}UL, "{k}"}},' for m, k in rows]
    out += ["    {0, NULL}", "};", f"const size_t ss_mech_kind_count = {len(rows)};", ""]
    out += shared_tables()
    out += loadshare_constants()
    by_name = {f.name: f for f in functions}
    out += [f"CK_RV ss_ls_{name}({by_name[name].params});" for name in ROUTED]
    out.append("")
    if front:
        out += _embedded_table(functions)
    for plan in plans(functions):
        out += _forwarder(plan)
    out += [line for f in functions if not f.in_c for line in _exported(f, front)]
    for struct, var, literal, members in tables:
        out.append(f"static struct {struct} {var} = {{\n    {literal},")
        out += [f"    {f.name}," for f in members]
        out += ["};", ""]
    out.append(interface_source(tables, "ss"))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    out = output_dir(argv, __doc__.splitlines()[0])
    functions = read_functions()
    unsupported = [p.name for p in plans(functions) if p.ops is None]
    for name in unsupported:
        note = "" if name in UNSUPPORTED_ALLOWED else " (unexpected: extend client_build.classify)"
        print(f"client_build: {name} answers CKR_FUNCTION_NOT_SUPPORTED in client mode{note}", file=sys.stderr)
    for name, front in ((LIBRARY, False), (FRONT_LIBRARY, True)):
        print(compile_library(out, name, c_source(functions, front), front))
    return 0


def compile_library(out: Path, name: str, source: str, front: bool) -> Path:
    """Compile the generated source with the client runtime (and the front end) into out/name;
    the source is kept as out/front_gen.c or out/client_gen.c for reading and debugging."""
    cc = os.environ.get("CC", "cc")
    dirs = [CLIENT_DIR, FRONT_DIR] if front else [CLIENT_DIR]
    # Compile in a private folder and rename into place, as pkcs11_shim.build does: a running host
    # keeps the library it mapped, and nobody loads a half-written file.
    with tempfile.TemporaryDirectory(dir=out, prefix=".client-") as tmp:
        generated = Path(tmp) / ("front_gen.c" if front else "client_gen.c")
        generated.write_text(source)
        (Path(tmp) / "ss_constants.h").write_text(
            f"#ifndef SS_CONSTANTS_H\n#define SS_CONSTANTS_H\n{c_constants()}\n#endif\n")
        built = Path(tmp) / name
        sources = sorted(str(p) for d in dirs for p in d.glob("*.c")) + [str(generated)]
        cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread",
               "-fvisibility=hidden", f"-I{NATIVE}", f"-I{tmp}", *(f"-I{d}" for d in dirs), "-o", str(built), *sources,
               "-ldl", "-lssl", "-lcrypto"]  # libssl: the tls:// transport (native/client/transport_tls.c)
        subprocess.run(cmd, check=True)
        shutil.copyfile(generated, out / generated.name)
        final = out / name
        os.replace(built, final)
    return final


if __name__ == "__main__":
    sys.exit(main())
