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


def _tool(command: str) -> Callable[[], None]:
    def run() -> None:
        from .main import main

        sys.exit(main([command, *sys.argv[1:]]))

    run.__name__ = command.replace("-", "_")
    return run


new_world = _tool("new-world")
racs = _tool("racs")
nfkminfo = _tool("nfkminfo")
kmfile_dump = _tool("kmfile-dump")
createocs = _tool("createocs")
ppmk = _tool("ppmk")
bulkerase = _tool("bulkerase")
rocs = _tool("rocs")
generatekey = _tool("generatekey")
aclprint = _tool("aclprint")
preload = _tool("preload")
verifykeypackage = _tool("verifykeypackage")
key_transfer_remote = _tool("keytransfer")
