"""`softshield byok export-kek | import`: the target ("cloud HSM") side of bring-your-own-key.

export-kek: a Key Exchange Key generated through PKCS#11 in the accelerator slot (RSA, token,
non-extractable, sensitive, not copyable or modifiable, CKA_UNWRAP only), then the KEK package and
the Security World package, signed by this module (warrant from the emulated vendor root).
import: checks a .byok package, then C_UnwrapKey with CKM_RSA_AES_KEY_WRAP under the KEK: the key
lands on the accelerator slot as a token key that signs/decrypts and is never extractable.
The PKCS#11 calls python-pkcs11 cannot make itself (CKM_RSA_AES_KEY_WRAP) are p11client's.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from emulator import attestation, paths, transfer, vendor_root
from emulator.errors import EmulatorError
from emulator.module import Module

from . import p11client
from .main import CommandError, command

REGION_RE = re.compile(r"^[A-Z0-9]{1,16}$")
KEK_SIZES = (2048, 3072, 4096)


def _rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    from emulator.crypto import components

    return components.rsa_public_key(n=int.from_bytes(modulus, "big"), e=int.from_bytes(exponent, "big")).to_bytes()


# --- the KEK ------------------------------------------------------------------------------------
#: The KEK's private half: unwrap only (BYOK specification: `import` "mutually exclusive with all other key operations").
KEK_PRIVATE = {"PRIVATE": False, "SENSITIVE": True, "EXTRACTABLE": False, "UNWRAP": True, "SIGN": False,
               "SIGN_RECOVER": False, "DECRYPT": False, "DERIVE": False, "COPYABLE": False, "MODIFIABLE": False}
KEK_PUBLIC = {"PRIVATE": False, "WRAP": True, "ENCRYPT": False, "VERIFY": False, "VERIFY_RECOVER": False}


def _attrs(names: dict[str, Any]) -> dict[Any, Any]:
    from pkcs11 import Attribute

    return {Attribute[name]: value for name, value in names.items()}


def generate_kek(label: str, size: int) -> bytes:
    """The KEK pair through the PKCS#11 library, as a customer's program makes it; returns its SPKI."""
    from pkcs11 import Attribute as A, KeyType

    with p11client.accelerator(p11client.load()).open(rw=True) as session:
        public, _private = session.generate_keypair(KeyType.RSA, size, store=True, label=label,
                                                    public_template=_attrs(KEK_PUBLIC),
                                                    private_template=_attrs(KEK_PRIVATE))
        return _rsa_spki(public[A.MODULUS], public[A.PUBLIC_EXPONENT])


def load_kek_private(pem: bytes) -> Any:
    """The RSA private key --import-key names, checked before anything is made."""
    from emulator.crypto import rsa
    from emulator.crypto.material import PrivateMaterial
    from emulator.errors import InvalidKeyMaterial

    if b"PRIVATE KEY-----" not in pem:
        raise CommandError("--import-key takes the KEK's private key (PEM); a vault's KEK public key goes to "
                           "`softshield byok package --kek FILE` or `keytransfer -KekFile FILE`")
    needed = f"--import-key: an RSA {'/'.join(map(str, KEK_SIZES))} private key (PEM) is needed"
    try:
        private = PrivateMaterial.from_pem(pem)
    except InvalidKeyMaterial as exc:
        raise CommandError(f"--import-key: {exc}") from None
    if private.kind != "RSA" or rsa.modulus_bits(private) not in KEK_SIZES:
        raise CommandError(needed)
    return private


