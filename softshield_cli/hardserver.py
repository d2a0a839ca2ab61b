"""`softshield hardserver`: serve the module to many processes on a local socket (nShield's hardserver).

    softshield hardserver [--socket PATH] [--library SO] [--kmdata DIR] [--idle-timeout S] [--workers N]
                          [--log-level info]
    softshield hardserver --stop [--socket PATH]
    softshield hardserver [...] --listen HOST[:PORT] [--rfs]      (also serve enrolled clients over mutual TLS)
    softshield hardserver permit [--kmdata DIR] KEYHASH [--privileged] [--addr IP] [--until DATE]
    softshield hardserver permit [--kmdata DIR] --revoke KEYHASH | --list

build/libsoftshield-pkcs11.so forwards here from every process it does not embed the module into
(a host running another Python, or SOFTSHIELD_MODE=hardserver), and starts this command itself when
nobody listens; build/libsoftshield-client.so always forwards. Every PKCS#11 call is answered by the
one module this process owns. SIGTERM, Ctrl-C or `--stop` closes every client's sessions and
finalizes the module; with an idle timeout the server does the same once it has had no client for
that long. With `--listen`, clients on other hosts enrolled with `softshield nethsmenroll` and
permitted with `softshield hardserver permit` are served too (pkcs11_shim.hardserver.network), and
with `--rfs` this server is the world's remote file system for `softshield rfs-sync` (docs/network.md).
With more than one worker (default: one per core), a dispatcher process accepts and hands each client
process to one worker process, each a module over the same kmdata (pkcs11_shim.hardserver.dispatch);
`--workers 1` serves every client from this one process.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .main import CommandError, command

if TYPE_CHECKING:
    from pkcs11_shim.hardserver.network import NetworkListener


@command("hardserver", "setup", "serve the module to many processes on a Unix socket (client mode)")
class Hardserver:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        from pkcs11_shim.hardserver.server import DEFAULT_LIBRARY, default_socket_path

        p.add_argument("--socket", type=Path, default=None,
                       help=f"socket path (default: SOFTSHIELD_HARDSERVER, else {default_socket_path()})")
        p.add_argument("--library", type=Path, default=None,
                       help=f"the in-process library the server runs (default: SOFTSHIELD_PKCS11_LIB, else {DEFAULT_LIBRARY})")
        p.add_argument("--kmdata", type=Path, default=None, help="kmdata directory (default: NFAST_KMDATA or config)")
        p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
        p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                       help="exit after this long without clients (default: SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT, "
                            "else 0 = never; a server the library starts uses 300)")
        p.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes, each a module over the same kmdata (default: "
                            "SOFTSHIELD_HARDSERVER_WORKERS, else one per core; 1 = this process serves alone)")
        p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)  # the starting library's pipe
        p.add_argument("--stop", action="store_true", help="stop the server on the socket (its pid file) and exit")
        p.add_argument("--listen", metavar="HOST[:PORT]", default=None,
                       help="also serve enrolled clients over mutual TLS 1.3 on this address (default port 9004)")
        p.add_argument("--rfs", action="store_true", help="with --listen: be the RFS of this world (rfs-sync)")
        p.add_argument("subcommand", nargs=argparse.REMAINDER, metavar="permit ...",
                       help="permit: edit the permitted-client list ([hs_clients] in <kmdata>/config/config); "
                            "`softshield hardserver permit --help` lists its options")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from pkcs11_shim.hardserver import server

        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s hardserver %(levelname)s %(message)s")
        if args.kmdata is not None:
            os.environ["NFAST_KMDATA"] = str(args.kmdata)  # read by the module at C_Initialize
        if args.subcommand:
            from .netcmds import permit

            return permit(args.subcommand, args.kmdata)
        socket_path = args.socket or Path(os.environ.get("SOFTSHIELD_HARDSERVER") or server.default_socket_path())
        if args.stop:
            try:
                pid = server.stop_running(socket_path)
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
            print(f"hardserver {pid} on {socket_path} stopped")
            return 0
        library = args.library or Path(os.environ.get("SOFTSHIELD_PKCS11_LIB") or server.DEFAULT_LIBRARY)
        if not library.is_file():
            raise CommandError(f"no library at {library}: build it with make")
        idle = args.idle_timeout
        if idle is None:
            idle = _idle_from_config()
        workers = args.workers if args.workers is not None else _workers_from_config()
        if workers < 1:
            raise CommandError(f"--workers {workers}: give 1 or more")
        network = _network(args, socket_path)
        try:
            if workers > 1:  # this process accepts and hands each client to one of `workers` module processes
                from pkcs11_shim.hardserver.dispatch import Dispatcher

                return Dispatcher(socket_path, library, idle, workers, network).run(args.ready_fd)
            return server.run(socket_path, library, idle_timeout=idle, ready_fd=args.ready_fd, network=network)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None


def _network(args: argparse.Namespace, socket_path: Path) -> NetworkListener | None:
    """The network listener --listen asks for (opened by the server once its socket is bound)."""
    if args.listen is None:
        if args.rfs:
            raise CommandError("--rfs needs --listen HOST[:PORT]: the RFS is served over the network channel")
        return None
    from emulator.paths import resolve_kmdata
    from pkcs11_shim.hardserver import netconfig
    from pkcs11_shim.hardserver.network import NetworkListener

    try:
        host, port = netconfig.split_address(args.listen)
    except ValueError as exc:
        raise CommandError(f"--listen: {exc}") from None
    return NetworkListener(host, port, resolve_kmdata(), socket_path, rfs=args.rfs)


def _idle_from_config() -> float:
    from pkcs11_shim.config import rc_value

    value = os.environ.get("SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT") or rc_value("SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT")
    try:
        return float(value) if value else 0.0
    except ValueError:
        raise CommandError(f"SOFTSHIELD_HARDSERVER_IDLE_TIMEOUT={value} is not a number of seconds") from None


def _workers_from_config() -> int:
    """SOFTSHIELD_HARDSERVER_WORKERS (environment, else cknfastrc), else the cores we may run on."""
    from pkcs11_shim.config import rc_value

    value = os.environ.get("SOFTSHIELD_HARDSERVER_WORKERS") or rc_value("SOFTSHIELD_HARDSERVER_WORKERS")
    if not value:
        return len(os.sched_getaffinity(0))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise CommandError(f"SOFTSHIELD_HARDSERVER_WORKERS={value} is not a number of workers (1 or more)")
    return count
