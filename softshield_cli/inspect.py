"""Inspection tools: nfkminfo, kmfile-dump, aclprint, rocs. None of them prints secret material."""

from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path

from .main import CommandError, command


def existing_module():
    """The module of the world in kmdata. Inspection never creates state: on an empty kmdata it says
    there is no Security World and fails (Module.open would make a default one)."""
    from emulator import paths
    from emulator.module import Module

    kmdata = paths.resolve_kmdata()
    if not paths.world_exists(kmdata):
        raise CommandError(f"there is no Security World in {paths.local_dir(kmdata)} "
                           "(create one with `softshield new-world`, or set NFAST_KMDATA)")
    return Module.open(kmdata)


def _protection(module, header_protection: str, token: str | None) -> str:
    if header_protection == "module":
        return "module"
    return "cardset" if module.cardsets.exists(token) else "softcard"


def _key_rows(module):
    """(file name, app, ident, plainname, protection, owner, problem, storage, kind) of every key file. Module
    keys are opened to verify them (the module can, without cards); token keys are checked as far
    as their header, since their tag can only be verified with the token loaded."""
    from emulator import blobs, nvram, paths

    rows = []
    for name in module._store.names(paths.KEY_PREFIX):
        try:
            data = module._store.read(name)
            header = blobs.parse(data, name).header
            storage = nvram.storage_of(data, name)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is listed, with why
            rows.append((name, "?", "?", "", "?", None, str(exc), "?", "?"))
            continue
        rows.append((name, header.app, header.ident, header.plainname,
                     _protection(module, header.protection, header.token), header.token,
                     verify_problem(module, module._store.path(name), header.protection), storage, header.kind))
    return rows


def verify_problem(module, path: Path, protection: str) -> str | None:
    """Why the key at `path` does not load (None: it does, or it cannot be checked without a login)."""
    from emulator.errors import EmulatorError

    if protection != "module":
        return None
    try:
        module.load_key_file(path)
    except EmulatorError as exc:
        return str(exc)
    return None


def world_lines(module) -> list[str]:
    from emulator import worldadmin
    from emulator.worldadmin import Place, module_files

    place = Place.of(module.kmdata)
    world_file = place.world_file()
    if world_file is None:
        raise CommandError(f"there is no Security World in {module.local}: it was removed while this ran")
    acs = world_file.acs
    flags = ["Initialised", "Usable", "Recovery" if acs else "!Recovery", "!PINRecovery", "!ExistingClient",
             "!NVRAM", "FTO" if acs else "!FTO", "SEEDebug" if False else "!SEEDebug"]
    state = 0x3737000C if acs else 0x37270008
    lines = ["World",
             f" generation  2",
             f" state       0x{state:08x} {' '.join(flags)}",
             f" n_modules   {len(world_file.module_shares)}",
             f" hknso       {world_file.world.hknso}",
             f" hkm         {acs['hkm'] if acs else '(default world: no ACS)'}",
             f" k-out-of-n  {str(acs['k']) + '/' + str(acs['n']) if acs else '0/0 (default world made on first use: no ACS)'}",
             f" acs hash    {acs['hash'] if acs else '-'}",
             f" createtime  {world_file.world.created}",
             f" ciphersuite {world_file.world.cipher_suite}",
             " mode        none (EMULATED)", ""]
    for number, module_file in enumerate(module_files(place.store), 1):
        usable = module_file.esn in world_file.module_shares and worldadmin.module_can_open(place, module_file)
        lines += [f"Module #{number}", " generation 2",
                  f" state      {'0x2 Usable' if usable else '0x5 Uninitialized (not in this world)'}",
                  f" flags      0x10000 ShareTarget", " n_slots    1",
                  f" esn        {module_file.esn}", ""]
    return lines


def cardset_lines(module) -> list[str]:
    lines = ["Cardsets:"]
    sets = module.cardsets.list()
    if not sets:
        lines.append(" No cardsets")
    for c in sets:
        flags = "persistent" if c.persistent else "NotPersistent"
        lines += [f" Operator logical token hash {c.hash}", f"  name   `{c.name}'",
                  f"  k-out-of-n {c.k}/{c.n}", f"  flags  {flags}",
                  f"  timeout {c.timeout or 'none'}", f"  created {c.created}"]
    return lines


