"""Network-attached modules: anonkneti, nethsmenroll, rfs-sync, and `hardserver permit`.

    softshield anonkneti HOST[:PORT]                     the module's ESN and KNETI hash, as it presents them
    softshield anonkneti [--kmdata DIR]                  our own module's (made on first need)
    softshield nethsmenroll [-p] HOST[:PORT] ESN KNETI-HASH [--kmdata DIR]
    softshield rfs-sync --setup HOST[:PORT] | --update | --commit [--kmdata DIR]
    softshield hardserver permit ... (softshield_cli/hardserver.py parses it; `permit` below runs it)

As with nShield Connect: read the module's ESN and KNETI hash on its front panel (here: `anonkneti`
on the module's host), give them to `nethsmenroll` on the client, which checks them against what the
module presents, makes the client's key, has the module issue its certificate, records the module in
`[nethsm_imports]` and prints the client's key hash; the module's administrator permits that hash.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emulator import netid, paths
from emulator.crypto import netid as netcrypto
from pkcs11_shim.hardserver import netconfig

from . import netclient
from .main import CommandError, command

FETCH_BATCH = 64


def _address(text: str) -> tuple[str, int]:
    try:
        return netconfig.split_address(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


@command("anonkneti", "setup", "print a module's ESN and KNETI hash (unauthenticated; our own without HOST)")
class Anonkneti:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("address", nargs="?", metavar="HOST[:PORT]", help="the module's hardserver (default port 9004)")
        p.add_argument("--kmdata", type=Path, default=None, help="without HOST: the module's kmdata")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        if args.address is None:
            kmdata = netclient.kmdata_of(args.kmdata)
            identity = netid.module_identity(kmdata, netid.module_esn(kmdata))
            print(f"{identity.name} {identity.key_hash}")
            return 0
        host, port = _address(args.address)
        with netclient.connect(host, port, None) as conn:
            print(f"{conn.esn} {conn.kneti_hash}")
        return 0


@command("nethsmenroll", "setup", "enrol this client with a network-attached module (pins its KNETI hash)")
class Nethsmenroll:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-p", "--privileged", action="store_true",
                       help="ask for a privileged connection (the module's [hs_clients] decides)")
        p.add_argument("address", metavar="HOST[:PORT]")
        p.add_argument("esn", metavar="ESN")
        p.add_argument("kneti_hash", metavar="KNETI-HASH")
        p.add_argument("--kmdata", type=Path, default=None, help="the client's kmdata (default: NFAST_KMDATA)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        host, port = _address(args.address)
        if not paths.ESN_RE.match(args.esn):
            raise CommandError(f"{args.esn!r} is not an ESN (XXXX-XXXX-XXXX)")
        if not paths.HASH_RE.match(args.kneti_hash):
            raise CommandError(f"{args.kneti_hash!r} is not a KNETI hash (40 lowercase hex digits)")
        kmdata = netclient.kmdata_of(args.kmdata)
        folder = netid.client_dir(kmdata)
        key = netid.client_key(folder)
        key_hash = netcrypto.key_hash_of_private(key)
        with netclient.connect(host, port, args.kneti_hash) as conn:
            if conn.esn != args.esn:
                raise CommandError(f"{host}:{port} is module {conn.esn}, not {args.esn}: refused")
            answer = conn.request({"op": "enroll", "public_key": netclient.b64(netcrypto.public_key_pem(key))})
        import base64

        cert = base64.b64decode(answer["cert"])
        if netcrypto.key_hash_of_cert(cert) != key_hash:
            raise CommandError("the module issued a certificate for another key: refused")
        netid.store_client_certificate(folder, args.esn, cert)
        with netconfig.editing(netconfig.config_path(kmdata)) as config:
            imports = config.entries("nethsm_imports")
            kept = [e for e in imports if not (e.get("remote_ip") == host and e.get("remote_port") == str(port))
                    and e.get("remote_esn") != args.esn]
            numbers = {int(e.get("local_module", "0") or 0) for e in kept}
            local = next(n for n in range(1, len(kept) + 2) if n not in numbers)
            kept.append({"local_module": str(local), "remote_esn": args.esn, "remote_ip": host,
                         "remote_port": str(port), "keyhash": args.kneti_hash,
                         "privileged": "yes" if args.privileged else "no"})
            imports[:] = kept
        print("OK configuring hardserver's nethsm imports")
        print(f"client key hash: {key_hash}")
        print(f"on the module: softshield hardserver permit {key_hash}{' --privileged' if args.privileged else ''}")
        return 0


def permit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="softshield hardserver permit",
                                description="edit the module's permitted-client list ([hs_clients])")
    p.add_argument("keyhash", nargs="?", help="the client's key hash (nethsmenroll prints it)")
    p.add_argument("--kmdata", type=Path, default=None, help="the module's kmdata (default: NFAST_KMDATA)")
    p.add_argument("--privileged", action="store_true", help="the client may run world administration")
    p.add_argument("--addr", default="0.0.0.0", help="the only address it may connect from (default: any)")
    p.add_argument("--until", default="", metavar="DATE", help="no connection after this UTC time "
                                                              "(YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)")
    p.add_argument("--revoke", metavar="KEYHASH", default=None, help="take this client off the list")
    p.add_argument("--list", action="store_true", help="print the permitted clients")
    return p


def permit(argv: list[str], kmdata: Path | None = None) -> int:
    """`softshield hardserver permit ...`: edit [hs_clients] in the module's config."""
    if argv[0] != "permit":
        raise CommandError(f"unknown hardserver subcommand {argv[0]!r} (one: permit)")
    args = permit_parser().parse_args(argv[1:])
    path = netconfig.config_path(args.kmdata or kmdata)
    if args.list:
        for entry in netconfig.read(path).entries("hs_clients"):
            until = entry.get("validity") or "no limit"
            print(f"{entry.get('keyhash')} {entry.get('clientperm')} from {entry.get('addr') or 'any'} until {until}")
        return 0
    target = args.revoke or args.keyhash
    if target is None or not paths.HASH_RE.match(target):
        raise CommandError("give the client's key hash (40 lowercase hex digits): permit KEYHASH or --revoke KEYHASH")
    until = ""
    if args.until:
        try:
            until = netconfig.format_time(netconfig.parse_time(args.until))
        except ValueError as exc:
            raise CommandError(f"--until: {exc}") from None
    with netconfig.editing(path) as config:
        clients = config.entries("hs_clients")
        revoked = config.entries("revoked_clients")
        clients[:] = [e for e in clients if e.get("keyhash") != target]
        revoked[:] = [e for e in revoked if e.get("keyhash") != target]
        if args.revoke:
            revoked.append({"keyhash": target, "revoked": netconfig.format_time(netconfig.utc_now())})
        else:
            clients.append({"addr": args.addr, "clientperm": "priv" if args.privileged else "unpriv",
                            "keyhash": target, "validity": until})
    if args.revoke:
        print(f"client key {target} revoked")
    else:
        print(f"client key {target} permitted ({'priv' if args.privileged else 'unpriv'}) from "
              f"{args.addr}{' until ' + until if until else ''}")
    return 0


