"""`softshield security-domain export | restore`: world backup with a quorum (emulator/backup.py).

    export --sd-wrapping-keys c0.cer c1.cer c2.cer --sd-quorum 2 --security-domain-file sd.json
    restore --sd-file sd.json --sd-wrapping-keys k0.pem k2.pem [--passwords P0 P2]   (into an empty kmdata)

The flags are the Azure CLI's (`az keyvault security-domain download` / `upload`); the shorter
--certificates/--quorum/--out and --in/--keys are the same options.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emulator import backup, paths
from emulator.errors import AuthenticationFailed, EmulatorError
from emulator.module import Module

from .main import CommandError, command
from .progress import Progress


def _read(name: str) -> tuple[str, bytes]:
    try:
        return name, Path(name).read_bytes()
    except OSError as exc:
        raise CommandError(f"{name}: {exc.strerror}") from None


@command("security-domain", "byok", "back up the world to a quorum of RSA keys (export) and restore it")
class SecurityDomain:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        sub = p.add_subparsers(dest="sd_command", required=True, metavar="ACTION")
        e = sub.add_parser("export", help="encrypt the world's secrets to 3..10 certificates, quorum 2..N")
        e.add_argument("--sd-wrapping-keys", "--certificates", dest="certificates", nargs="+", required=True,
                       metavar="CERT", help="3..10 RSA certificates (PEM or DER), one per share holder")
        e.add_argument("--sd-quorum", "--quorum", dest="quorum", type=int, required=True, metavar="N",
                       help="how many holders' keys a restore needs (2..number of certificates)")
        e.add_argument("--security-domain-file", "--out", dest="out", required=True, metavar="FILE",
                       help="security domain file to write (JSON)")
        r = sub.add_parser("restore", help="restore the world into an empty kmdata with a quorum of private keys")
        r.add_argument("--sd-file", "--in", dest="infile", required=True, metavar="FILE", help="security domain file")
        r.add_argument("--sd-wrapping-keys", "--keys", dest="keys", nargs="+", required=True, metavar="KEY",
                       help="PEM private keys matching the certificates (a quorum of them)")
        r.add_argument("--passwords", nargs="+", default=[], metavar="PASSWORD",
                       help="passwords of encrypted PEM keys, in the order of --sd-wrapping-keys")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        kmdata = paths.resolve_kmdata()
        try:
            if args.sd_command == "export":
                certificates = [_read(c) for c in args.certificates]
                steps = len(certificates) + len(backup.export_names(kmdata))
                with Progress("security-domain export", total=steps, unit="items") as progress:
                    sd = backup.export_security_domain(kmdata, certificates, args.quorum, progress.advance)
                Path(args.out).write_text(json.dumps(sd, indent=1) + "\n")
                print(f"Security domain of world {sd['world']['hknso']}: {len(sd['EncData']['data'])} items, "
                      f"{len(args.certificates)} shares, quorum {args.quorum}: {args.out}")
                print("Result: SUCCESS")
                return 0
            try:
                sd = json.loads(Path(args.infile).read_bytes())
            except (OSError, ValueError) as exc:
                raise CommandError(f"--sd-file {args.infile}: not a security domain file ({exc})") from None
            if len(args.passwords) > len(args.keys):
                raise CommandError(f"{len(args.passwords)} passwords for {len(args.keys)} keys (--passwords)")
            passwords = [p.encode() if p else None for p in args.passwords]
            names = backup.restore_security_domain(kmdata, sd, [_read(k) for k in args.keys], passwords)
            module = Module.open(kmdata)
            loaded, skipped = 0, 0
            for name in names:
                if not name.startswith(paths.KEY_PREFIX):
                    continue
                try:
                    module.load_key_file(module.local / name)
                    loaded += 1
                except AuthenticationFailed:
                    skipped += 1  # token-protected: loads once its token is logged in
            print(f"World {module.world.hknso} restored into {kmdata} on module {module.esn}: "
                  f"{loaded} module-protected keys load" + (f", {skipped} token-protected" if skipped else ""))
            print("Result: SUCCESS")
            return 0
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None