def softcard_lines(module) -> list[str]:
    from emulator import softcards

    lines = ["SoftCards:"]
    cards = softcards.list_softcards(module)
    if not cards:
        lines.append(" No softcards")
    for s in cards:
        lines += [f" Operator logical token hash {s.hash}", f"  name   `{s.label}'",
                  f"  flags  {'PINLocked' if s.user_locked else 'NotPersistent'}", f"  created {s.created}"]
    return lines


def key_lines(module, app: str | None = None, ident: str | None = None) -> list[str]:
    rows = [r for r in _key_rows(module) if (app is None or r[1] == app) and (ident is None or r[2] == ident)]
    if not rows:
        return ["Key list: no keys"]
    lines = [f"Key list - {len(rows)} keys"]
    for name, key_app, key_ident, plainname, protection, owner, problem, storage, _kind in rows:
        owner_text = f" {owner}" if owner else ""
        lines.append(f" AppName {key_app:<10} Ident {key_ident}")
        lines.append(f"   name `{plainname}' protection {protection}{owner_text}")
        if storage.startswith("NVRAM"):
            lines.append(f"   storage {storage}")
        if problem:
            lines.append(f"   UNUSABLE: {problem}")
    return lines


def name_lines(module) -> list[str]:
    rows = _key_rows(module)
    lines = []
    for title, protection in (("Keys with module protection:", "module"),
                              ("Keys protected by cardsets:", "cardset"),
                              ("Keys protected by softcards:", "softcard")):
        lines.append(title)
        chosen = [r for r in rows if r[4] == protection]
        lines += [f" {r[0]} `{r[3]}'" + (f" ({r[7]})" if r[7].startswith("NVRAM") else "")
                  + (f" UNUSABLE: {r[6]}" if r[6] else "") for r in chosen] or [" (none)"]
    return lines


def key_detail(module, app: str, ident: str) -> dict:
    """What `nfkminfo -k APP IDENT` shows of one key (nShield prints its blobs, hash, name,
    recovery, protection and owner); nothing secret."""
    from emulator import blobs, nvram, paths
    from emulator.acl import Acl

    name = paths.key_file(app, ident)
    path = module.local / name
    if not path.exists():
        raise CommandError(f"no key {app} {ident} in this world ({name})")
    data = path.read_bytes()
    raw = blobs.parse(data, name)
    h = raw.header
    detail = {"app": app, "ident": ident, "file": str(path), "name": h.plainname, "type": h.kind,
              "protection": _protection(module, h.protection, h.token), "owner_hash": h.token,
              "storage": nvram.storage_of(data, name), "blob_length": len(data),
              "recovery": "enabled" if h.recovery else "disabled", "acl": Acl.from_dict(h.acl).describe(),
              "hash": None, "usable": True, "problem": None}
    if h.protection == "module":
        problem = verify_problem(module, path, h.protection)
        detail["usable"], detail["problem"] = problem is None, problem
        if problem is None:
            detail["hash"] = module.load_key_file(path).key_hash
    return detail


def key_detail_lines(detail: dict) -> list[str]:
    rows = [("name", f"`{detail['name']}'"), ("type", detail["type"]), ("hash", detail["hash"] or
            ("(verified with its token loaded)" if detail["usable"] else "-")),
            ("protection", detail["protection"] + (f" {detail['owner_hash']}" if detail["owner_hash"] else "")),
            ("recovery", detail["recovery"].capitalize()), ("storage", detail["storage"]),
            ("blob length", str(detail["blob_length"])), ("file", detail["file"])]
    lines = [f"Key AppName {detail['app']} Ident {detail['ident']}"]
    lines += [f"  {label:<13} {value}" for label, value in rows]
    if detail["problem"]:
        lines.append(f"  UNUSABLE      {detail['problem']}")
    lines.append("  acl")
    lines += [f"    {line}" for line in detail["acl"]]
    return lines


def world_data(module) -> dict:
    from emulator.worldadmin import Place, module_files

    place = Place.of(module.kmdata)
    world_file = place.world_file()
    acs = world_file.acs
    return {"hknso": world_file.world.hknso, "hkm": acs["hkm"] if acs else None,
            "acs": {"hash": acs["hash"], "k": acs["k"], "n": acs["n"]} if acs else None,
            "created": world_file.world.created, "cipher_suite": world_file.world.cipher_suite,
            "modules": [m.esn for m in module_files(place.store)], "local": str(module.local)}