def import_kek(label: str, private: Any) -> bytes:
    """An existing RSA key pair made the KEK (C_CreateObject with the attributes generate_kek
    gives): for tests and for an operator whose KEK comes from elsewhere. Returns its SPKI."""
    from pkcs11 import Attribute as A, KeyType, ObjectClass

    from emulator.crypto import components

    n = components.rsa_components(private)
    with p11client.accelerator(p11client.load()).open(rw=True) as session:
        common = {A.TOKEN: True, A.KEY_TYPE: KeyType.RSA, A.LABEL: label,
                  A.MODULUS: p11client.int_bytes(n.n), A.PUBLIC_EXPONENT: p11client.int_bytes(n.e)}
        session.create_object({**common, A.CLASS: ObjectClass.PUBLIC_KEY, **_attrs(KEK_PUBLIC)})
        session.create_object({**common, A.CLASS: ObjectClass.PRIVATE_KEY, A.PRIVATE_EXPONENT: p11client.int_bytes(n.d),
                               A.PRIME_1: p11client.int_bytes(n.p), A.PRIME_2: p11client.int_bytes(n.q),
                               A.EXPONENT_1: p11client.int_bytes(n.dmp1), A.EXPONENT_2: p11client.int_bytes(n.dmq1),
                               A.COEFFICIENT: p11client.int_bytes(n.iqmp), **_attrs(KEK_PRIVATE)})
    return _rsa_spki(p11client.int_bytes(n.n), p11client.int_bytes(n.e))


# --- the import ---------------------------------------------------------------------------------
#: The imported key by key type: its class and usage (C_UnwrapKey template), what a vault's key of
#: that type does (RSA-HSM: sign/decrypt; EC-HSM: sign; oct-HSM: encrypt/decrypt/wrap/unwrap). Every
#: usage is stated, True or False: one key, one purpose, as the module's assurances want.
IMPORT_KINDS = {
    "RSA": ("PRIVATE_KEY", {"SIGN": True, "DECRYPT": True, "UNWRAP": False, "DERIVE": False}),
    "EC": ("PRIVATE_KEY", {"SIGN": True, "DECRYPT": False, "UNWRAP": False, "DERIVE": False}),
    "AES": ("SECRET_KEY", {"ENCRYPT": True, "DECRYPT": True, "WRAP": True, "UNWRAP": True, "SIGN": False,
                           "VERIFY": False, "DERIVE": False}),
}
IMPORT_USAGE = IMPORT_KINDS  # the --kty choices


def _labelled(session: Any, name: str) -> list[Any]:
    from pkcs11 import Attribute as A, ObjectClass

    return [obj for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY)
            for obj in session.get_objects({A.CLASS: cls, A.LABEL: name})]


def unwrap_import(request: transfer.ImportRequest, name: str, kty: str | None,
                  replace: bool = False) -> tuple[str, str, str]:
    """C_UnwrapKey under the KEK whose hash the package names; (key type, the new key's ident, its
    key hash). Without `kty` each type is tried in turn: the .byok does not say what it holds, and
    an unwrap that fails leaves nothing behind."""
    import pkcs11
    from pkcs11 import Attribute as A, KeyType, ObjectClass

    if request.oaep_hash not in p11client.OAEP_MECHANISMS:
        raise CommandError(f"the package's OAEP hash {request.oaep_hash} is not one of "
                           f"{', '.join(p11client.OAEP_MECHANISMS)}")
    with p11client.accelerator(p11client.load()).open(rw=True, attribute_mapper=p11client.mapper()) as session:
        keks = [k for k in session.get_objects({A.CLASS: ObjectClass.PRIVATE_KEY, A.UNWRAP: True})
                if bytes(k[p11client.CKA_NFKM_HASH]).hex() == request.kek_hash]
        if not keks:
            raise CommandError(f"no Key Exchange Key with hash {request.kek_hash} in this world: the package was "
                               "made for another KEK or another world")
        existing = _labelled(session, name)
        if existing and not replace:
            raise CommandError(f"a key named `{name}' already exists in this world: choose another --name, or "
                               "--replace it")
        failures = []
        for kind in ([kty] if kty else list(IMPORT_KINDS)):
            cls_name, usage = IMPORT_KINDS[kind]
            # python-pkcs11 fills every capability in; those the class lacks go back to DEFAULT
            # (dropped from the template), and only the key's own usage is sent.
            absent = (A.ENCRYPT, A.VERIFY, A.WRAP) if cls_name == "PRIVATE_KEY" else (A.SIGN_RECOVER,)
            template = {**{attr: pkcs11.DEFAULT for attr in absent},
                        A.TOKEN: True, A.PRIVATE: False, A.SENSITIVE: True, A.EXTRACTABLE: False, A.LABEL: name,
                        A.ID: name.encode(), A.COPYABLE: False, **_attrs(usage)}
            try:
                key = keks[0].unwrap_key(ObjectClass[cls_name], KeyType[kind], request.ciphertext,
                                         mechanism=p11client.rsa_aes_mechanism(),
                                         mechanism_param=p11client.rsa_aes_param(request.oaep_hash), store=True,
                                         template=template)
            except pkcs11.exceptions.PKCS11Error as exc:
                failures.append(type(exc).__name__)
                continue
            for old in existing:
                old.destroy()
            return kind, bytes(key[p11client.CKA_NFKM_ID]).decode(), bytes(key[p11client.CKA_NFKM_HASH]).hex()
        what = f"an {kty} key" if kty else "an RSA, EC or AES key"
        raise CommandError(f"C_UnwrapKey under KEK {request.kek_hash} failed ({', '.join(dict.fromkeys(failures))}): "
                           f"the package was not made for this KEK, was damaged, or does not hold {what}")


