"""`softshield` entry point: one CLI, subcommands named like the vendor's tools.

Each command module registers itself in COMMANDS with the group it belongs to; errors print one
line and exit non-zero (exit codes in EXIT_CODES).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable

#: Command modules, in the order `--help` lists them.
COMMAND_MODULES = (
    "softshield_cli.demo",
    "softshield_cli.worldcmds",
    "softshield_cli.generatekey",
    "softshield_cli.inspect",
    "softshield_cli.preload",
)

COMMAND_MODULES += ("softshield_cli.byok",)
COMMAND_MODULES += ("softshield_cli.verifykeypackage",)
COMMAND_MODULES += ("softshield_cli.keytransfer",)
COMMAND_MODULES += ("softshield_cli.security_domain",)
COMMAND_MODULES += ("softshield_cli.filltoken",)
COMMAND_MODULES += ("softshield_cli.listing", "softshield_cli.sign", "softshield_cli.doctor",
                    "softshield_cli.config_cmd", "softshield_cli.completion")
COMMAND_MODULES += ("softshield_cli.hardserver", "softshield_cli.netcmds")
COMMAND_MODULES += ("softshield_cli.p11kit",)

#: `--help` lists commands by group, in the order an nShield officer meets them; others follow.
HELP_GROUPS = {
    "world": "Security World", "cards": "card sets and softcards", "keys": "keys",
    "byok": "key transfer (BYOK, packages, backup)", "transfer": "key transfer",
    "tokens": "PKCS#11 tokens and objects", "setup": "installation and configuration",
}

#: name -> (group, help, configure(parser), run(args) -> int)
COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}

EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader went away
EXIT_CODES = {0: "success", 1: "the operation failed (the message says why)", 2: "bad command line",
              130: "interrupted (Ctrl-C)", EXIT_SIGPIPE: "the output pipe was closed (e.g. `| head`)"}


def grouped_help() -> str:
    """The command list of `softshield --help`, one block per group."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, (group, help_text, _configure, _run) in COMMANDS.items():
        groups.setdefault(group, []).append((name, help_text))
    order = [g for g in HELP_GROUPS if g in groups] + sorted(g for g in groups if g not in HELP_GROUPS)
    width = max((len(n) for n in COMMANDS), default=0) + 2
    lines = []
    for group in order:
        lines.append(f"{HELP_GROUPS.get(group, group)}:")
        lines.extend(f"  {name.ljust(width)}{text}" for name, text in groups[group])
        lines.append("")
    lines.append("exit codes:")
    lines.extend(f"  {code:<4}{text}" for code, text in EXIT_CODES.items())
    lines.append("")
    lines.append("`softshield COMMAND --help` describes a command; `softshield completion bash` completes them.")
    return "\n".join(lines)


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


class CommandModuleBroken(Exception):
    """A command module in COMMAND_MODULES failed to import: an installation fault, reported as one
    line naming the module rather than a CLI that quietly lacks the command."""


def command(name: str, group: str, help_text: str):
    def register(cls):
        COMMANDS[name] = (group, help_text, cls.configure, cls.run)
        return cls

    return register


def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise CommandModuleBroken(f"command module {module} does not import: {type(exc).__name__}: {exc}") from exc
    parser = argparse.ArgumentParser(
        prog="softshield",
        description="softshield: an nShield-style HSM emulator behind a PKCS#11 library.",
        epilog=grouped_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of the commands below")
    for name, (group, help_text, configure, run) in COMMANDS.items():
        p = sub.add_parser(name, description=help_text)
        configure(p)
        p.set_defaults(_run=run)
    return parser


def user_error(exc: Exception) -> str | None:
    """The one line for a failure that is the user's to act on; None for a bug (kept as a traceback)."""
    from emulator.errors import EmulatorError

    if isinstance(exc, EmulatorError):
        return str(exc)
    if type(exc).__module__.startswith("pkcs11"):
        # python-pkcs11 raises one class per CKR (UserNotLoggedIn, KeyHandleInvalid, ...).
        detail = f": {exc}" if str(exc) else ""
        return f"the PKCS#11 library refused the call ({type(exc).__name__}{detail})"
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except CommandModuleBroken as exc:
        print(f"softshield: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # The reader went away (`softshield nfkminfo | head`): stop quietly, as a shell tool does.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SIGPIPE
    except CommandError as exc:
        print(f"softshield {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        print(f"softshield {args.command}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run as `python -m softshield_cli.main`, this file is __main__ while the command modules register
    # into softshield_cli.main: dispatch through that one.
    from softshield_cli.main import main as _registered_main

    sys.exit(_registered_main())
