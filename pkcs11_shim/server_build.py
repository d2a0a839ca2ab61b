"""Build libsoftshield-serve.so: the hardserver's C per-call path (native/server/).

    python -m pkcs11_shim.server_build [--out DIR]

One C function per call the C loop answers (`hardserver.routes`), generated from the same plans
(`pkcs11_shim.functions.plans`) the client library's forwarders and the server's Python codec are
driven by, and the same mechanism-parameter layouts (`hardserver.layouts`, compiled in through
native/client/layouts.c): each reads its arguments with the decoder of its wire operation, applies
the per-application rules, calls the module's own C entry point and encodes the reply. The server
loads the library with cffi's ABI mode (`hardserver.fastpath`); no compiler runs at server start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pkcs11_shim.build import c_constants, output_dir
from pkcs11_shim.client_build import shared_tables
from pkcs11_shim.functions import NATIVE, Plan, params_of, plans, read_functions
from pkcs11_shim.hardserver.routes import c_plans

SERVER_DIR = NATIVE / "server"
CLIENT_DIR = NATIVE / "client"
LIBRARY = "libsoftshield-serve.so"

#: Wire operation -> (decoder call, [(argument index, C expression)], encoder call or None).
#: `{i}` is the operation's slot, `{ctype}` its struct (out_struct).
DECODE: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "ulong": ("ss_d_ulong(c, &o[{i}]);", ("o[{i}].value",), None),
    "in_bytes": ("ss_d_in_bytes(c, &o[{i}], 0);", ("o[{i}].buf", "o[{i}].length"), None),
    "in_fixed32": ("ss_d_in_bytes(c, &o[{i}], 32);", ("o[{i}].buf",), None),
    "out_bytes": ("ss_d_out_bytes(c, &o[{i}], 1);", ("o[{i}].buf", "o[{i}].pcount"), "ss_e_out_bytes(c, &o[{i}], rv);"),
    "out_fixed": ("ss_d_out_fixed(c, &o[{i}]);", ("o[{i}].buf", "o[{i}].length"), "ss_e_out_fixed(c, &o[{i}], rv);"),
    "out_ulongs": ("ss_d_out_bytes(c, &o[{i}], sizeof(CK_ULONG));", ("o[{i}].buf", "o[{i}].pcount"),
                   "ss_e_out_ulongs(c, &o[{i}], rv);"),
    "out_handles": ("ss_d_out_handles(c, &o[{i}]);", ("o[{i}].buf", "o[{i}].capacity", "o[{i}].pcount"),
                    "ss_e_out_handles(c, &o[{i}], rv);"),
    "out_ulong": ("ss_d_out_ulong(c, &o[{i}]);", ("o[{i}].pcount",), "ss_e_out_ulong(c, &o[{i}], rv);"),
    "out_struct": ("ss_d_out_struct(c, &o[{i}], sizeof({ctype}));", ("o[{i}].buf",), "ss_e_out_struct(c, &o[{i}], rv);"),
    "template": ("ss_d_template(c, &o[{i}], 0);", ("o[{i}].tmpl.attrs", "o[{i}].tmpl.count"), None),
    "template_io": ("ss_d_template(c, &o[{i}], 1);", ("o[{i}].tmpl.attrs", "o[{i}].tmpl.count"),
                    "ss_e_template(c, &o[{i}], rv);"),
    "mechanism": ("ss_d_mechanism(c, &o[{i}]);", ("o[{i}].mech",), None),
    "never": ("", ("NULL",), None),
}


def _server_function(plan: Plan) -> list[str]:
    """`ss_srv_<name>`: decode, the per-application rules, the module's entry point, the reply."""
    from pkcs11_shim.hardserver.visibility import reach

    f = plan.function
    ctypes = {name: ctype for ctype, name in params_of(f)}
    if plan.ops is None:
        raise ValueError(f"{f.name}: the protocol does not carry it, so it has no server decoder")
    decode, values, encode = [], [], []
    for i, op in enumerate(plan.ops):
        dec, exprs, enc = DECODE[op.kind]
        if dec:
            decode.append("    " + dec.format(i=i, ctype=op.ctype))
        values += [(name, expr.format(i=i)) for name, expr in zip(op.args, exprs)]
        if enc:
            encode.append("    " + enc.format(i=i))
    out = [f"static int ss_srv_{f.name}(ss_srv_call *c)", "{", f"    ss_op o[{len(plan.ops)}];", "    CK_RV rv;",
           "    memset(o, 0, sizeof o);", *decode, "    if (!ss_d_done(c))", "        return 0;"]
    out += [f"    {ctypes[name]} {name} = ({ctypes[name]}){expr};" for name, expr in values]
    checks = []
    if f.arg_names and f.arg_names[0] == "hSession":
        checks.append("!ss_session_ok(c, hSession)")
        checks += [f"ss_foreign(c, {f.arg_names[position]})" for position, _code in reach(f).handles]
    if f.name == "C_FindObjects":
        checks.append("ss_any_owners()")  # visibility.SessionObjects.find filters the found handles
    if checks:
        out += ["    if (" + " || ".join(checks) + ")", "        return 0;"]
    out += [f"    rv = ss_mod.{f.name}({', '.join(f.arg_names)});", "    ss_e_rv(c, rv);", *encode,
            "    ss_e_writebacks(c);", "    return 1;", "}", ""]
    return out


