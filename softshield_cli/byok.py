"""`softshield byok export-kek | import`: the target ("cloud HSM") side of bring-your-own-key.

export-kek: a Key Exchange Key generated through PKCS#11 in the accelerator slot (RSA, token,
non-extractable, sensitive, not copyable or modifiable, CKA_UNWRAP only), then the KEK package and
the Security World package, signed by this module (warrant from the emulated vendor root).
import: checks a .byok package, unwraps it under the KEK inside the module, and stores the key on
the accelerator slot with the attributes C_UnwrapKey would give it (sign/decrypt, non-extractable).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
from pathlib import Path

from emulator import attestation, paths, transfer, vendor_root
from emulator.errors import EmulatorError
from emulator.keys import Key
from emulator.module import Module

from .main import CommandError, command

ROOT = Path(__file__).resolve().parent.parent
SO = Path(os.environ.get("SOFTSHIELD_PKCS11_SO", ROOT / "build" / "libsoftshield-pkcs11.so"))
REGION_RE = re.compile(r"^[A-Z0-9]{1,16}$")
KEK_SIZES = (2048, 3072, 4096)


def _rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    public = RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_kek(label: str, size: int) -> bytes:
    """The KEK pair through the PKCS#11 library, as a customer's program makes it; returns its SPKI."""
    import pkcs11
    from pkcs11 import Attribute as A, KeyType

    if not SO.exists():
        raise CommandError(f"no PKCS#11 library at {SO}: build it with make")
    token = pkcs11.lib(str(SO)).get_token(token_label="loadshared accelerator")
    with token.open(rw=True) as session:
        public, _private = session.generate_keypair(
            KeyType.RSA, size, store=True, label=label,
            public_template={A.PRIVATE: False, A.WRAP: True, A.ENCRYPT: False, A.VERIFY: False,
                             A.VERIFY_RECOVER: False},
            private_template={A.PRIVATE: False, A.SENSITIVE: True, A.EXTRACTABLE: False, A.UNWRAP: True,
                              A.SIGN: False, A.SIGN_RECOVER: False, A.DECRYPT: False, A.DERIVE: False,
                              A.COPYABLE: False, A.MODIFIABLE: False})
        return _rsa_spki(public[A.MODULUS], public[A.PUBLIC_EXPONENT])


def import_kek(label: str, pem: bytes) -> bytes:
    """An existing RSA key pair made the KEK (C_CreateObject with the same attributes generate_kek
    gives): for tests and for an operator whose KEK comes from elsewhere. Returns its SPKI."""
    import pkcs11
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from pkcs11 import Attribute as A, KeyType, ObjectClass

    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, rsa.RSAPrivateKey) or private.key_size not in KEK_SIZES:
        raise CommandError(f"--import-key: an RSA {'/'.join(map(str, KEK_SIZES))} private key (PEM) is needed")
    n = private.private_numbers()

    def b(value: int) -> bytes:
        return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")

    token = pkcs11.lib(str(SO)).get_token(token_label="loadshared accelerator")
    with token.open(rw=True) as session:
        common = {A.TOKEN: True, A.PRIVATE: False, A.KEY_TYPE: KeyType.RSA, A.LABEL: label,
                  A.MODULUS: b(n.public_numbers.n), A.PUBLIC_EXPONENT: b(n.public_numbers.e)}
        session.create_object({**common, A.CLASS: ObjectClass.PUBLIC_KEY, A.WRAP: True, A.ENCRYPT: False,
                               A.VERIFY: False})
        session.create_object({**common, A.CLASS: ObjectClass.PRIVATE_KEY, A.PRIVATE_EXPONENT: b(n.d),
                               A.PRIME_1: b(n.p), A.PRIME_2: b(n.q), A.EXPONENT_1: b(n.dmp1),
                               A.EXPONENT_2: b(n.dmq1), A.COEFFICIENT: b(n.iqmp), A.SENSITIVE: True,
                               A.EXTRACTABLE: False, A.UNWRAP: True, A.SIGN: False, A.SIGN_RECOVER: False,
                               A.DECRYPT: False, A.DERIVE: False, A.COPYABLE: False, A.MODIFIABLE: False})
    return private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def store_imported(module: Module, material, name: str) -> Key:
    """The imported key on the accelerator slot, with the attributes C_UnwrapKey gives such a key."""
    from pkcs11_shim.attributes import codecs, templates
    from pkcs11_shim.constants import Attribute as A, KeyType, ObjectClass
    from pkcs11_shim.management import with_material_attributes
    from pkcs11_shim.mechanisms import numbers
    from pkcs11_shim import policy

    if material.kind == "RSA":
        key_type, usage = KeyType.RSA, {A.SIGN: True, A.DECRYPT: True}
    elif material.kind == "EC":
        key_type, usage = KeyType.EC, {A.SIGN: True, A.DERIVE: True}
    else:
        raise CommandError(f"imported key of kind {material.kind} is not supported (RSA or EC)")
    template = {A.CLASS: ObjectClass.PRIVATE_KEY, A.KEY_TYPE: key_type, A.TOKEN: True, A.PRIVATE: False,
                A.SENSITIVE: True, A.EXTRACTABLE: False, A.LABEL: name, A.ID: name.encode(), **usage}
    attrs = templates.new_object(template, templates.Origin.UNWRAP, mechanism=numbers.CKM_RSA_AES_KEY_WRAP,
                                 is_so=False)
    stored = with_material_attributes(attrs, material)
    key = Key(material, policy.acl_for(stored), app="pkcs11", ident=module.new_ident(None),
              plainname=name, appdata=codecs.serialize(stored))
    module.store_key(key)
    return key


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
        i = sub.add_parser("import", help="import a .byok transfer package under this world's KEK")
        i.add_argument("--file", required=True, help="TransferPackage-NAME.byok (or KeyTransferPackage-NAME.byok)")
        i.add_argument("--name", required=True, help="label of the imported key")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            if args.byok_command == "export-kek":
                return _export_kek(args)
            return _import(args)
        except EmulatorError as exc:
            raise CommandError(str(exc)) from None


def _export_kek(args: argparse.Namespace) -> int:
    if not REGION_RE.match(args.name):
        raise CommandError(f"--name {args.name!r}: a region tag is 1-16 upper-case letters and digits")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = Module.open()
    label = f"BYOK-KEK-{args.name}"
    if args.import_key:
        try:
            pem = Path(args.import_key).read_bytes()
        except OSError as exc:
            raise CommandError(f"--import-key {args.import_key}: {exc.strerror}") from None
        spki = import_kek(label, pem)
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
    kek = transfer.find_kek(module, request.kek_hash)
    material = transfer.unwrap_import(module, kek, request)
    key = store_imported(module, material, args.name)
    print(f"Imported {material.kind} key `{args.name}' ({request.kind} package) under KEK {kek.key_hash}")
    print(f"Key file: {key.file_path} (non-exportable, bound to world {module.world.hknso})")
    print(f"Key hash: {key.key_hash}")
    print("Result: SUCCESS")
    return 0