def key_list_data(module, app: str | None = None, ident: str | None = None) -> list[dict]:
    return [{"file": name, "app": key_app, "ident": key_ident, "name": plainname, "protection": protection,
             "owner_hash": owner, "storage": storage, "usable": not problem, "problem": problem}
            for name, key_app, key_ident, plainname, protection, owner, problem, storage, _kind in _key_rows(module)
            if (app is None or key_app == app) and (ident is None or key_ident == ident)]


def cardset_data(module) -> list[dict]:
    return [{"hash": c.hash, "name": c.name, "k": c.k, "n": c.n, "persistent": c.persistent,
             "timeout": c.timeout, "created": c.created} for c in module.cardsets.list()]


def softcard_data(module) -> list[dict]:
    from emulator import softcards

    return [{"hash": s.hash, "name": s.label, "pin_locked": s.user_locked, "created": s.created}
            for s in softcards.list_softcards(module)]


def add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


@command("nfkminfo", "world", "show the Security World, its modules, card sets, softcards and keys")
class NfkmInfo:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-w", "--world-info", action="store_true")
        p.add_argument("-k", "--key-list", nargs="*", metavar="APP [IDENT]", default=None,
                       help="list keys (of APP); with APP IDENT, that key's detail")
        p.add_argument("-l", "--name-list", action="store_true")
        p.add_argument("-c", "--cardset-list", action="store_true")
        p.add_argument("-s", "--softcard-list", action="store_true")
        p.add_argument("-v", "--verbose", action="store_true", help="each listed key's detail, as -k APP IDENT")
        p.add_argument("-m", "--module", type=int, default=1)
        add_json_option(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from . import keyref

        if args.key_list is not None and len(args.key_list) > 2:
            raise CommandError("-k takes at most APP and IDENT (or one pkcs11: URI)")
        module = existing_module()
        if args.key_list and keyref.is_uri(args.key_list[0]):
            if len(args.key_list) > 1:
                raise CommandError("-k takes one pkcs11: URI, or APP and IDENT")
            args.key_list = list(keyref.resolve_uri(args.key_list[0]))
        chosen = args.key_list is not None or args.name_list or args.cardset_list or args.softcard_list
        show_world = args.world_info or not chosen
        app, ident = (args.key_list or []) + [None] * (2 - len(args.key_list or []))
        detail = args.key_list is not None and ident is not None
        if args.json:
            doc: dict = {}
            if show_world:
                doc["world"] = world_data(module)
            if detail:
                doc["key"] = key_detail(module, app, ident)
            elif args.key_list is not None or args.name_list:
                rows = key_list_data(module, app)
                doc["keys"] = [key_detail(module, r["app"], r["ident"]) for r in rows] if args.verbose else rows
            if args.cardset_list:
                doc["cardsets"] = cardset_data(module)
            if args.softcard_list:
                doc["softcards"] = softcard_data(module)
            print_json(doc)
            return 0
        lines: list[str] = []
        if show_world:
            lines += world_lines(module)
        if detail:
            lines += key_detail_lines(key_detail(module, app, ident))
        elif args.key_list is not None:
            lines += key_lines(module, app)
        if args.name_list:
            lines += name_lines(module)
        if args.verbose and not detail and (args.key_list is not None or args.name_list):
            for row in key_list_data(module, app):
                lines += [""] + key_detail_lines(key_detail(module, row["app"], row["ident"]))
        if args.cardset_list:
            lines += cardset_lines(module)
        if args.softcard_list:
            lines += softcard_lines(module)
        print("\n".join(lines))
        return 0


def _resolve_key(module, spec: str) -> Path:
    """A kmdata file named by path, by name in kmdata/local, or (a key) by pkcs11: URI."""
    from . import keyref

    if keyref.is_uri(spec):
        from emulator import paths

        return module.local / paths.key_file(*keyref.resolve_uri(spec))
    path = Path(spec)
    if path.exists():
        return path
    candidate = module.local / spec
    if candidate.exists():
        return candidate
    raise CommandError(f"no kmdata file {spec}")


@command("kmfile-dump", "world", "dump a kmdata file readably (no secret material)")
class KmFileDump:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="a kmdata file (path or name), or a key's pkcs11: URI")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator import blobs, nvram
        from emulator.acl import Acl
        from emulator.errors import BlobInvalid

        module = existing_module()
        path = _resolve_key(module, args.file)
        data = path.read_bytes()
        print(f"{path.name}: {len(data)} bytes")
        if data[:4] == blobs.MAGIC or path.name.startswith("key_"):
            try:
                raw = blobs.parse(data, path.name)
                ref = nvram.reference_of(raw, path.name)
            except BlobInvalid as exc:
                raise CommandError(str(exc)) from None
            h = raw.header
            print(" type        key blob (softshield SSKB format 1, EMULATED)")
            for label, value in (("world", h.world), ("app", h.app), ("ident", h.ident), ("plainname", h.plainname),
                                 ("protection", _protection(module, h.protection, h.token)),
                                 ("token", h.token or "-"), ("kind", h.kind)):
                print(f" {label:<11} {value}")
            print(f" appdata     {len(base64.b64decode(h.appdata))} bytes (PKCS#11 attributes)")
            print(" recovery    " + (f"yes: {len(base64.b64decode(h.recovery))}-byte recovery blob under the world's "
                                     "recovery key (not shown)" if h.recovery else "no (no recovery blob)"))
            print(" acl:")
            for line in Acl.from_dict(h.acl).describe():
                print("   " + line)
            if ref is not None:
                print(f" storage     NVRAM of module {ref.esn} (this file holds the header and a reference)")
                print(f" sealed      in NVRAM, SHA-256 {ref.sealed_digest[:16]}...: not shown")
            else:
                print(" storage     kmdata")
                print(f" sealed      {len(raw.sealed)} bytes AES-256-GCM (nonce 12, tag 16): not shown")
            if h.protection != "module":
                print(" verified    not checked (needs its card set / softcard loaded)")
                return 0
            problem = verify_problem(module, path, h.protection)
            if problem:
                # The header above is as read, not as written: say so and fail.
                print(f" verified    NO: {problem}")
                raise CommandError(f"{path.name} does not load: {problem}")
            print(" verified    yes (tag checked under the world's module key)")
            return 0
        doc = blobs.json_object(data, f"{path.name}: not a kmdata file softshield knows")
        secret = {"module_key", "sealed", "knso_private", "km", "knso", "modules", "so", "user", "salt", "mac"}

        def show(value, indent):
            for key, item in sorted(value.items()):
                if key in secret:
                    print(f"{indent}{key:<12} (sealed / secret: not shown)")
                elif isinstance(item, dict):
                    print(f"{indent}{key}:")
                    show(item, indent + "  ")
                else:
                    text = str(item)
                    print(f"{indent}{key:<12} {text if len(text) < 100 else text[:60] + '... (' + str(len(text)) + ' chars)'}")

        show(doc, " ")
        return 0


