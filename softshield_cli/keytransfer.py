"""`softshield keytransfer -ModifyAcls | -Package ...` (KeyTransferRemote.exe, nshield-workflow.md §4).

-ModifyAcls: with the ACS quorum (cards in the reader, PINs from --pin-file) write
`key_xferacld_<ident>`, a copy of `key_<app>_<ident>` that permits nothing but being wrapped by the
packaged KEK. -Package: wrap that copy with CKM_RSA_AES_KEY_WRAP under the KEK into
`TransferPackage-<name>.byok` (vendor-neutral JSON) and `KeyTransferPackage-<name>.byok` (our
legacy-style package) in the current folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emulator import paths, transfer
from emulator.errors import EmulatorError
from emulator.module import Module

from .main import CommandError, command
from .pins import PinSource, add_pin_file_option
from .verifykeypackage import verify


def present_cards(kmdata: Path, pin_file: str | None) -> list[tuple[Path, bytes]]:
    """The ACS cards presented, through the PIN contract every card-reading command shares."""
    from emulator import worldadmin

    place = worldadmin.Place.of(kmdata)
    world_file = place.world_file()
    if world_file is None or world_file.acs is None:
        return []  # present_acs_quorum says why no quorum can be had
    return PinSource(pin_file).cards(place.reader, worldadmin.acs_ref(world_file).k)


@command("keytransfer", "byok", "reduce a key's ACL for a KEK (-ModifyAcls) and package it (-Package)")
class KeyTransfer:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        mode = p.add_mutually_exclusive_group(required=True)
        mode.add_argument("-ModifyAcls", action="store_true", help="write key_xferacld_IDENT (needs the ACS quorum)")
        mode.add_argument("-Package", action="store_true", help="write TransferPackage-NAME.byok")
        p.add_argument("-KeyAppName", default="simple", help="app of the key to transfer (default simple)")
        p.add_argument("-KeyIdentifier", required=True, help="ident of the key")
        p.add_argument("-ExchangeKeyPackage", required=True, help="BYOK-KEK-pkg-REGION-1")
        p.add_argument("-NewSecurityWorldPackage", required=True, help="BYOK-SecurityWorld-pkg-REGION-1")
        p.add_argument("-SubscriptionId", help="-Package: subscription the key is for")
        p.add_argument("-KeyFriendlyName", help="-Package: name of the output file")
        p.add_argument("-OaepHash", default="SHA-1", choices=sorted(transfer.OAEP_HASHES),
                       help="-Package: OAEP hash of the RSA part (SHA-1, as the published spec says)")
        add_pin_file_option(p)
        p.add_argument("--root-hash", help="pin this vendor root hash when verifying the packages")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            target = verify(args.ExchangeKeyPackage, args.NewSecurityWorldPackage, args.root_hash)
        except EmulatorError as exc:
            raise CommandError(f"the packages do not verify: {exc}") from None
        module = Module.open()
        try:
            if args.ModifyAcls:
                return _modify_acls(module, args, target)
            return _package(module, args, target)
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None


def transfer_attributes(source) -> bytes:
    """The copy's PKCS#11 view of its reduced ACL: no usage, wrappable only by a trusted key
    (CKA_WRAP_WITH_TRUSTED), neither copyable nor modifiable. Empty for keys made without PKCS#11."""
    from pkcs11_shim.attributes import codecs
    from pkcs11_shim.constants import Attribute as A

    if not source.appdata:
        return b""
    attrs = codecs.deserialize(source.appdata)
    for attr in (A.ENCRYPT, A.DECRYPT, A.SIGN, A.SIGN_RECOVER, A.VERIFY, A.VERIFY_RECOVER, A.WRAP, A.UNWRAP,
                 A.DERIVE, A.COPYABLE, A.MODIFIABLE):
        if attr in attrs:
            attrs[attr] = False
    attrs.update({A.EXTRACTABLE: True, A.WRAP_WITH_TRUSTED: True, A.SENSITIVE: True})
    attrs[A.LABEL] = f"{attrs.get(A.LABEL, source.ident)} (transfer copy)"
    return codecs.serialize(attrs)


def _modify_acls(module: Module, args: argparse.Namespace, target) -> int:
    source = transfer.read_key_file(module, args.KeyAppName, args.KeyIdentifier)
    presented = present_cards(module.kmdata, args.pin_file)
    authority = transfer.present_acs_quorum(module.kmdata, presented, print)
    copy = transfer.make_transfer_copy(module, source, target, authority, transfer_attributes(source))
    print(f"Reduced copy of {paths.key_file(source.app, source.ident)} written: {copy.file_path}")
    for line in copy.acl.describe():
        print(line)
    print("Result: SUCCESS")
    return 0


def _package(module: Module, args: argparse.Namespace, target) -> int:
    if not args.SubscriptionId or not args.KeyFriendlyName:
        raise CommandError("-Package needs -SubscriptionId and -KeyFriendlyName")
    ident = args.KeyIdentifier
    name = transfer.transfer_file_name(ident)
    if not (module.local / name).exists():
        raise CommandError(f"no {name}: key {ident} has not been prepared with -ModifyAcls "
                           "(a key straight from generatekey is never packaged)")
    copy = transfer.read_key_file(module, transfer.TRANSFER_APP, ident)
    ciphertext = transfer.wrap_for_transfer(module, copy, target, args.OaepHash)
    neutral = Path(f"TransferPackage-{args.KeyFriendlyName}.byok")
    legacy = Path(f"KeyTransferPackage-{args.KeyFriendlyName}.byok")
    transfer.write_json(neutral, transfer.neutral_package(target, ciphertext, module.esn, args.OaepHash))
    transfer.write_json(legacy, transfer.legacy_package(target, ciphertext, copy, module.world.hknso, module.esn,
                                                        args.SubscriptionId, args.KeyFriendlyName, args.OaepHash))
    print(f"Key {ident} wrapped for KEK {target.kek_hash} (world {target.hknso}) with CKM_RSA_AES_KEY_WRAP, "
          f"OAEP {args.OaepHash}")
    print(f"Transfer package: {neutral.resolve()}")
    print(f"Legacy-style package: {legacy.resolve()}")
    print("Result: SUCCESS")
    return 0
