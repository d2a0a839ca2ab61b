"""Build libsoftshield-embedded.so, the in-process module, with cffi's embedding mode.

    python -m pkcs11_shim.build [--out DIR]

The C side is generated from `native/functions.txt`: the CK_FUNCTION_LIST (2.40),
CK_FUNCTION_LIST_3_0 and CK_FUNCTION_LIST_3_2 tables, one exported C_* per function that first
checks that Python started and then calls its `extern "Python"` handler, and the cffi declarations of those handlers. Only
argument passing lives in C; every semantic lives in `pkcs11_shim`.

Hosts load libsoftshield-pkcs11.so (pkcs11_shim.client_build), which loads this library when the
process has no Python of its own or exactly the one recorded here, and forwards to the hardserver
(which runs this library) otherwise. It is linked -Bsymbolic: its function tables must point at its
own C_* even when the front end's C_* of the same names are in the host's global scope.

The interpreter that a C host starts inside the library does not see this virtual environment, so
the build records where the project and its packages live; SOFTSHIELD_PYTHONPATH overrides it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import site
import sys
import sysconfig
import tempfile
from pathlib import Path

import cffi

from pkcs11_shim.functions import NATIVE, ROOT, CFunction, read_functions  # noqa: F401 - re-exported

MODULE_NAME = "_softshield_pkcs11"
LIBRARY_NAME = "libsoftshield-embedded"


def python_handlers(functions: list[CFunction]) -> list[CFunction]:
    return [f for f in functions if not f.in_c]


def cdef_source(functions: list[CFunction]) -> str:
    """Types plus one `extern "Python"` handler per Python-answered function."""
    types = (NATIVE / "pkcs11_types.h").read_text()
    types = re.sub(r"/\*.*?\*/", "", types, flags=re.S)
    handlers = [f'extern "Python" CK_RV py_{f.name}({f.params});' for f in python_handlers(functions)]
    return "\n".join(
        [
            types,
            # Returns 1 once the embedded init code has run; cffi zero-fills the result when the
            # interpreter failed to start, which is how the C side tells the two apart.
            'extern "Python" int py_softshield_started(void);',
            *handlers,
            # native/answers.h: the calling thread's staging area for C_UnwrapKey's attribute answer.
            "unsigned char *softshield_answer_area(void);",
            "#define SOFTSHIELD_ANSWER_AREA_SIZE ...",
            # native/forks.h: the counter a forked child's copy of the library has moved on.
            "volatile unsigned long *softshield_fork_generation(void);",
            # native/template_image.h: the calling thread's image of C_UnwrapKey's template.
            "unsigned char *softshield_image_area(void);",
            "#define SOFTSHIELD_IMAGE_AREA_SIZE ...",
        ]
    )


def c_constants() -> str:
    """The C #defines of every return value and of the flags the C sources use, generated from
    pkcs11_shim.constants: the numbers have one table, and the C side never types one."""
    from pkcs11_shim.constants import CKR, InitFlag

    lines = [f"#define CKR_{rv.name} 0x{rv.value:x}UL" for rv in CKR]
    lines += [f"#define CKF_{flag.name} 0x{flag.value:x}UL" for flag in InitFlag]
    lines.append("#define CK_UNAVAILABLE_INFORMATION (~0UL)  /* §3.6: all bits of a CK_ULONG */")
    return "\n".join(lines)


#: The standard tables, oldest first: each holds every function of its own and earlier versions.
TABLES = (
    ("2.40", "CK_FUNCTION_LIST", "softshield_functions_2_40", "{2, 40}"),
    ("3.0", "CK_FUNCTION_LIST_3_0", "softshield_functions_3_0", "{3, 0}"),
    ("3.2", "CK_FUNCTION_LIST_3_2", "softshield_functions_3_2", "{3, 2}"),
)


def table_members(functions: list[CFunction]) -> list[tuple[str, str, str, list[CFunction]]]:
    """(struct, variable, version, members) of each table that has functions of its own."""
    order = [t[0] for t in TABLES]
    tables = []
    for version, struct, var, literal in TABLES:
        own = [f for f in functions if f.table == version]
        if not own:
            continue
        members = [f for f in functions if f.table in order[: order.index(version) + 1]]
        tables.append((struct, var, literal, members))
    return tables


def c_source(functions: list[CFunction], libpython: str) -> str:
    """The exported entry points and function tables."""
    tables = table_members(functions)
    out = [
        "#include <dlfcn.h>",
        "#include <string.h>",
        '#include "pkcs11_types.h"',
        f'#define SOFTSHIELD_LIBPYTHON "{libpython}"',
        f'#define SOFTSHIELD_PYTHON_EXECUTABLE "{sys.executable}"',
        "#include <stdlib.h>",
        "#include <wchar.h>",
        c_constants(),
        "#define SOFTSHIELD_EXPORT __attribute__((visibility(\"default\")))",
        "",
        '#include "forks.h"',
        '#include "random_fill.h"',
        '#include "template_image.h"',
        '#include "answers.h"',
        '#include "python_forks.h"',
        "",
        "typedef struct CK_FUNCTION_LIST CK_FUNCTION_LIST;",
        "typedef CK_FUNCTION_LIST *CK_FUNCTION_LIST_PTR;",
        "typedef CK_FUNCTION_LIST_PTR *CK_FUNCTION_LIST_PTR_PTR;",
        "",
    ]
    # Prototypes of every exported function (CK_FUNCTION_LIST_PTR_PTR must be known first).
    for f in functions:
        out.append(f"SOFTSHIELD_EXPORT CK_RV {f.name}({f.params});")
    out.append("")
    for struct, _var, _literal, members in tables:
        out.append(f"struct {struct} {{")
        out.append("    CK_VERSION version;")
        for f in members:
            out.append(f"    CK_RV (*{f.name})({f.params});")
        out.append("};")
        out.append("")
    # Forward declarations of the cffi-generated handlers (static, defined after this code).
    out.append("static int py_softshield_started(void);")
    for f in python_handlers(functions):
        out.append(f"static CK_RV py_{f.name}({f.params});")
    out.append(
        r"""
