"""`softshield keytransfer -ModifyAcls | -Package ...` (KeyTransferRemote.exe).

Both go through the PKCS#11 library, as the vendor's tool goes through the module:
-ModifyAcls: the SO logs in to the accelerator slot with the ACS quorum (C_LoginBegin/Next/End,
CKU_SO; cards and PINs from --pin-file), imports the KEK's public key as a trusted wrapping key
(CKA_TRUSTED) and C_CopyObject's the key to `key_xferacld_<ident>`: no usage, CKA_WRAP_WITH_TRUSTED,
its ACL one group {ExportAsBlob} limited to the KEK's hash. -Package: C_WrapKey of that copy with
CKM_RSA_AES_KEY_WRAP under the trusted KEK, written as `TransferPackage-<name>.byok` (the
vendor-neutral JSON a vault imports); `-InternalPackage` adds our legacy-style record beside it
(`KeyTransferPackage-<name>.internal.json`), never another `.byok`.

The KEK is either a signed KEK package with its Security World package (verified against the
pinned vendor root), or the vault's own public key (-KekFile: PEM or JWK, emulator/cloudkek.py).
Only module-protected keys transfer, as with nShield's tool.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from emulator import blobs, cloudkek, paths, transfer
from emulator.crypto import components
from emulator.crypto.material import PublicMaterial
from emulator.errors import EmulatorError
from emulator.module import Module
from pkcs11_shim.constants import CKA_SOFTSHIELD_WRAP_KEY_HASH

from . import p11client
from .main import CommandError, command
from .pins import PinSource, add_pin_file_option
from .verifykeypackage import verify

#: Usage attributes the transfer copy turns off (each only where the source has it set).
USAGE = ("ENCRYPT", "DECRYPT", "SIGN", "SIGN_RECOVER", "VERIFY", "VERIFY_RECOVER", "WRAP", "UNWRAP", "DERIVE")


def require_acs(kmdata: Path) -> Any:
    """The world's file, which must have an Administrator Card Set: its quorum authorises a transfer."""
    from emulator import worldadmin

    world_file = worldadmin.Place.of(kmdata).world_file()
    if world_file is None or world_file.acs is None:
        raise CommandError("this Security World has no Administrator Card Set (make one with "
                           "`softshield new-world --initialize --acs-quorum=K/N`): no quorum can authorise the transfer")
    return world_file


def present_cards(kmdata: Path, pin_file: str | None) -> list[tuple[Path, bytes]]:
    """The ACS cards presented, through the PIN contract every card-reading command shares."""
    from emulator import worldadmin

    world_file = require_acs(kmdata)
    return PinSource(pin_file).cards(worldadmin.Place.of(kmdata).reader, worldadmin.acs_ref(world_file).k)


@command("keytransfer", "byok", "reduce a key's ACL for a KEK (-ModifyAcls) and package it (-Package)")
class KeyTransfer:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        mode = p.add_mutually_exclusive_group(required=True)
        mode.add_argument("-ModifyAcls", action="store_true", help="write key_xferacld_IDENT (needs the ACS quorum)")
        mode.add_argument("-Package", action="store_true", help="write TransferPackage-NAME.byok")
        p.add_argument("-KeyAppName", default="simple", help="app of the key to transfer (default simple)")
        p.add_argument("-KeyIdentifier", required=True, help="ident of the key, or its pkcs11: URI (then no -KeyAppName)")
        p.add_argument("-ExchangeKeyPackage", help="BYOK-KEK-pkg-REGION-1 (with -NewSecurityWorldPackage)")
        p.add_argument("-NewSecurityWorldPackage", help="BYOK-SecurityWorld-pkg-REGION-1")
        p.add_argument("-KekFile", help="the vault's KEK instead of packages: PEM public key "
                       "(az keyvault key download) or JSON Web Key (az keyvault key show)")
        p.add_argument("-KekKid", help="the KEK's kid (required with a PEM -KekFile; else taken from the JWK)")
        p.add_argument("-SubscriptionId", help="-Package: subscription the key is for")
        p.add_argument("-KeyFriendlyName", help="-Package: name of the output file")
        p.add_argument("-InternalPackage", action="store_true", help="-Package: also write softshield's legacy-style "
                       "record KeyTransferPackage-NAME.internal.json (packages only)")
        p.add_argument("-OaepHash", default="SHA-1", choices=sorted(transfer.OAEP_HASHES),
                       help="-Package: OAEP hash of the RSA part (SHA-1, as the published spec says)")
        add_pin_file_option(p)
        p.add_argument("--root-hash", help="pin this vendor root hash when verifying the packages")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        target = transfer_target(args.ExchangeKeyPackage, args.NewSecurityWorldPackage, args.KekFile, args.KekKid,
                                 args.root_hash)
        module = open_module()
        from . import keyref

        if keyref.is_uri(args.KeyIdentifier):
            args.KeyAppName, args.KeyIdentifier = keyref.resolve_uri(args.KeyIdentifier)
        try:
            if args.ModifyAcls:
                return _modify_acls(module, args, target)
            return _package(module, args, target)
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None