@command("aclprint", "keys", "print a key's ACL")
class AclPrint:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-A", "--appname", default=os.environ.get("SOFTSHIELD_PRELOAD_KEY", ":").split(":")[0] or None)
        p.add_argument("-K", "--ident", default=os.environ.get("SOFTSHIELD_PRELOAD_KEY", ":").split(":")[1] or None,
                       help="the key's ident, or its pkcs11: URI (then no -A)")
        p.add_argument("file", nargs="?", help="or a key file, or a key's pkcs11: URI")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from emulator import blobs, nvram, paths
        from emulator.acl import Acl

        from . import keyref

        module = existing_module()
        if args.file:
            path = _resolve_key(module, args.file)
        elif keyref.is_uri(args.ident):
            path = module.local / paths.key_file(*keyref.resolve_uri(args.ident))
        elif args.appname and args.ident:
            path = module.local / paths.key_file(args.appname, args.ident)
        else:
            raise CommandError("name the key: -A APP -K IDENT, or a key file")
        if not path.exists():
            raise CommandError(f"no key {path.name}")
        raw = blobs.parse(path.read_bytes(), path.name)
        if raw.header.protection == "module":
            acl = module.load_key_file(path).acl  # authenticated: a tampered ACL is refused here
        else:
            acl = Acl.from_dict(raw.header.acl)
            print("(token-protected: ACL shown from the header, not verified without the token)")
        storage = nvram.storage_of(path.read_bytes(), path.name)
        if storage != "kmdata":
            print(f"Blob storage: {storage}")
        print(f"ACL of {path.name}:")
        for line in acl.describe():
            print(" " + line)
        return 0