@command("byok", "byok", "target side of BYOK: export-kek (KEK + world packages), import (a .byok file)")
class Byok:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        sub = p.add_subparsers(dest="byok_command", required=True, metavar="ACTION")
        e = sub.add_parser("export-kek", help="make a Key Exchange Key and its KEK and Security World packages")
        e.add_argument("--name", required=True, help="region tag, e.g. EU (upper-case letters and digits)")
        e.add_argument("--size", type=int, default=2048, choices=KEK_SIZES)
        e.add_argument("--out-dir", default=".", help="where the packages go (default: current folder)")
        e.add_argument("--import-key", metavar="PEM", help="make this RSA key pair the KEK instead of generating "
                       "one (tests that must hold the KEK's private key)")
        k = sub.add_parser("package", help="one step for a cloud vault: reduce a key's ACL for the vault's KEK "
                           "(ACS quorum) and write its .byok")
        k.add_argument("--kek", required=True, metavar="FILE", help="the vault's KEK: PEM public key "
                       "(az keyvault key download) or JSON Web Key (az keyvault key show)")
        k.add_argument("--kek-kid", metavar="KID", help="the KEK's kid (required with PEM; else taken from the JWK)")
        k.add_argument("--key", required=True, metavar="APP:IDENT|URI", help="the module-protected key to "
                       "transfer: e.g. simple:contosokey, or a pkcs11: URI")
        k.add_argument("--out", required=True, metavar="FILE.byok", help="the .byok to write")
        k.add_argument("--oaep-hash", default="SHA-1", choices=sorted(transfer.OAEP_HASHES),
                       help="OAEP hash of the RSA part (SHA-1, as the BYOK specification says)")
        from .pins import add_pin_file_option

        add_pin_file_option(k)
        i = sub.add_parser("import", help="import a .byok transfer package under this world's KEK")
        i.add_argument("--file", required=True, help="TransferPackage-NAME.byok (or the internal KeyTransferPackage-NAME.internal.json)")
        i.add_argument("--name", required=True, help="label of the imported key")
        i.add_argument("--kty", choices=sorted(IMPORT_KINDS), help="key type inside the package (default: the "
                       "type the legacy package records, else found by the unwrap itself)")
        i.add_argument("--replace", action="store_true", help="replace the key already named --name")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            if args.byok_command == "export-kek":
                return _export_kek(args)
            if args.byok_command == "package":
                return _package(args)
            return _import(args)
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None


