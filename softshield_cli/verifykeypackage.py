"""`softshield verifykeypackage -k KEKPKG -w WORLDPKG [--root-hash HASH]` (verifykeypackage.py).

Checks the signer chain of both packages up to the pinned (emulated) vendor root, that the KEK is
non-exportable and import-only, and that it was generated in a module of the packaged world.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emulator import attestation, vendor_root
from emulator.errors import EmulatorError

from .main import command


def verify(kek: str, world: str, root_hash: str | None) -> attestation.VerifiedTarget:
    """The verified target, or EmulatorError naming the failed check (used by keytransfer too)."""
    pinned = vendor_root.pinned_root_hash(root_hash)
    return attestation.verify_files(Path(kek), Path(world), pinned)


@command("verifykeypackage", "byok", "verify a KEK package and Security World package against the pinned root")
class VerifyKeyPackage:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-k", "--kek-package", required=True, help="BYOK-KEK-pkg-REGION-1")
        p.add_argument("-w", "--world-package", required=True, help="BYOK-SecurityWorld-pkg-REGION-1")
        p.add_argument("--root-hash", help="pin this root key hash (40 hex, spaces allowed) instead of the shipped one")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        pinned = vendor_root.pinned_root_hash(args.root_hash)
        print(f"Pinned root key ({vendor_root.ROOT_NAME}, EMULATED) hash: {vendor_root.format_hash(pinned)}")
        try:
            target = attestation.verify_files(Path(args.kek_package), Path(args.world_package), pinned)
        except EmulatorError as exc:
            print(f"Result: FAILED: {exc}")
            return 1
        print(f"Security World hknso: {target.hknso} (region {target.region})")
        print(f"Module ESN {target.esn}: warrant signed by the pinned root")
        print(f"Key Exchange Key hash: {target.kek_hash}: non-exportable, import (unwrap) only, "
              "generated in a module of this world")
        print("Result: SUCCESS")
        sys.stdout.flush()
        return 0