def transfer_target(kek_package: str | None, world_package: str | None, kek_file: str | None,
                    kek_kid: str | None, root_hash: str | None) -> Any:
    """The KEK a transfer is for: a vault KEK file, or a verified package pair (never both)."""
    if kek_file:
        if kek_package or world_package:
            raise CommandError("give either -KekFile or -ExchangeKeyPackage with -NewSecurityWorldPackage, not both")
        try:
            return cloudkek.read_kek(kek_file, kek_kid)
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None
    if kek_kid:
        raise CommandError("-KekKid goes with -KekFile")
    if not (kek_package and world_package):
        raise CommandError("name the KEK: -KekFile FILE, or -ExchangeKeyPackage with -NewSecurityWorldPackage")
    try:
        return verify(kek_package, world_package, root_hash)
    except EmulatorError as exc:
        raise CommandError(f"the packages do not verify: {exc}") from None


def open_module() -> Module:
    """The module of an existing world: a transfer never starts a new one."""
    from .inspect import existing_module

    return existing_module()


#: nShield's tool transfers only module-protected keys; a card-set or softcard key is refused so.
PROTECTION_TEXT = {"token": "an Operator Card Set", "softcard": "a softcard"}


def require_module_protected(module: Module, app: str, ident: str) -> None:
    """Refuse, with the reason, a key that does not exist or is not module-protected."""
    name = paths.key_file(app, ident)
    path = module.local / name
    if not path.exists():
        raise CommandError(f"no {name} in this world (make it with generatekey)")
    header = blobs.parse(path.read_bytes(), name).header
    if header.protection != "module":
        raise CommandError(f"{name} is protected by {PROTECTION_TEXT.get(header.protection, header.protection)}: "
                           "only module-protected keys can be transferred (generate it with protect=module)")


def _named_key(session: Any, app: str, ident: str) -> Any:
    """The private or secret key object stored as key_<app>_<ident>, or None."""
    from pkcs11 import Attribute as A, ObjectClass

    for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
        for key in session.get_objects({A.CLASS: cls}):
            if key[p11client.CKA_NFKM_APPNAME] == app and bytes(key[p11client.CKA_NFKM_ID]).decode() == ident:
                return key
    return None


def _trusted_kek(session: Any, target: Any) -> Any:
    """The trusted public-key object holding the KEK, or None."""
    from pkcs11 import Attribute as A, ObjectClass

    modulus = components.rsa_components(PublicMaterial.from_spki(target.kek_public_spki)).n
    for key in session.get_objects({A.CLASS: ObjectClass.PUBLIC_KEY, A.TRUSTED: True, A.WRAP: True}):
        if int.from_bytes(key[A.MODULUS], "big") == modulus:
            return key
    return None


def _import_trusted_kek(session: Any, target: Any) -> Any:
    """C_CreateObject of the KEK's public key with CKA_TRUSTED (only the SO may set it)."""
    from pkcs11 import Attribute as A, KeyType, ObjectClass

    kek = components.rsa_components(PublicMaterial.from_spki(target.kek_public_spki))
    return session.create_object({
        A.CLASS: ObjectClass.PUBLIC_KEY, A.KEY_TYPE: KeyType.RSA, A.TOKEN: True, A.PRIVATE: False,
        A.LABEL: f"BYOK-KEK-{target.region} {target.kek_hash} (trusted)", A.TRUSTED: True, A.WRAP: True,
        A.ENCRYPT: False, A.VERIFY: False, A.MODIFIABLE: False,
        A.MODULUS: p11client.int_bytes(kek.n), A.PUBLIC_EXPONENT: p11client.int_bytes(kek.e)})


def copy_template(source: Any, ident: str, kek_hash: str) -> dict[Any, Any]:
    """The C_CopyObject template of the transfer copy: no usage, wrappable only by the trusted KEK
    named by its hash, neither copyable, modifiable nor destroyable, stored as key_xferacld_<ident>."""
    import pkcs11
    from pkcs11 import Attribute as A

    template: dict[Any, Any] = {A.TOKEN: True, A.LABEL: f"{source[A.LABEL]} (transfer copy)",
                                A.WRAP_WITH_TRUSTED: True, A.COPYABLE: False, A.MODIFIABLE: False,
                                A.DESTROYABLE: False, p11client.CKA_NFKM_APPNAME: transfer.TRANSFER_APP,
                                p11client.CKA_NFKM_ID: ident.encode(),
                                CKA_SOFTSHIELD_WRAP_KEY_HASH: bytes.fromhex(kek_hash)}
    for name in USAGE:
        try:
            if source[A[name]]:
                template[A[name]] = False
        except pkcs11.exceptions.AttributeTypeInvalid:
            pass  # not an attribute of this key's class
    return template