@command("rfs-sync", "setup", "pull or commit this world's kmdata from its RFS (a hardserver --rfs)")
class RfsSync:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--setup", metavar="HOST[:PORT]", help="use this enrolled module's hardserver as the RFS")
        group.add_argument("--update", action="store_true", help="pull what changed on the RFS")
        group.add_argument("--commit", action="store_true", help="push what changed here since the last update")
        p.add_argument("--kmdata", type=Path, default=None, help="this host's kmdata (default: NFAST_KMDATA)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        kmdata = netclient.kmdata_of(args.kmdata)
        if args.setup:
            return _setup(kmdata, *_address(args.setup))
        host, port = _rfs_address(kmdata)
        with netclient.enrolled_connection(kmdata, host, port) as conn:
            return _update(kmdata, conn) if args.update else _commit(kmdata, conn)


def _setup(kmdata: Path, host: str, port: int) -> int:
    with netclient.enrolled_connection(kmdata, host, port) as conn:
        answer = conn.request({"op": "rfs-manifest"})
    with netconfig.editing(netconfig.config_path(kmdata)) as config:
        config.entries("rfs_sync_client")[:] = [{"remote_ip": host, "remote_port": str(port),
                                                 "remote_esn": conn.esn, "use_kneti": "yes"}]
    print(f"RFS {host}:{port} (module {conn.esn}, world {answer['hknso']}): {len(answer['files'])} file(s); "
          "rfs-sync --update pulls them")
    return 0


def _rfs_address(kmdata: Path) -> tuple[str, int]:
    entries = netconfig.read(netconfig.config_path(kmdata)).entries("rfs_sync_client")
    if not entries:
        raise CommandError(f"no RFS set up for {kmdata}: run rfs-sync --setup HOST[:PORT] first")
    return entries[0]["remote_ip"], int(entries[0].get("remote_port") or netconfig.DEFAULT_PORT)


def _mirror(kmdata: Path, hknso: str):
    """This host's copy: through its module's store (ledger attached) when a module of this host is
    enrolled in the world; a client host without a module (module files never travel) syncs files only."""
    from emulator.errors import WorldStateError
    from emulator.kmdata import KmStore
    from emulator.module import Module
    from emulator.rfs import Mirror
    from emulator.world import WorldFile

    store = KmStore(paths.local_dir(kmdata))
    if not paths.world_exists(kmdata):
        return Mirror(store, kmdata)
    held = WorldFile.from_bytes(store.read(paths.WORLD_FILE)).world.hknso
    if held != hknso:
        raise CommandError(f"{kmdata} holds world {held}, the RFS world {hknso}: refused "
                           "(sync into an empty kmdata, or one of the same world)")
    try:
        return Mirror(Module.open(kmdata)._store, kmdata)
    except WorldStateError:  # no module of this host is enrolled: a client host
        return Mirror(store, kmdata)


def _update(kmdata: Path, conn: netclient.Connection) -> int:
    import base64

    from emulator.rfs import SyncError

    answer = conn.request({"op": "rfs-manifest"})
    remote: dict[str, str] = answer["files"]
    mirror = _mirror(kmdata, answer["hknso"])
    try:
        fetch, delete, kept = mirror.plan_update(remote)
        files: dict[str, bytes] = {}
        for start in range(0, len(fetch), FETCH_BATCH):
            got = conn.request({"op": "rfs-fetch", "names": fetch[start:start + FETCH_BATCH]})["files"]
            files.update({name: base64.b64decode(data) for name, data in got.items()})
        saved = mirror.apply_update(remote, files, delete)
    except SyncError as exc:
        raise CommandError(str(exc)) from None
    for path in saved:
        print(f"changed here and on the RFS: took the RFS's version; yours is kept as {path}")
    print(f"rfs-sync: {len(files)} file(s) updated, {len(delete)} deleted, {len(kept)} local change(s) to commit")
    return 0


def _commit(kmdata: Path, conn: netclient.Connection) -> int:
    from emulator.rfs import SyncError

    answer = conn.request({"op": "rfs-manifest"})
    mirror = _mirror(kmdata, answer["hknso"])
    try:
        changes = mirror.changes()
    except SyncError as exc:
        raise CommandError(str(exc)) from None
    if not changes:
        print("rfs-sync: nothing to commit")
        return 0
    written = conn.request({"op": "rfs-commit", "changes": [
        {"name": c.name, "base": c.base, "data": None if c.data is None else netclient.b64(c.data)}
        for c in changes]})["written"]
    mirror.committed(written)
    print(f"rfs-sync: committed {len(written)} file(s): {', '.join(sorted(written))}")
    return 0
