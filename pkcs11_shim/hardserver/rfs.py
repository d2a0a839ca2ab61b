"""The RFS over the network: `softshield hardserver --rfs` serves its kmdata to `softshield rfs-sync`.

Requests arrive as SERVICE frames on the same mutual-TLS channel as PKCS#11 (network.py admits the
client first); the sync rules are emulator.rfs's. A commit that changes a world-administration file
(world, module files, card sets) needs a privileged client, as those are the ACS's business.
"""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from emulator.errors import EmulatorError
from emulator.module import Module
from emulator.rfs import Change, Rfs, StaleCommit, needs_privilege

from pkcs11_shim.hardserver.peers import Peer, Refused

log = logging.getLogger("hardserver")


class RfsService:
    def __init__(self, kmdata: Path) -> None:
        self.kmdata = Path(kmdata)
        self._rfs: Rfs | None = None
        self._hknso = ""
        self._lock = threading.Lock()

    def services(self) -> dict[str, Callable[[dict[str, Any], Peer], dict[str, Any]]]:
        return {"rfs-manifest": self.manifest, "rfs-fetch": self.fetch, "rfs-commit": self.commit}

    def _open(self) -> Rfs:
        with self._lock:
            if self._rfs is None:
                module = Module.open(self.kmdata)
                self._rfs, self._hknso = Rfs(module._store), module.world.hknso
            return self._rfs

    def manifest(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        rfs = self._open()
        try:
            return {"hknso": self._hknso, "files": rfs.manifest()}
        except EmulatorError as exc:
            raise Refused(str(exc)) from None

    def fetch(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        names = request.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Refused("rfs-fetch needs a list of names")
        try:
            files = self._open().fetch(names)
        except EmulatorError as exc:
            raise Refused(str(exc)) from None
        return {"files": {n: base64.b64encode(d).decode("ascii") for n, d in files.items()}}

    def commit(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        try:
            changes = [Change(c["name"], c["base"], None if c["data"] is None else base64.b64decode(c["data"]))
                       for c in request["changes"]]
        except (KeyError, TypeError, ValueError):
            raise Refused("a malformed rfs-commit request") from None
        admin = [c.name for c in changes if needs_privilege(c.name)]
        if admin and not peer.privileged:
            raise Refused(f"committing {', '.join(admin)} is world administration: it needs a privileged "
                          "client (clientperm=priv)")
        try:
            written = self._open().commit(changes)
        except StaleCommit as exc:
            log.warning("refused a commit from %s: %s", peer, exc)
            return {"error": str(exc), "stale": True}
        except EmulatorError as exc:
            raise Refused(str(exc)) from None
        log.info("rfs commit from %s: %s", peer, ", ".join(sorted(written)) or "nothing")
        return {"written": written}