def reduce_acl(module: Module, app: str, ident: str, target: Any, pin_file: str | None) -> Any:
    """-ModifyAcls: the ACS-authorised transfer copy key_xferacld_<ident> bound to the KEK's hash;
    returns the copy as the module reads it back."""
    import pkcs11

    require_acs(module.kmdata)
    require_module_protected(module, app, ident)
    if (module.local / transfer.transfer_file_name(ident)).exists():
        raise CommandError(f"{transfer.transfer_file_name(ident)} already exists: key {ident} was prepared before")
    presented = present_cards(module.kmdata, pin_file)
    # The cards the operator inserts, in order: what C_LoginNext reads (emulator.transfer.SLOT_ENV).
    os.environ[transfer.SLOT_ENV] = os.pathsep.join(str(path) for path, _pin in presented)
    lib = p11client.load()
    try:
        with p11client.accelerator(lib).open(rw=True, attribute_mapper=p11client.mapper()) as session:
            source = _named_key(session, app, ident)
            if source is None:
                raise CommandError(f"no {paths.key_file(app, ident)} on the accelerator slot")
            k = p11client.so_login(session, [pin for _path, pin in presented])
            print(f"ACS quorum: {k} cards read; logged in as the accelerator's SO")
            if _trusted_kek(session, target) is None:
                _import_trusted_kek(session, target)
            print(f"Key Exchange Key {target.kek_hash} is a trusted wrapping key (CKA_TRUSTED)")
            source.copy(copy_template(source, ident, target.kek_hash))
    except pkcs11.exceptions.PKCS11Error as exc:
        raise CommandError(f"-ModifyAcls failed: {type(exc).__name__} {exc}".rstrip()) from None
    return transfer.read_key_file(module, transfer.TRANSFER_APP, ident)


def _modify_acls(module: Module, args: argparse.Namespace, target: Any) -> int:
    app, ident = args.KeyAppName, args.KeyIdentifier
    copy = reduce_acl(module, app, ident, target, args.pin_file)
    print(f"Reduced copy of {paths.key_file(app, ident)} written: {copy.file_path}")
    for line in copy.acl.describe():
        print(line)
    print("Result: SUCCESS")
    return 0


def wrap_copy(module: Module, ident: str, target: Any, oaep_hash: str) -> tuple[Any, bytes]:
    """-Package's C_WrapKey: (the transfer copy, CKM_RSA_AES_KEY_WRAP ciphertext under the KEK)."""
    import pkcs11

    name = transfer.transfer_file_name(ident)
    if not (module.local / name).exists():
        raise CommandError(f"no {name}: key {ident} has not been prepared with -ModifyAcls "
                           "(a key that was never ACL-reduced is never packaged)")
    copy = transfer.read_key_file(module, transfer.TRANSFER_APP, ident)
    transfer.check_transfer_copy(copy, target)
    try:
        with p11client.accelerator(p11client.load()).open(rw=False, attribute_mapper=p11client.mapper()) as session:
            key = _named_key(session, transfer.TRANSFER_APP, ident)
            kek = _trusted_kek(session, target)
            if key is None or kek is None:
                raise CommandError(f"{name} or its trusted KEK is not on the accelerator slot: run -ModifyAcls again")
            ciphertext = kek.wrap_key(key, mechanism=p11client.rsa_aes_mechanism(),
                                      mechanism_param=p11client.rsa_aes_param(oaep_hash))
    except pkcs11.exceptions.PKCS11Error as exc:
        raise CommandError(f"C_WrapKey failed: {type(exc).__name__} {exc}".rstrip()) from None
    return copy, ciphertext


def package_name(friendly: str) -> Path:
    """The one .byok -Package writes (the name of the Azure RMS flow's transfer package)."""
    return Path(f"TransferPackage-{friendly}.byok")


def internal_name(friendly: str) -> Path:
    """softshield's legacy-style record, written only on request: never mistaken for the .byok."""
    return Path(f"KeyTransferPackage-{friendly}.internal.json")


def _package(module: Module, args: argparse.Namespace, target: Any) -> int:
    if not args.SubscriptionId or not args.KeyFriendlyName:
        raise CommandError("-Package needs -SubscriptionId and -KeyFriendlyName")
    if args.InternalPackage and isinstance(target, cloudkek.CloudKek):
        raise CommandError("-InternalPackage records the target world of a KEK package; a -KekFile KEK has none")
    ident = args.KeyIdentifier
    copy, ciphertext = wrap_copy(module, ident, target, args.OaepHash)
    neutral = package_name(args.KeyFriendlyName)
    transfer.write_json(neutral, transfer.neutral_package(target, ciphertext, module.esn, args.OaepHash))
    print(f"Key {ident} wrapped for KEK {target.kek_hash} with CKM_RSA_AES_KEY_WRAP, OAEP {args.OaepHash}")
    print(f"Transfer package (.byok, kid {target.kid}): {neutral.resolve()}")
    if args.InternalPackage:
        legacy = internal_name(args.KeyFriendlyName)
        transfer.write_json(legacy, transfer.legacy_package(target, ciphertext, copy, module.world.hknso, module.esn,
                                                            args.SubscriptionId, args.KeyFriendlyName, args.OaepHash))
        print(f"Internal record (softshield legacy-style, not for a vault): {legacy.resolve()}")
    print("Result: SUCCESS")
    return 0
