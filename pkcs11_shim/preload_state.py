"""Tokens loaded by `softshield preload` for the command it runs (nShield's NFAST_NFKM_TOKENSFILE).

The file names each loaded card set or softcard and carries its logical token sealed under a key of
this world (emulator Module.seal_preload). A token listed there counts as logged in: as on nShield,
C_Login then succeeds without checking the PIN given (as nShield's `preload` documents).
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("softshield.preload")


def read(module: Any, config: Any) -> dict[str, Any]:
    """token hash -> TokenAuth for every token preloaded into this process."""
    path = config.get("NFAST_NFKM_TOKENSFILE")
    if not path:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("world") != module.world.hknso:
            log.warning("tokens file %s is for another world: ignored", path)
            return {}
        loaded = {}
        for entry in doc["tokens"]:
            loaded[entry["hash"]] = module.open_preload(entry["hash"], base64.b64decode(entry["sealed"]))
        return loaded
    except Exception as exc:  # noqa: BLE001 - a bad tokens file means nothing preloaded, logged
        log.warning("tokens file %s unusable: %s", path, exc)
        return {}