/* A host that dlopen()s us with RTLD_LOCAL hides libpython's symbols from the extension modules
 * Python loads later (`undefined symbol: PyExc_SystemError` from _cffi_backend). Promote the
 * libpython we are linked against to global scope before Python starts. */
__attribute__((constructor)) static void softshield_promote_libpython(void)
{
    dlopen(SOFTSHIELD_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    /* In a C host the interpreter cffi starts would not see the virtual environment the library
     * was built from, and cffi imports _cffi_backend before our init code can extend sys.path.
     * Naming the venv's python as the program lets Python's own start-up find pyvenv.cfg. */
    if (!Py_IsInitialized()) {
        static wchar_t program[4096];
        const char *python = getenv("SOFTSHIELD_PYTHON");
        if (python == NULL || python[0] == '\0')
            python = SOFTSHIELD_PYTHON_EXECUTABLE;
        if (mbstowcs(program, python, sizeof(program) / sizeof(program[0]) - 1) != (size_t)-1)
            Py_SetProgramName(program);
        ss_python_is_ours = 1; /* a C host: its forks are ours to make safe (native/python_forks.h) */
    }
}

static volatile int softshield_started = 0;

/* cffi returns a zero-filled result when the embedded interpreter failed to start, and 0 is
 * CKR_OK: every entry point asks this first and answers CKR_GENERAL_ERROR instead. */
static int softshield_python_ready(void)
{
    if (softshield_started)
        return 1;
    if (py_softshield_started() == 1) {
        ss_python_watch_forks(); /* before softshield_started lets callers skip this */
        softshield_started = 1;
        return 1;
    }
    return 0;
}
"""
    )
    for f in python_handlers(functions):
        args = ", ".join(f.arg_names)
        out.append(f"CK_RV {f.name}({f.params})")
        out.append("{")
        out.append("    if (!softshield_python_ready())")
        out.append("        return CKR_GENERAL_ERROR;")
        out.append(ANSWER_HOOKS.get(f.name, _ENDS_THE_ANSWERS)
                   .replace("@F@", f.name).replace("@A@", args))
        out.append("}")
        out.append("")
    for struct, var, literal, members in tables:
        out.append(f"static struct {struct} {var} = {{")
        out.append(f"    {literal},")
        out.extend(f"    {f.name}," for f in members)
        out.append("};")
        out.append("")
    out.append(interface_source(tables, "softshield"))
    return "\n".join(out)


#: Any other entry point may change attributes or their visibility: the answers end once it is done (an
#: answer another thread committed while it ran may predate what it changed).
_ENDS_THE_ANSWERS = """    {
        CK_RV rv = py_@F@(@A@);
        ss_answer_touch();
        return rv;
    }"""

#: An entry point whose handler stages the new key's attribute answer (abi/answers.py), with C lines run
#: before and after the handler.
_STAGES_A_KEY = """    {{
        unsigned long epoch = ss_answer_begin(hSession);
        CK_RV rv;
{before}        rv = py_@F@(@A@);
{after}        if (rv == CKR_OK && phKey != NULL)
            ss_answer_commit(hSession, *phKey, epoch, 0);
        return rv;
    }}"""
_MAKES_A_KEY = _STAGES_A_KEY.format(before="", after="")
#: C_UnwrapKey: the template's image for the handler (native/template_image.h), emptied once it returned.
_UNWRAPS_A_KEY = _STAGES_A_KEY.format(before="        ss_image_take(pTemplate, ulAttributeCount);\n",
                                      after="        ss_image_clear();\n")

#: C_GenerateKeyPair: the two halves' answers (abi/answers.py stages the public half first, the private second).
_MAKES_A_PAIR = """    {
        unsigned long epoch = ss_answer_begin(hSession);
        CK_RV rv = py_@F@(@A@);
        if (rv == CKR_OK && phPublicKey != NULL && phPrivateKey != NULL) {
            ss_answer_commit(hSession, *phPublicKey, epoch, 0);
            ss_answer_commit(hSession, *phPrivateKey, epoch, 1);
        }
        return rv;
    }"""

#: How the entry points keep native/answers.h's attribute answers valid: C_UnwrapKey, C_GenerateKey and
#: C_GenerateKeyPair make them,
#: C_GetAttributeValue reads it, C_DestroyObject forgets its handle's; every other entry point may
#: change attributes or their visibility, and ends them all (ss_answer_touch).
ANSWER_HOOKS = {
    "C_GetAttributeValue": """    {
        CK_RV answered;
        if (ss_answer_get(hSession, hObject, pTemplate, ulCount, &answered))
            return answered;
    }
    return py_@F@(@A@);""",
    "C_UnwrapKey": _UNWRAPS_A_KEY,
    "C_GenerateKey": _MAKES_A_KEY,
    "C_GenerateKeyPair": _MAKES_A_PAIR,
    "C_DestroyObject": """    ss_answer_forget(hObject);
    return py_@F@(@A@);""",
    # The handler checks, the entry point fills the buffer (native/random_fill.h).
    "C_GenerateRandom": """    {
        CK_RV rv = py_@F@(@A@);
        return rv == CKR_OK ? ss_random_fill(RandomData, ulRandomLen) : rv;
    }""",
}


#: The table-handing entry points of both libraries (in-process and client): they need no Python and
#: no server, since a host may call them before anything else. `@P@` is the library's C prefix.
INTERFACE_FUNCTIONS = r"""
static CK_CHAR @P@_interface_name[] = "PKCS 11";

/* Newest first: hosts that take the first entry get the newest interface (PKCS#11 3.0 §5.4.2). */
static CK_INTERFACE @P@_interfaces[] = {
@ENTRIES@
};
#define @PU@_INTERFACE_COUNT (sizeof(@P@_interfaces) / sizeof(@P@_interfaces[0]))

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (ppFunctionList == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &@OLDEST@;
    return CKR_OK;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    CK_ULONG i;
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfacesList == NULL) {
        *pulCount = @PU@_INTERFACE_COUNT;
        return CKR_OK;
    }
    if (*pulCount < @PU@_INTERFACE_COUNT) {
        *pulCount = @PU@_INTERFACE_COUNT;
        return CKR_BUFFER_TOO_SMALL;
    }
    for (i = 0; i < @PU@_INTERFACE_COUNT; i++)
        pInterfacesList[i] = @P@_interfaces[i];
    *pulCount = @PU@_INTERFACE_COUNT;
    return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    CK_ULONG i;
    if (ppInterface == NULL)
        return CKR_ARGUMENTS_BAD;
    for (i = 0; i < @PU@_INTERFACE_COUNT; i++) {
        CK_INTERFACE *candidate = &@P@_interfaces[i];
        CK_VERSION *offered = (CK_VERSION *)candidate->pFunctionList;
        if (pInterfaceName != NULL &&
            strcmp((const char *)pInterfaceName, (const char *)candidate->pInterfaceName) != 0)
            continue;
        if (pVersion != NULL &&
            (pVersion->major != offered->major || pVersion->minor != offered->minor))
            continue;
        if ((candidate->flags & flags) != flags)
            continue;
        *ppInterface = candidate;
        return CKR_OK;
    }
    *ppInterface = NULL;
    return CKR_ARGUMENTS_BAD;
}
"""


def interface_source(tables: list[tuple[str, str, str, list[CFunction]]], prefix: str) -> str:
    """C_GetFunctionList (the oldest table), C_GetInterfaceList and C_GetInterface over `tables`
    (from `table_members`). Nothing records which table a host took: C_GetInfo answers
    cryptokiVersion 3.2 through every table (abi/general.py)."""
    entries = "\n".join(f"    {{{prefix}_interface_name, &{var}, 0}}," for _s, var, _l, _m in reversed(tables))
    return (INTERFACE_FUNCTIONS.replace("@ENTRIES@", entries).replace("@OLDEST@", tables[0][1])
            .replace("@PU@", prefix.upper()).replace("@P@", prefix))


def output_dir(argv: list[str] | None, description: str) -> Path:
    """The `--out DIR` of a build command (default build/), created."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=str(ROOT / "build"), help="output folder")
    out = Path(parser.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def recorded_paths() -> list[str]:
    """Where the embedded interpreter finds the project and its dependencies."""
    paths = [str(ROOT)]
    for p in site.getsitepackages() + [site.getusersitepackages()]:
        if os.path.isdir(p) and p not in paths:
            paths.append(p)
    return paths


def init_code() -> str:
    return f"""
import os, sys
_recorded = {recorded_paths()!r}
_override = os.environ.get("SOFTSHIELD_PYTHONPATH")
for _p in reversed(_override.split(os.pathsep) if _override else _recorded):
    if _p and _p not in sys.path:
        sys.path.insert(0, _p)
if _override:
    # An override is authoritative: the project must come from there, not from an installed copy.
    import importlib.machinery
    if importlib.machinery.PathFinder.find_spec("pkcs11_shim", _override.split(os.pathsep)) is None:
        raise ImportError("pkcs11_shim is not in SOFTSHIELD_PYTHONPATH=" + _override)
from {MODULE_NAME} import ffi, lib
from pkcs11_shim.abi import entry
entry.bind(ffi, lib)
"""


def libpython_soname() -> str:
    return sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")


def make_builder() -> cffi.FFI:
    functions = read_functions()
    builder = cffi.FFI()
    builder.cdef(cdef_source(functions))
    builder.embedding_api("")
    libdir = sysconfig.get_config_var("LIBDIR")
    builder.set_source(
        MODULE_NAME,
        c_source(functions, libpython_soname()),
        include_dirs=[str(NATIVE)],
        libraries=["dl"],
        library_dirs=[libdir] if libdir else [],
        extra_link_args=["-Wl,-Bsymbolic", *([f"-Wl,-rpath,{libdir}"] if libdir else [])],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function", "-Wno-deprecated-declarations"],
    )
    builder.embedding_init_code(init_code())
    return builder


def main(argv: list[str] | None = None) -> int:
    out = output_dir(argv, __doc__.splitlines()[0])
    builder = make_builder()
    target = f"{LIBRARY_NAME}.*"
    # Compile in a private folder and rename into place: a process that has the old library mapped
    # (a test run, a hardserver) keeps it, and nobody ever loads a half-written file.
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        built = Path(builder.compile(tmpdir=tmp, target=target, verbose=False))
        for generated in Path(tmp).glob(f"{MODULE_NAME}.*"):
            shutil.copyfile(generated, out / generated.name)  # kept for reading and debugging
        final = out / built.name
        os.replace(built, final)
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