def _export_kek(args: argparse.Namespace) -> int:
    if not REGION_RE.match(args.name):
        raise CommandError(f"--name {args.name!r}: a region tag is 1-16 upper-case letters and digits")
    private = None
    if args.import_key:
        try:
            private = load_kek_private(Path(args.import_key).read_bytes())
        except OSError as exc:
            raise CommandError(f"--import-key {args.import_key}: {exc.strerror}") from None
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = Module.open()
    label = f"BYOK-KEK-{args.name}"
    if private is not None:
        spki = import_kek(label, private)
    else:
        spki = generate_kek(label, args.size)
    kek_hash = hashlib.sha1(spki).hexdigest()
    kek = transfer.find_kek(module, kek_hash)
    signer = attestation.ModuleSigner(module.kmdata, module.esn)
    kek_doc = attestation.kek_package(signer, kek, spki, args.name, module.world.hknso, label)
    world_doc = attestation.world_package(signer, module.world.facts(), args.name)
    kek_path = out / attestation.kek_package_name(args.name)
    world_path = out / attestation.world_package_name(args.name)
    kek_path.write_bytes(vendor_root.dumps(kek_doc))
    world_path.write_bytes(vendor_root.dumps(world_doc))
    root_hash = vendor_root.key_hash(base64.b64decode(signer.warrant["root_public"]))
    print(f"Key Exchange Key: RSA-{kek.material.key.key_size}, {paths.key_file(kek.app, kek.ident)}, hash {kek_hash}")
    print(f"  permits: {', '.join(sorted(a.value for a in kek.acl.actions()))} (no export)")
    print(f"  kid: {kek_doc['kek']['kid']}")
    print(f"KEK package: {kek_path}")
    print(f"Security World package: {world_path} (hknso {module.world.hknso})")
    print(f"Signed by module {module.esn}; warrant by {vendor_root.ROOT_NAME} (EMULATED), "
          f"root key hash: {vendor_root.format_hash(root_hash)}")
    print("Result: SUCCESS")
    return 0


def _package(args: argparse.Namespace) -> int:
    """KeyTransferRemote -ModifyAcls then -Package in one step, for a KEK file from the vault. Every
    input is checked before the quorum is asked for; the .byok appears only when it is complete."""
    # Deferred: a command module imported here would register its command ahead of byok's in
    # `softshield --help`.
    from . import keyref, keytransfer

    out = Path(args.out)
    if out.exists():
        raise CommandError(f"--out {out}: already exists (a .byok is never overwritten)")
    target = keytransfer.transfer_target(None, None, args.kek, args.kek_kid, None)
    app, ident = keyref.resolve(args.key)
    module = keytransfer.open_module()
    keytransfer.require_module_protected(module, app, ident)
    if (module.local / transfer.transfer_file_name(ident)).exists():
        copy = transfer.read_key_file(module, transfer.TRANSFER_APP, ident)
        transfer.check_transfer_copy(copy, target)  # reduced for this KEK before: package it again
        print(f"{copy.file_path.name}: already reduced for KEK {target.kek_hash}")
    else:
        copy = keytransfer.reduce_acl(module, app, ident, target, args.pin_file)
        print(f"Reduced copy of {paths.key_file(app, ident)} written: {copy.file_path}")
        for line in copy.acl.describe():
            print(line)
    _copy, ciphertext = keytransfer.wrap_copy(module, ident, target, args.oaep_hash)
    doc = transfer.neutral_package(target, ciphertext, module.esn, args.oaep_hash)
    partial = out.with_name(f".{out.name}.partial")
    transfer.write_json(partial, doc)
    partial.replace(out)
    print(f"Key {paths.key_file(app, ident)} wrapped for KEK {target.kek_hash} ({target.form}, RSA-{target.key_size}) "
          f"with CKM_RSA_AES_KEY_WRAP, OAEP {args.oaep_hash}")
    print(f"Transfer package (.byok, kid {target.kid}): {out}")
    print("Result: SUCCESS")
    return 0


def _import(args: argparse.Namespace) -> int:
    module = Module.open()
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"--file {path}: {exc.strerror}") from None
    request = transfer.parse_package(data, path.name)
    if request.hknso != module.world.hknso:
        raise CommandError(f"{path.name} is for Security World {request.hknso}; this world is "
                           f"{module.world.hknso}: import it where its KEK lives")
    kind = args.kty or request.key_kind
    if kind and kind not in IMPORT_KINDS:
        raise CommandError(f"{path.name} holds a {kind} key: byok import takes {', '.join(IMPORT_KINDS)} keys")
    kty, ident, key_hash = unwrap_import(request, args.name, kind, args.replace)
    print(f"Imported {kty} key `{args.name}' ({request.kind} package) under KEK {request.kek_hash}")
    print(f"Key file: {module.local / paths.key_file('pkcs11', ident)} (non-exportable, bound to world "
          f"{module.world.hknso})")
    print(f"Key hash: {key_hash}")
    print("Result: SUCCESS")
    return 0
