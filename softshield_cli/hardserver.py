"""`softshield hardserver`: serve the module to many processes on a local socket (nShield's hardserver).

    softshield hardserver [--socket PATH] [--library SO] [--kmdata DIR] [--log-level info]

Clients load build/libsoftshield-client.so (C only, no Python in the host) with
SOFTSHIELD_HARDSERVER=PATH (or SOFTSHIELD_HARDSERVER=PATH in cknfastrc); every PKCS#11 call is
forwarded here and answered by the one module this process owns. SIGTERM or Ctrl-C closes every
client's sessions and finalizes the module.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from .main import CommandError, command


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

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from pkcs11_shim.hardserver import server

        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s hardserver %(levelname)s %(message)s")
        if args.kmdata is not None:
            os.environ["NFAST_KMDATA"] = str(args.kmdata)  # read by the module at C_Initialize
        socket_path = args.socket or Path(os.environ.get("SOFTSHIELD_HARDSERVER") or server.default_socket_path())
        library = args.library or Path(os.environ.get("SOFTSHIELD_PKCS11_LIB") or server.DEFAULT_LIBRARY)
        if not library.is_file():
            raise CommandError(f"no library at {library}: build it with make")
        try:
            return server.run(socket_path, library)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
