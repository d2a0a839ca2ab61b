"""`softshield generatekey`: nShield's key generator, generating THROUGH our PKCS#11 library.

    softshield generatekey --generate simple type=RSA size=2048 protect=module ident=contosokey \
        plainname=contosokey nvram=no pubexp=

Module keys are made in the accelerator slot; softcard keys in the softcard's slot after C_Login
with its passphrase; card-set (token) keys in the card set's slot after the quorum was read and
preloaded (preload.py), as nShield's tools read cards through the module. The private key's
template carries CKA_NFKM_APPNAME / CKA_NFKM_ID, so the library stores it as key_<app>_<ident>.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .main import CommandError, command
from .pins import PinSource, add_pin_file_option
from .progress import Progress

APPS = {
    "simple": "Simple application: key named by ident (key_simple_<ident>)",
    "pkcs11": "PKCS#11 application: ident assigned by the library (key_pkcs11_ua.../uc...-...)",
}
TYPES = ("RSA", "EC", "ECDSA", "ECDH", "AES", "DES3", "HMAC", "HMACSHA1", "HMACSHA256", "HMACSHA384",
         "HMACSHA512", "Ed25519", "ML-DSA", "ML-KEM")
CURVES = {"NISTP256": "secp256r1", "P-256": "secp256r1", "NISTP384": "secp384r1", "P-384": "secp384r1",
          "NISTP521": "secp521r1", "P-521": "secp521r1"}
SIZES = {"RSA": (1024, 8192), "AES": (128, 256), "DES3": (168, 168), "HMAC": (64, 2048)}
PROTECTIONS = ("module", "token", "softcard")
#: What each key type may do, stated in every template (python-pkcs11 turns these flags into explicit
#: CKA_SIGN/CKA_DERIVE/... values; its own defaults give an EC key both SIGN and DERIVE, which the
#: module's security assurances refuse for a token key: one key, one purpose, as nShield's
#: ECDSA and ECDH types are). Names are pkcs11.MechanismFlag members.
CAPABILITIES = {
    "RSA": ("ENCRYPT", "DECRYPT", "SIGN", "VERIFY", "WRAP", "UNWRAP"),
    "EC": ("SIGN", "VERIFY"), "ECDSA": ("SIGN", "VERIFY"), "ECDH": ("DERIVE",),
    "Ed25519": ("SIGN", "VERIFY"),
    "AES": ("ENCRYPT", "DECRYPT", "SIGN", "VERIFY", "WRAP", "UNWRAP"),
    "DES3": ("ENCRYPT", "DECRYPT", "SIGN", "VERIFY", "WRAP", "UNWRAP"),
    "HMAC": ("SIGN", "VERIFY"),
    "ML-DSA": ("SIGN", "VERIFY"), "ML-KEM": ("ENCAPSULATE", "DECAPSULATE"),
}
#: Post-quantum families (PKCS#11 3.2): parameter set by `paramset=ML-DSA-65` or `size=65`, the
#: default first. ML-KEM-512 is left out: the library's `cryptography` lacks it.
PARAMETER_SETS = {"ML-DSA": ("ML-DSA-65", "ML-DSA-44", "ML-DSA-87"), "ML-KEM": ("ML-KEM-768", "ML-KEM-1024")}


@dataclass(frozen=True)
class Param:
    name: str
    text: str
    default: str | None = None


#: The parameter echo, in nShield's order.
ECHO = (
    Param("operation", "Operation to perform"),
    Param("application", "Application"),
    Param("protect", "Protected by", "module"),
    Param("softcard", "Soft card to protect key"),
    Param("cardset", "Card set to protect key"),
    Param("recovery", "Key recovery", "yes"),
    Param("verify", "Verify security of key", "yes"),
    Param("type", "Key type", "RSA"),
    Param("size", "Key size"),
    Param("curve", "Elliptic curve"),
    Param("paramset", "Parameter set"),
    Param("pubexp", "Public exponent for RSA key (hex)", ""),
    Param("ident", "Key identifier"),
    Param("plainname", "Key name", ""),
    Param("nvram", "Blob in NVRAM (needs ACS)", "no"),
)
KNOWN = {p.name for p in ECHO} - {"operation", "application"}


def _fail(text: str) -> CommandError:
    return CommandError(text)


def normalise(app: str, given: dict[str, str], *, batch: bool) -> dict[str, str]:
    """Fill defaults, prompt for what is missing (unless --batch), reject what nShield rejects."""
    params = dict(given)
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise _fail(f"unknown parameter {unknown[0]!r}")
    if app not in APPS:
        raise _fail(f"unknown application {app!r} (see --list-apps)")

    def ask(name: str, question: str, default: str) -> str:
        if name in params:
            return params[name]
        if batch or not sys.stdin.isatty():
            if default == "" and name in ("ident",):
                raise _fail(f"parameter {name} is required")
            return default
        answer = input(f"{name}: {question} [{default}] > ").strip()
        return answer or default

    params["protect"] = ask("protect", "Protected by? (token, softcard, module)", "module")
    if params["protect"] not in PROTECTIONS:
        raise _fail(f"protect: invalid option {params['protect']!r} (token, softcard, module)")
    if params["protect"] == "softcard":
        params["softcard"] = ask("softcard", "Soft card to protect key?", "")
        if not params["softcard"]:
            raise _fail("softcard: protect=softcard needs softcard=NAME")
    if params["protect"] == "token":
        params["cardset"] = ask("cardset", "Card set to protect key?", "")
        if not params["cardset"]:
            raise _fail("cardset: protect=token needs cardset=NAME")
    params["type"] = ask("type", f"Key type? ({', '.join(TYPES)})", "RSA")
    key_type = params["type"].upper() if params["type"].lower() != "ed25519" else "Ed25519"
    if key_type not in TYPES:
        raise _fail(f"type: unknown key type {params['type']!r} ({', '.join(TYPES)})")
    params["type"] = key_type
    family = "HMAC" if key_type.startswith("HMAC") else ("EC" if key_type in ("EC", "ECDSA", "ECDH") else key_type)
    if family == "EC":
        params["curve"] = ask("curve", f"Elliptic curve? ({', '.join(CURVES)})", "NISTP256")
        if params["curve"].upper() not in CURVES:
            raise _fail(f"curve: unknown curve {params['curve']!r} ({', '.join(CURVES)})")
    elif family in PARAMETER_SETS:
        params["paramset"] = _parameter_set(family, params, ask)
        params["size"] = params["paramset"].rsplit("-", 1)[1]
    elif family in SIZES:
        low, high = SIZES[family]
        default = {"RSA": "2048", "AES": "256", "DES3": "168", "HMAC": "256"}[family]
        size_text = ask("size", f"Key size? (bits, {low}-{high})", default) or default
        try:
            size = int(size_text)
        except ValueError:
            raise _fail(f"size: {size_text!r} is not a number of bits") from None
        if not low <= size <= high or (family == "AES" and size not in (128, 192, 256)) or size % 8:
            raise _fail(f"size: {size} bits is out of range for {key_type} ({low}-{high})")
        params["size"] = str(size)
    if family == "RSA":
        pubexp = params.get("pubexp", "") or ""
        if pubexp:
            try:
                value = int(pubexp, 16)
            except ValueError:
                raise _fail(f"pubexp: {pubexp!r} is not hexadecimal") from None
            if value < 3 or value % 2 == 0:
                raise _fail(f"pubexp: {pubexp} is not an odd exponent of at least 3")
        params["pubexp"] = pubexp
    if app == "simple":
        params["ident"] = ask("ident", "Key identifier?", "")
        from emulator import paths

        if not paths.IDENT_RE.match(params["ident"]) or len(params["ident"]) > 80:
            raise _fail(f"ident: {params['ident']!r} must be lower-case letters, digits and dashes")
    elif "ident" in params:
        raise _fail("ident: the pkcs11 application assigns its own idents")
    params["plainname"] = ask("plainname", "Key name?", params.get("ident", ""))
    params["nvram"] = ask("nvram", "Blob in NVRAM (needs ACS)? (yes/no)", "no")
    if params["nvram"] not in ("yes", "no"):
        raise _fail("nvram: invalid option (yes/no)")
    if params["nvram"] == "yes" and params["protect"] != "module":
        # The PIN file then carries the ACS cards only; OCS / softcard lines would be read as ACS cards.
        raise _fail("nvram: nvram=yes is for module-protected keys (protect=module)")
    params.setdefault("recovery", "yes")
    params.setdefault("verify", "yes")
    if params["recovery"] not in ("yes", "no"):
        raise _fail("recovery: invalid option (yes/no)")
    params["family"] = family
    return params


def _parameter_set(family: str, params: dict[str, str], ask) -> str:
    """`paramset=ML-DSA-65` and/or `size=65` (they must agree); asked for when neither is given."""
    sets = PARAMETER_SETS[family]
    by_size = f"{family}-{params['size']}" if params.get("size") else None
    chosen = params["paramset"].upper() if params.get("paramset") else by_size
    if chosen is None:
        chosen = ask("paramset", f"Parameter set? ({', '.join(sets)})", sets[0]).upper()
    if chosen not in sets:
        raise _fail(f"paramset: {chosen!r} is not a {family} parameter set ({', '.join(sets)})")
    if by_size is not None and by_size != chosen:
        raise _fail(f"size: {params['size']} does not match paramset={chosen}")
    return chosen


def echo(app: str, params: dict[str, str]) -> None:
    print("key generation parameters:")
    values = dict(params, operation="generate", application=app)
    for p in ECHO:
        if p.name in values and not (p.name in ("softcard", "cardset", "curve") and not values[p.name]):
            print(f" {p.name:<12} {p.text:<34} {values[p.name]}".rstrip())


def _login(args, params, lib):
    """(token, user PIN) for the protection; card sets are read here and preloaded."""
    from . import p11client, preload

    protect = params["protect"]
    if protect == "module":
        return p11client.token(lib, p11client.ACCELERATOR_LABEL), None
    pins = PinSource(args.pin_file)
    if protect == "softcard":
        name = params["softcard"]
        item = pins.next(f"Loading softcard `{name}':", f"Enter passphrase for softcard `{name}': ", default_name=name)
        if item is None:
            raise CommandError(f"PIN file has no passphrase line for softcard `{name}'")
        return p11client.token(lib, name), item[1].decode()  # python-pkcs11 takes a str PIN
    return p11client.token(lib, params["cardset"]), preload.PRELOADED_PIN


def capabilities(key_type: str, family: str):
    """The pkcs11.MechanismFlag of a key type (CAPABILITIES)."""
    from functools import reduce

    from pkcs11 import MechanismFlag

    names = CAPABILITIES.get(key_type) or CAPABILITIES[family]
    return reduce(lambda a, b: a | b, (MechanismFlag[name] for name in names))


def generate(args: argparse.Namespace, app: str, params: dict[str, str]) -> tuple[str, str]:
    """Generate through PKCS#11; returns (app, ident) of the key file."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.mechanisms import MLDSAParameterSet, MLKEMParameterSet
    from pkcs11.util.ec import encode_named_curve_parameters

    from . import p11client, preload

    if params["protect"] == "token":
        preload.preload_cardset(args, params["cardset"])  # sets NFAST_NFKM_TOKENSFILE for the library
    from emulator import recovery

    # recovery=yes|no: whether the module adds a recovery blob under the world's recovery key (the
    # library in this process reads it when it writes the new key's blob).
    os.environ[recovery.POLICY_ENV] = params["recovery"]
    lib = p11client.load()
    token, pin = _login(args, params, lib)
    private = params["protect"] != "module"
    naming = {p11client.CKA_NFKM_APPNAME: app, p11client.CKA_NFKM_ID: params["ident"].encode()} if app == "simple" else {}
    label = params.get("plainname") or params.get("ident") or ""
    common = {Attribute.TOKEN: True, Attribute.LABEL: label}
    family, key_type = params["family"], params["type"]
    caps = capabilities(key_type, family)
    try:
        with token.open(rw=True, user_pin=pin, attribute_mapper=p11client.mapper()) as session, \
                Progress(f"generating {key_type} key" + (f" ({params['paramset']})" if params.get("paramset") else
                                                        f" ({params['size']} bits)" if params.get("size") else "")):
            if family in PARAMETER_SETS:
                # PKCS#11 3.2: CKA_PARAMETER_SET in the public template picks ML-DSA-44/65/87 etc.
                enum = MLDSAParameterSet if family == "ML-DSA" else MLKEMParameterSet
                pub = common | {Attribute.PARAMETER_SET: enum[params["paramset"].replace("-", "_")]}
                priv = common | {Attribute.PRIVATE: private, Attribute.SENSITIVE: True,
                                 Attribute.EXTRACTABLE: False} | naming
                kt = KeyType.ML_DSA if family == "ML-DSA" else KeyType.ML_KEM
                mech = Mechanism.ML_DSA_KEY_PAIR_GEN if family == "ML-DSA" else Mechanism.ML_KEM_KEY_PAIR_GEN
                _pub, key = session.generate_keypair(kt, public_template=pub, private_template=priv, mechanism=mech,
                                                     store=True, capabilities=caps)
            elif family in ("RSA", "EC", "Ed25519"):
                pub = dict(common)
                priv = common | {Attribute.PRIVATE: private, Attribute.SENSITIVE: True,
                                 Attribute.EXTRACTABLE: False}
                priv.update(naming)
                if family == "RSA":
                    pub[Attribute.MODULUS_BITS] = int(params["size"])
                    pub[Attribute.PUBLIC_EXPONENT] = int(params["pubexp"] or "10001", 16).to_bytes(4, "big").lstrip(b"\0")
                    mech = Mechanism.RSA_PKCS_KEY_PAIR_GEN
                    pub[Attribute.KEY_TYPE] = KeyType.RSA
                elif family == "EC":
                    pub[Attribute.EC_PARAMS] = encode_named_curve_parameters(CURVES[params["curve"].upper()])
                    mech, pub[Attribute.KEY_TYPE] = Mechanism.EC_KEY_PAIR_GEN, KeyType.EC
                else:
                    pub[Attribute.EC_PARAMS] = encode_named_curve_parameters("1.3.101.112")
                    mech, pub[Attribute.KEY_TYPE] = Mechanism.EC_EDWARDS_KEY_PAIR_GEN, KeyType.EC_EDWARDS
                length = int(params["size"]) if family == "RSA" else None  # python-pkcs11 wants it for RSA
                _pub, key = session.generate_keypair(pub[Attribute.KEY_TYPE], length, public_template=pub,
                                                     private_template=priv, mechanism=mech, store=True,
                                                     capabilities=caps)
            else:
                tmpl = common | {Attribute.PRIVATE: private, Attribute.SENSITIVE: True,
                                 Attribute.EXTRACTABLE: False} | naming
                size = int(params["size"])
                if family == "AES":
                    kt, mech = KeyType.AES, Mechanism.AES_KEY_GEN
                elif family == "DES3":
                    kt, mech = KeyType.DES3, Mechanism.DES3_KEY_GEN
                else:
                    kt, mech = KeyType.GENERIC_SECRET, Mechanism.GENERIC_SECRET_KEY_GEN
                if family != "DES3":
                    tmpl[Attribute.VALUE_LEN] = size // 8
                key = session.generate_key(kt, size if family != "DES3" else 192, template=tmpl,
                                           mechanism=mech, store=True, capabilities=caps)
            ident = bytes(key[p11client.CKA_NFKM_ID]).decode()
            key_app = key[p11client.CKA_NFKM_APPNAME]
    except pkcs11.exceptions.PKCS11Error as exc:
        raise CommandError(f"key generation failed: {type(exc).__name__} {exc}".rstrip()) from None
    return key_app, ident


