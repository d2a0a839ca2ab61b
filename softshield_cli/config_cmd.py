"""`softshield config`: show where the configuration comes from and what it says.

One TOML file (SOFTSHIELD_CONFIG, default ~/.config/softshield/config.toml) beside the cknfast
variables; `pkcs11_shim.config` documents its keys. `config show` prints the settings the library
would use now (environment > cknfastrc > TOML), `config path` the file, `config example` a
commented starting point.
"""

from __future__ import annotations

import argparse
import json

from .main import CommandError, command

EXAMPLE = """\
# softshield configuration (SOFTSHIELD_CONFIG, default ~/.config/softshield/config.toml)
# The environment (NFAST_KMDATA, CKNFAST_*, SOFTSHIELD_*) and cknfastrc win over this file.
kmdata = "~/softshield-kmdata"          # NFAST_KMDATA: the world and key blobs

[log]
level = "warning"                        # SOFTSHIELD_LOG_LEVEL: debug, info, warning, error
# file = "/tmp/softshield.log"           # SOFTSHIELD_LOG_FILE (default: stderr)

[slots]
no_accelerator_slots = false             # CKNFAST_NO_ACCELERATOR_SLOTS
# A mechanism profile, to mimic a given HSM: "-CKM_X" removes, "CKM_X" keeps only the listed.
mechanisms = ["-CKM_RSA_X_509"]

# [slots.0]                              # one slot's own profile, applied after the one above
# mechanisms = ["CKM_RSA_PKCS", "CKM_SHA256_RSA_PKCS", "CKM_RSA_PKCS_KEY_PAIR_GEN"]
"""


def current() -> dict:
    from pkcs11_shim import config

    try:
        doc = config.read_toml()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    loaded = config.Config.load()
    return {
        "file": str(config.toml_path()), "file_exists": config.toml_path().is_file(),
        "settings": {k: v for k, v in sorted(loaded.values.items()) if "PIN" not in k},
        "mechanisms": {("all" if k is None else str(k)): list(v) for k, v in loaded.mechanism_rules.items()},
        "toml": doc,
    }


@command("config", "setup", "show the configuration file and the settings in effect")
class ConfigCommand:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", nargs="?", choices=["show", "path", "example"], default="show")
        p.add_argument("--json", action="store_true", help="print JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        if args.action == "example":
            print(EXAMPLE, end="")
            return 0
        info = current()
        if args.action == "path":
            print(info["file"])
            return 0
        if args.json:
            print(json.dumps(info, indent=2, default=str))
            return 0
        print(f"config file: {info['file']}" + ("" if info["file_exists"] else " (none)"))
        for name, value in info["settings"].items():
            print(f"  {name}={value}")
        for scope, entries in info["mechanisms"].items():
            print(f"  mechanisms[{scope}] = {', '.join(entries)}")
        return 0
