"""The layering contract of the product packages, read from their source (docs/INTERNALS.md, "Layers").

An AST scan of every import in `emulator`, `pkcs11_shim` and `softshield_cli` (no module is executed, so
the scan also sees imports inside functions, which load on first use):

1. `emulator` never imports `pkcs11_shim`: the module knows nothing of PKCS#11.
2. `pkcs11_shim.mechanisms` and `pkcs11_shim.attributes` never import `pkcs11_shim.abi` or `cffi`: they
   work on Python values; reading C pointers is the C boundary's job.
3. Only `emulator.crypto` imports `cryptography`: one place holds every primitive.
4. Nothing imports a build script (`pkcs11_shim.build`, `client_build`, `server_build`) at run time; what
   run time needs from them (the C function list, the client's plans) lives in `pkcs11_shim.functions`.
5. No import circles between modules. Every import that runs counts, at module level or inside a
   function (a deferred import still makes the two modules need each other); an import under
   `if TYPE_CHECKING:` never runs and does not count. An edge goes from a module to the module it names:
   `from a.b import c` is an edge to `a.b.c` when that is a module, else to `a.b`. The modules a loader
   imports by name (`abi.entry` imports its chapters with importlib, from `START_CHAPTERS` and
   `LATER_CHAPTERS`) are edges too: the chapters register their handlers in `abi.handlers`, never in
   `abi.entry`.

6. `pkcs11_shim.mechanisms` and `pkcs11_shim.attributes` never catch an emulator error to pick a return
   code by hand: what a primitive's failure means is declared in one table per context
   (`mechanisms.failures.BY_OPERATION`, a row's `failure_codes`, `attributes.keyparts.COMPONENT_CODES`)
   and the rest goes to the C boundary's table (`abi.entry.EMULATOR_CKR`).

7. No `assert` statement in product code: `python -O` strips them, so a check that must hold is an
   explicit `if ...: raise` with its reason.

No rule has an exception. The last tests copy the tree to a scratch folder, break a rule there (a
forbidden import, a circle, a hand-mapped failure, an assert), and check the scan reports it.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("emulator", "pkcs11_shim", "softshield_cli")
BUILD_SCRIPTS = ("pkcs11_shim.build", "pkcs11_shim.client_build", "pkcs11_shim.server_build")

#: Modules that import others by name at run time: module -> (names of its tuple constants listing them,
#: the package they are in).
DYNAMIC_IMPORTS: dict[str, tuple[tuple[str, ...], str]] = {
    "pkcs11_shim.abi.entry": (("START_CHAPTERS", "LATER_CHAPTERS"), "pkcs11_shim.abi"),
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name of the importing file
    target: str  # dotted name of the imported module (resolved to a module file where one exists)
    line: int
    module_level: bool  # False inside a function body: runs on first use, after every module loaded
    type_only: bool = False  # under `if TYPE_CHECKING:`: never runs


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, modules: set[str]) -> None:
        self.name = name
        self.package = name if is_package else name.rpartition(".")[0]
        self.modules = modules
        self.depth = 0  # > 0 inside a function body
        self.type_only = 0  # > 0 inside a TYPE_CHECKING block
        self.found: list[Import] = []

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(self.name, target, node.lineno, self.depth == 0, self.type_only > 0))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]
    visit_Lambda = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_only += 1
            for child in node.body:
                self.visit(child)
            self.type_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:
            candidate = f"{module}.{alias.name}"
            self._add(candidate if candidate in self.modules else module, node)


def scan(root: Path) -> list[Import]:
    """Every import statement in the product packages under `root`."""
    files = {
        _module_name(root, path): path
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
    }
    modules = set(files)
    found: list[Import] = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        collector = _Collector(name, path.name == "__init__.py", modules)
        collector.visit(tree)
        found.extend(collector.found)
        if name in DYNAMIC_IMPORTS:
            found.extend(_dynamic(name, tree, *DYNAMIC_IMPORTS[name]))
    return found


def _dynamic(name: str, tree: ast.Module, constants: tuple[str, ...], package: str) -> list[Import]:
    """The imports a loader makes by name, read from its tuple constants."""
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id in constants for t in targets) and node.value is not None:
            found += [Import(name, f"{package}.{m}", node.lineno, False) for m in ast.literal_eval(node.value)]
    assert found, f"{name}: none of {constants} found"
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _where(imp: Import) -> str:
    return f"{imp.importer}:{imp.line} imports {imp.target}"


def layer_violations(imports: list[Import]) -> list[str]:
    """Rules 1 to 4: each import that crosses a layer the wrong way."""
    rules = (
        ("emulator imports pkcs11_shim",
         lambda i: _within(i.importer, "emulator") and _within(i.target, "pkcs11_shim")),
        ("mechanisms/attributes import the C boundary",
         lambda i: any(_within(i.importer, p) for p in ("pkcs11_shim.mechanisms", "pkcs11_shim.attributes"))
         and any(_within(i.target, t) for t in ("pkcs11_shim.abi", "cffi", "_cffi_backend"))),
        ("cryptography outside emulator.crypto",
         lambda i: _within(i.target, "cryptography") and not _within(i.importer, "emulator.crypto")),
        ("build script imported at run time",
         lambda i: any(_within(i.target, b) for b in BUILD_SCRIPTS)
         and not any(_within(i.importer, b) for b in BUILD_SCRIPTS)),
    )
    found = [f"{label}: {_where(i)}" for i in imports for label, broken in rules if broken(i)]
    return list(dict.fromkeys(found))  # one line per statement, however many names it imports


def circles(imports: list[Import]) -> list[frozenset[str]]:
    """Rule 5: the strongly connected components (more than one module) of the import graph."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.type_only and imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    # Tarjan's algorithm, iterative so a deep graph cannot exhaust the recursion limit.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def circle_violations(imports: list[Import]) -> list[str]:
    return ["import circle: " + " <-> ".join(sorted(c)) for c in circles(imports)]