def nvram_authority(args: argparse.Namespace, kmdata: Path):
    """nvram=yes: the ACS quorum's permission to allocate NVRAM (cards from --pin-file, or asked for)."""
    from emulator import nvram, worldadmin
    from emulator.errors import EmulatorError

    place = worldadmin.Place.of(kmdata)
    world_file = place.world_file()
    if world_file is None or world_file.acs is None:
        raise CommandError("nvram: NVRAM allocation needs the ACS, and this Security World has none "
                           "(make one with `softshield new-world --initialize --acs-quorum=K/N`)")
    ref = worldadmin.acs_ref(world_file)
    print(f"NVRAM allocation needs {ref.k} of the {ref.n} cards of ACS `{ref.name}'.", file=sys.stderr)
    presented = PinSource(args.pin_file).cards(place.reader, ref.k)
    try:
        return nvram.authorise(kmdata, presented, lambda line: print(line, file=sys.stderr))
    except EmulatorError as exc:
        raise CommandError(f"nvram: {exc}") from None


def store_in_nvram(kmdata: Path, app: str, ident: str, authority) -> None:
    """Move the new key's blob into the module's NVRAM; failing that, the new key is removed."""
    from emulator import paths
    from emulator.errors import EmulatorError
    from emulator.module import Module

    module = Module.open(kmdata)
    try:
        ref = module.allocate_nvram(authority, app, ident)
    except EmulatorError as exc:
        name = paths.key_file(app, ident)
        with module._store.writer_lock():  # nothing half-done: the key without its NVRAM goes
            if module._store.delete(name):
                module._store.bump()
        raise CommandError(f"nvram: {exc} ({name} removed)") from None
    print(f"Key blob stored in NVRAM of module {ref.esn}.")


