"""`softshield p11-kit install|remove|show`: register the library with p11-kit.

p11-kit finds PKCS#11 modules through small module files: each names a library by its absolute path
(`module:`). The file is made from data/p11-kit/softshield.module.in with the library's real path,
the same template `make` fills in for build/p11-kit/softshield.module.

Where p11-kit reads them (p11-kit's compiled-in paths on Debian):
- `--user`: ${XDG_CONFIG_HOME:-~/.config}/pkcs11/modules/. p11-kit reads user module files for
  ordinary users only, never for root, so root is told to use `--system`;
- `--system`: /etc/pkcs11/modules/ (every user of the machine);
- `--dir DIR`: any folder (a package build's staging tree).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .main import CommandError, command
from .p11client import ROOT, library_path

TEMPLATE = ROOT / "data" / "p11-kit" / "softshield.module.in"
FILE_NAME = "softshield.module"
SYSTEM_DIR = Path("/etc/pkcs11/modules")


def user_dir() -> Path:
    """p11-kit expands `~/.config` to $XDG_CONFIG_HOME when that is set."""
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else Path.home() / ".config") / "pkcs11" / "modules"


def module_text(library: str) -> str:
    """The module file for `library`, named by its real path (p11-kit needs an absolute one)."""
    path = Path(library).resolve()
    if not path.is_file():
        raise CommandError(f"no PKCS#11 library at {path}: build it with `make`")
    if "\n" in str(path):
        raise CommandError(f"{path!r}: a path with a newline cannot be written in a module file")
    try:
        template = TEMPLATE.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read the module file template: {exc}") from None
    return template.replace("@LIBRARY@", str(path))


def target_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    if args.system:
        return SYSTEM_DIR
    if os.geteuid() == 0:
        raise CommandError("p11-kit does not read user module files for root: use --system (or --dir)")
    return user_dir()


def write_atomically(path: Path, text: str) -> None:
    """Write next to the target, then rename: p11-kit never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # p11-kit runs as every user of a system folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@command("p11-kit", "setup", "register the PKCS#11 library with p11-kit (install, remove, show the module file)")
class P11Kit:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", choices=["install", "remove", "show"],
                       help="install: write the module file; remove: delete it; show: print it")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--user", action="store_true",
                           help="~/.config/pkcs11/modules/ (the default; not read by p11-kit for root)")
        where.add_argument("--system", action="store_true", help=f"{SYSTEM_DIR}/ (every user)")
        where.add_argument("--dir", help="this folder instead")
        p.add_argument("--library", help="the library to register (default: SOFTSHIELD_PKCS11_LIB, "
                                          "else build/libsoftshield-pkcs11.so of this checkout)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        if args.action == "show":
            sys.stdout.write(module_text(args.library or library_path()))
            return 0
        path = target_dir(args) / FILE_NAME
        try:
            if args.action == "install":
                write_atomically(path, module_text(args.library or library_path()))
                print(f"wrote {path}")
            elif path.exists():
                path.unlink()
                print(f"removed {path}")
            else:
                print(f"{path} was not installed")
        except PermissionError as exc:
            hint = " (as root, or with sudo)" if args.system else ""
            raise CommandError(f"cannot write {exc.filename or path}: permission denied{hint}") from None
        except OSError as exc:
            raise CommandError(f"{exc.filename or path}: {exc.strerror}") from None
        return 0
