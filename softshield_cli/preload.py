"""`softshield preload`: load a card set or softcard once, then run a command that uses it.

    softshield preload --cardset NAME --pin-file F -- pkcs11-tool --module ... --login --pin x --sign ...
    softshield preload --key "pkcs11:token=NAME;object=signer" --pin-file F -- aclprint

A card set or softcard is named by its name or by a `pkcs11:token=NAME` URI; `--key` (or -K) takes a
key's URI: its token is loaded, then the key is found through the library and named to the command
(SOFTSHIELD_PRELOAD_KEY, which aclprint reads).

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
    from .inspect import existing_module

    return existing_module()


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
        p.add_argument("-K", "--ident", help="the key's ident (with -A), or its pkcs11: URI")
        p.add_argument("--key", metavar="URI", help="the key the command is about, as a pkcs11: URI (its token is loaded)")
        add_pin_file_option(p)
        p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command and arguments")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from . import keyref

        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if cmd and keyref.is_uri(cmd[0]):
            raise CommandError(f"{cmd[0]} is a key, not a command: give it with --key URI, then -- COMMAND")
        if not cmd:
            raise CommandError("no command to run")
        key_uri = args.key or (args.ident if keyref.is_uri(args.ident) else None)
        if key_uri and args.appname:
            raise CommandError("name the key by -A APP -K IDENT or by a pkcs11: URI, not both")
        cardsets, softcards = _token_names(args.cardset), _token_names(args.softcard)
        if key_uri:
            token = _uri_token(key_uri)
            if token and token not in (*cardsets, *softcards) and token != ACCELERATOR:
                _kind_of(token, cardsets, softcards)
        path = load_tokens(args, cardsets, softcards)
        env = dict(os.environ, NFAST_NFKM_TOKENSFILE=path)
        if key_uri:
            os.environ["NFAST_NFKM_TOKENSFILE"] = path  # this process's library sees the loaded token too
            env["SOFTSHIELD_PRELOAD_KEY"] = ":".join(keyref.resolve_uri(key_uri, PRELOADED_PIN))
        elif args.appname and args.ident:
            env["SOFTSHIELD_PRELOAD_KEY"] = f"{args.appname}:{args.ident}"
        print("Loading complete; executing " + " ".join(cmd))
        try:
            return subprocess.call(cmd, env=env)
        except OSError as exc:
            raise CommandError(f"cannot run {cmd[0]}: {exc.strerror}") from None


ACCELERATOR = "loadshared accelerator"


def _uri_token(text: str) -> str | None:
    from .listing import parse_uri

    return parse_uri(text).token


def _token_names(names: list[str]) -> list[str]:
    """-c/-s values: a name, or a pkcs11: URI whose token= is that name."""
    from . import keyref

    out = []
    for name in names:
        if keyref.is_uri(name):
            token = _uri_token(name)
            if not token:
                raise CommandError(f"{name}: a card set or softcard URI names its token (token=NAME)")
            name = token
        out.append(name)
    return out


def _kind_of(token: str, cardsets: list[str], softcards: list[str]) -> None:
    """Add the key URI's token to the card sets or softcards to load, whichever it is."""
    from emulator import softcards as sc
    from emulator.errors import EmulatorError

    module = _module()
    if _is_cardset(module, token):
        cardsets.append(token)
        return
    try:
        sc.by_name(module, token)
    except EmulatorError:
        raise CommandError(f"no card set or softcard `{token}' in this world (the URI's token)") from None
    softcards.append(token)


def _is_cardset(module, name: str) -> bool:
    from emulator.errors import EmulatorError

    try:
        module.cardsets.by_name(name)
        return True
    except EmulatorError:
        return False
