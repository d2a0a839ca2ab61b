"""`softshield preload`: load a card set or softcard once, then run a command that uses it.

    softshield preload --cardset NAME --pin-file F -- pkcs11-tool --module ... --login --pin x --sign ...

The quorum is read through the module (emulator API); the loaded token goes into a tokens file
(0600, sealed under a key of this world) named by NFAST_NFKM_TOKENSFILE in the child's environment,
which the PKCS#11 library reads at C_Initialize: that token then counts as logged in.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import subprocess
import tempfile

from .main import CommandError, command
from .pins import PinSource, add_pin_file_option

PRELOADED_PIN = "preloaded"  # any PIN: the library does not check it for a preloaded token


def _module():
    from emulator.module import Module

    return Module.open(os.environ.get("NFAST_KMDATA"))


def load_tokens(args: argparse.Namespace, cardsets: list[str], softcards: list[str]) -> str:
    """Read each quorum / passphrase, write the tokens file, return its path."""
    from emulator import softcards as sc
    from emulator.errors import EmulatorError

    module = _module()
    pins = PinSource(getattr(args, "pin_file", None))
    entries = []
    try:
        for name in cardsets:
            cardset = module.cardsets.by_name(name)
            auth = module.cardsets.login(cardset.hash, pins.cards(module.reader, cardset.k), say=print)
            entries.append({"hash": cardset.hash, "name": name, "sealed": base64.b64encode(module.seal_preload(auth)).decode()})
        for name in softcards:
            info = sc.by_name(module, name)
            item = pins.next(f"Loading softcard `{name}':", f"Enter passphrase for softcard `{name}': ", default_name=name)
            if item is None:
                raise CommandError(f"PIN file has no passphrase line for softcard `{name}'")
            auth = module.login(info.hash, "user", item[1])
            entries.append({"hash": info.hash, "name": name, "sealed": base64.b64encode(module.seal_preload(auth)).decode()})
    except EmulatorError as exc:
        raise CommandError(str(exc)) from None
    fd, path = tempfile.mkstemp(prefix="softshield-tokens-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump({"format": 1, "world": module.world.hknso, "tokens": entries}, handle)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return path


def preload_cardset(args: argparse.Namespace, name: str) -> None:
    os.environ["NFAST_NFKM_TOKENSFILE"] = load_tokens(args, [name], [])


@command("preload", "keys", "load card sets / softcards once, then run a command that uses them")
class Preload:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("-c", "--cardset", action="append", default=[], help="card set to load (repeatable)")
        p.add_argument("-s", "--softcard", action="append", default=[], help="softcard to load (repeatable)")
        p.add_argument("-A", "--appname", help="with -K: the key the command is about (exported as env)")
        p.add_argument("-K", "--ident")
        add_pin_file_option(p)
        p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command and arguments")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            raise CommandError("no command to run")
        path = load_tokens(args, args.cardset, args.softcard)
        env = dict(os.environ, NFAST_NFKM_TOKENSFILE=path)
        if args.appname and args.ident:
            env["SOFTSHIELD_PRELOAD_KEY"] = f"{args.appname}:{args.ident}"
        print("Loading complete; executing " + " ".join(cmd))
        return subprocess.call(cmd, env=env)