def c_source() -> str:
    from pkcs11_shim.client_build import mechanism_kinds
    from pkcs11_shim.hardserver.visibility import PARAMETER_HANDLES

    chosen = c_plans(plans(read_functions()))
    out = ["#include <dlfcn.h>", "#include <string.h>", '#include "ss_serve.h"', ""]
    out += ["static struct {"]
    out += [f"    CK_RV (*{p.name})({p.function.params});" for p in chosen]
    out += ["} ss_mod;", "", "int ss_srv_bind_module(void *handle, const char **missing)", "{"]
    for p in chosen:
        out += [f'    *(void **)&ss_mod.{p.name} = dlsym(handle, "{p.name}");',
                f"    if (ss_mod.{p.name} == NULL) {{", f'        *missing = "{p.name}";', "        return -1;", "    }"]
    out += ["    return 0;", "}", ""]
    rows = sorted(mechanism_kinds())
    out.append("static const ss_mech_kind ss_srv_mech_kinds[] = {")
    out += [f'    {{0x{m:x}UL, "{k}"}},' for m, k in rows]
    out += ["};", "", "const char *ss_srv_mech_kind(CK_MECHANISM_TYPE m)", "{",
            f"    size_t lo = 0, hi = {len(rows)};", "    while (lo < hi) {", "        size_t mid = (lo + hi) / 2;",
            "        if (ss_srv_mech_kinds[mid].mechanism == m)", "            return ss_srv_mech_kinds[mid].kind;",
            "        if (ss_srv_mech_kinds[mid].mechanism < m)", "            lo = mid + 1;", "        else",
            "            hi = mid;", "    }", "    return NULL;", "}", ""]
    out += ["/* visibility.PARAMETER_HANDLES: mechanisms whose parameter names another key. */",
            "int ss_parameter_names_keys(CK_MECHANISM_TYPE m)", "{"]
    out += [f"    if (m == 0x{int(m):x}UL)\n        return 1;" for m in sorted(int(k) for k in PARAMETER_HANDLES)]
    out += ["    return 0;", "}", ""]
    out += shared_tables()
    for p in chosen:
        out += _server_function(p)
    by_fid = sorted(chosen, key=lambda p: p.fid)
    out.append("static const struct { uint32_t fid; ss_srv_fn fn; } ss_srv_table[] = {")
    out += [f"    {{0x{p.fid:08x}u, ss_srv_{p.name}}}," for p in by_fid]
    out += ["};", "", "ss_srv_fn ss_srv_lookup(uint32_t fid)", "{", f"    size_t lo = 0, hi = {len(by_fid)};",
            "    while (lo < hi) {", "        size_t mid = (lo + hi) / 2;",
            "        if (ss_srv_table[mid].fid == fid)", "            return ss_srv_table[mid].fn;",
            "        if (ss_srv_table[mid].fid < fid)", "            lo = mid + 1;", "        else", "            hi = mid;",
            "    }", "    return NULL;", "}", ""]
    return "\n".join(out)


def compile_library(out: Path, source: str) -> Path:
    """Compile into out/LIBRARY (in a private folder, renamed into place; the generated source is
    kept as out/serve_gen.c)."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory(dir=out, prefix=".serve-") as tmp:
        generated = Path(tmp) / "serve_gen.c"
        generated.write_text(source)
        (Path(tmp) / "ss_constants.h").write_text(
            f"#ifndef SS_CONSTANTS_H\n#define SS_CONSTANTS_H\n{c_constants()}\n#endif\n")
        built = Path(tmp) / LIBRARY
        sources = [*sorted(str(p) for p in SERVER_DIR.glob("*.c")), str(CLIENT_DIR / "layouts.c"), str(generated)]
        cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread",
               "-fvisibility=default", f"-I{NATIVE}", f"-I{tmp}", f"-I{CLIENT_DIR}", f"-I{SERVER_DIR}",
               "-o", str(built), *sources, "-ldl"]
        subprocess.run(cmd, check=True)
        shutil.copyfile(generated, out / generated.name)
        final = out / LIBRARY
        os.replace(built, final)
    return final


def main(argv: list[str] | None = None) -> int:
    out = output_dir(argv, __doc__.splitlines()[0])
    print(compile_library(out, c_source()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
