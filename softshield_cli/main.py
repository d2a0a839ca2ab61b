"""`softshield` entry point: one CLI, subcommands named like the vendor's tools.

Each command module registers itself in COMMANDS with the group it belongs to; errors print one
line and exit non-zero (exit codes in EXIT_CODES).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

#: Command modules, in the order `--help` lists them.
COMMAND_MODULES = ("softshield_cli.demo",)

#: name -> (group, help, configure(parser), run(args) -> int)
COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}

EXIT_CODES = {0: "success", 1: "the operation failed (the message says why)", 2: "bad command line"}


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def command(name: str, group: str, help_text: str):
    def register(cls):
        COMMANDS[name] = (group, help_text, cls.configure, cls.run)
        return cls

    return register


def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="softshield",
        description="softshield: an nShield-style HSM emulator behind a PKCS#11 library.",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (group, help_text, configure, run) in COMMANDS.items():
        p = sub.add_parser(name, help=f"[{group}] {help_text}", description=help_text)
        configure(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"softshield {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