def list_apps() -> None:
    print("Applications:")
    for name, text in APPS.items():
        print(f"  {name:<10} {text}")


@command("generatekey", "keys", "generate a key (through the PKCS#11 library), as nShield's generatekey")
class GenerateKey:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("-g", "--generate", action="store_true", help="generate a key (the default operation)")
        p.add_argument("-b", "--batch", action="store_true", help="never prompt: missing parameters take defaults")
        p.add_argument("-m", "--module", type=int, default=1)
        p.add_argument("--check", action="store_true", help="check the parameters only, generate nothing")
        p.add_argument("--list-apps", action="store_true", help="list the applications")
        p.add_argument("--no-verify", action="store_true", help="accepted for compatibility")
        add_pin_file_option(p)
        p.add_argument("app", nargs="?", help="application: simple or pkcs11")
        p.add_argument("params", nargs="*", metavar="NAME=VALUE")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        if args.list_apps:
            list_apps()
            return 0
        if not args.app:
            raise CommandError("no application given (see --list-apps)")
        given = {}
        for item in args.params:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"parameter {item!r} is not NAME=VALUE")
            given[name] = value
        params = normalise(args.app, given, batch=args.batch)
        echo(args.app, params)
        if args.check:
            print("Parameters are valid.")
            return 0
        from emulator import paths

        kmdata = paths.resolve_kmdata(os.environ.get("NFAST_KMDATA"))
        # The quorum first: without it nothing is generated, so no key file is left behind.
        authority = nvram_authority(args, kmdata) if params["nvram"] == "yes" else None
        try:
            app, ident = generate(args, args.app, params)
            if authority is not None:
                store_in_nvram(kmdata, app, ident, authority)
        finally:
            if authority is not None:
                authority.wipe()
        print("Key successfully generated.")
        print(f"Path to key: {Path(paths.local_dir(kmdata)) / paths.key_file(app, ident)}")
        return 0
