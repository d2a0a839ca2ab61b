"""The nShield tool names people script against, as console scripts (pyproject [project.scripts]):
each is `softshield <command>` with the same code, the same options and the same exit codes."""

from __future__ import annotations

import sys
from typing import Callable

#: console script -> softshield command (KeyTransferRemote is the vendor tool's own spelling).
TOOLS = {
    "new-world": "new-world", "racs": "racs", "nfkminfo": "nfkminfo", "kmfile-dump": "kmfile-dump",
    "createocs": "createocs", "ppmk": "ppmk", "bulkerase": "bulkerase", "rocs": "rocs",
    "generatekey": "generatekey", "aclprint": "aclprint", "preload": "preload",
    "verifykeypackage": "verifykeypackage", "KeyTransferRemote": "keytransfer",
}


def entry_name(script: str) -> str:
    """The attribute a console script's pyproject entry names: `new-world` -> `new_world`."""
    return "key_transfer_remote" if script == "KeyTransferRemote" else script.replace("-", "_")


#: entry attribute -> softshield command, from TOOLS.
_COMMAND_OF = {entry_name(script): command for script, command in TOOLS.items()}


def __getattr__(name: str) -> Callable[[], None]:
    """A console script's entry point (`softshield_cli.tools:new_world`), made on first use (PEP 562)."""
    command = _COMMAND_OF.get(name)
    if command is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def run() -> None:
        from .main import main

        sys.exit(main([command, *sys.argv[1:]]))

    run.__name__ = name
    return run