def rocs_rows(module) -> list[dict]:
    """rocs' list: each card set and softcard with the keys it protects (all recoverable keys
    count in the bracket, as rocs prints them)."""
    from emulator import softcards

    # A key pair is one key (its public half is a file of its own): rocs counts private and secret keys.
    keys = [r for r in _key_rows(module) if not r[8].startswith("public")]
    rows = []
    for c in module.cardsets.list():
        owned = [r for r in keys if r[5] == c.hash]
        rows.append({"name": c.name, "kind": "cardset", "hash": c.hash, "keys": len(owned), "k": c.k, "n": c.n,
                     "persistent": c.persistent})
    for s in softcards.list_softcards(module):
        owned = [r for r in keys if r[5] == s.hash]
        rows.append({"name": s.label, "kind": "softcard", "hash": s.hash, "keys": len(owned), "k": None, "n": None,
                     "persistent": None})
    return rows


@command("rocs", "cards", "list the card sets and softcards of the world (rocs-style)")
class Rocs:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("--recover", metavar="OLD", help="recover the keys of card set or softcard OLD (lost) into "
                       "--to, with the ACS quorum (--pin-file); keys made with recovery=no stay behind")
        p.add_argument("--to", metavar="NEW", help="the card set that protects the recovered keys")
        p.add_argument("--to-pin-file", metavar="FILE", help="the cards (and PINs) of the --to card set")
        from .pins import add_pin_file_option

        add_pin_file_option(p)
        add_json_option(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        if args.recover:
            return _recover(args)
        rows = rocs_rows(existing_module())
        if args.json:
            print_json(rows)
            return 0
        print("No. Name                     Keys (recov) Sharing")
        for number, row in enumerate(rows, 1):
            sharing = (f"{row['k']} of {row['n']}{' persist' if row['persistent'] else ''}"
                       if row["kind"] == "cardset" else "(softcard)")
            print(f"{number:>3} {row['name']:<24} {row['keys']:>4} ({row['keys']:>4})  {sharing}")
        return 0


def _token_hash(module, name: str) -> str:
    from emulator import softcards
    from emulator.errors import EmulatorError

    for lookup in (lambda: module.cardsets.by_name(name).hash, lambda: softcards.by_name(module, name).hash):
        try:
            return lookup()
        except EmulatorError:
            continue
    raise CommandError(f"no card set or softcard `{name}' in this world")


def _recover(args: argparse.Namespace) -> int:
    """rocs' recovery: the ACS quorum re-protects a lost token's recoverable keys by another card set."""
    import sys

    from emulator import recovery, worldadmin
    from emulator.errors import EmulatorError

    from .pins import PinSource

    if not args.to or not args.to_pin_file:
        raise CommandError("--recover OLD needs --to NEW and --to-pin-file (the new card set's cards)")
    module = existing_module()
    old, new = _token_hash(module, args.recover), module.cardsets.by_name(args.to)
    place = worldadmin.Place.of(module.kmdata)
    world_file = place.world_file()
    if world_file.acs is None:
        raise CommandError("this Security World has no ACS: nothing can authorise a recovery")
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731 - card reading goes to stderr
    try:
        acs = worldadmin.acs_ref(world_file)
        _world, _km, knso = worldadmin.open_acs(place, PinSource(args.pin_file).cards(place.reader, acs.k), say)
        auth = module.cardsets.login(new.hash, PinSource(args.to_pin_file).cards(module.reader, new.k), say)
        outcomes = recovery.recover_token_keys(module, knso, old, auth)
    except EmulatorError as exc:
        raise CommandError(str(exc)) from None
    rows = [{"key": o.old, "recovered_as": o.new, "reason": o.reason or None} for o in outcomes]
    if args.json:
        print_json(rows)
    else:
        print(f"Recovering the keys of `{args.recover}' into card set `{args.to}' (ACS quorum):")
        for o in outcomes:
            print(f" {o.old}: " + (f"recovered as {o.new}" if o.new else f"NOT RECOVERED: {o.reason}"))
        if not outcomes:
            print(" (no keys)")
    refused = [o for o in outcomes if o.new is None]
    if refused:
        raise CommandError(f"{len(refused)} of {len(outcomes)} keys were not recovered (made with recovery=no)")
    return 0