EMULATOR_ERRORS = frozenset({"EmulatorError", "CryptoFailure", "InvalidKeyMaterial", "InconsistentComponents",
                             "UnsupportedCurve", "AclDenied", "BlobInvalid", "KeyNotFound"})


def hand_mapped_failures(root: Path) -> list[str]:
    """Rule 6: `except <emulator error>` handlers in the mechanism and attribute layers."""
    found = []
    for package in ("pkcs11_shim/mechanisms", "pkcs11_shim/attributes"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ExceptHandler) and node.type is not None:
                    types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                    names = {t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in types}
                    if names & EMULATOR_ERRORS:
                        found.append(f"{path.relative_to(root)}:{node.lineno} catches {', '.join(sorted(names))}")
    return found


def asserts(root: Path) -> list[str]:
    """Rule 7: `assert` statements in the product packages."""
    return [f"{path.relative_to(root)}:{node.lineno} asserts"
            for package in PACKAGES for path in sorted((root / package).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))) if isinstance(node, ast.Assert)]


def test_no_asserts_in_product_code() -> None:
    assert asserts(ROOT) == []


def test_contract_reports_an_assert(scratch: Path) -> None:
    _append(scratch, "softshield_cli/pins.py", "def later(item):\n    assert item is not None")
    lines = (scratch / "softshield_cli/pins.py").read_text().splitlines()
    assert asserts(scratch) == [f"softshield_cli/pins.py:{len(lines)} asserts"]


def test_no_hand_mapped_failures() -> None:
    assert hand_mapped_failures(ROOT) == []


def test_contract_reports_a_hand_mapped_failure(scratch: Path) -> None:
    _append(scratch, "pkcs11_shim/mechanisms/aes.py",
            "def later():\n    try:\n        pass\n    except CryptoFailure:\n        raise")
    lines = (scratch / "pkcs11_shim/mechanisms/aes.py").read_text().splitlines()
    assert hand_mapped_failures(scratch) == [
        f"pkcs11_shim/mechanisms/aes.py:{len(lines) - 1} catches CryptoFailure"]


def test_layers_hold() -> None:
    assert layer_violations(scan(ROOT)) == []


def test_no_import_circles() -> None:
    assert circle_violations(scan(ROOT)) == []


def test_scan_sees_the_packages() -> None:
    """A scan that found nothing would pass every rule: check it reads what the rules are about."""
    imports = scan(ROOT)
    importers = {i.importer for i in imports}
    assert {"emulator.crypto.aes", "pkcs11_shim.abi.entry", "softshield_cli.main"} <= importers
    assert any(_within(i.target, "cryptography") for i in imports)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.o", "native"))
    return tmp_path


def _append(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.write_text(path.read_text() + "\n" + text + "\n")


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        ("emulator/keys.py", "import pkcs11_shim.constants",
         "emulator imports pkcs11_shim: emulator.keys:{n} imports pkcs11_shim.constants"),
        ("pkcs11_shim/mechanisms/aead.py", "from ..abi import marshal",
         "mechanisms/attributes import the C boundary: pkcs11_shim.mechanisms.aead:{n} imports "
         "pkcs11_shim.abi.marshal"),
        ("pkcs11_shim/attributes/codecs.py", "def later():\n    import cffi",
         "mechanisms/attributes import the C boundary: pkcs11_shim.attributes.codecs:{n} imports cffi"),
        ("softshield_cli/main.py", "from cryptography.hazmat.primitives import hashes",
         "cryptography outside emulator.crypto: softshield_cli.main:{n} imports "
         "cryptography.hazmat.primitives"),
        ("pkcs11_shim/hardserver/__init__.py", "from pkcs11_shim import client_build",
         "build script imported at run time: pkcs11_shim.hardserver:{n} imports pkcs11_shim.client_build"),
    ],
)
def test_contract_reports_a_forbidden_import(scratch: Path, file: str, line: str, expected: str) -> None:
    assert layer_violations(scan(scratch)) == []
    _append(scratch, file, line)
    lines = (scratch / file).read_text().splitlines()
    n = next(i for i, text in enumerate(lines, 1) if "import" in text and text.strip() in line.splitlines()[-1])
    assert layer_violations(scan(scratch)) == [expected.format(n=n)]


def test_contract_reports_a_chapter_importing_its_loader(scratch: Path) -> None:
    """`abi.entry` imports the chapters by name; a chapter importing `entry` back closes a circle."""
    assert circle_violations(scan(scratch)) == []
    _append(scratch, "pkcs11_shim/abi/vendor.py", "from .entry import rv_for")
    assert circle_violations(scan(scratch)) == [
        "import circle: pkcs11_shim.abi.entry <-> pkcs11_shim.abi.vendor"]


def test_contract_ignores_type_only_imports(scratch: Path) -> None:
    _append(scratch, "emulator/errors.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from emulator import module")
    assert circle_violations(scan(scratch)) == []


def test_contract_reports_a_new_circle(scratch: Path) -> None:
    assert circle_violations(scan(scratch)) == []
    # emulator.errors is imported by most of the emulator; importing the module back from it, even
    # deferred into a function, closes a loop.
    _append(scratch, "emulator/errors.py", "def later():\n    from emulator import module")
    reported = circle_violations(scan(scratch))
    assert len(reported) == 1
    assert "emulator.errors" in reported[0] and "emulator.module" in reported[0]
