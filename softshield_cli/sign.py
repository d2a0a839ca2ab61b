"""`softshield sign --key pkcs11:URI --in FILE --out SIG`: sign a file with a token's private key.

The key is named by a PKCS#11 URI (RFC 7512), exactly as for OpenSSL or p11tool; the signature is
made inside the module through the PKCS#11 library. The default mechanism follows the key type
(CKM_SHA256_RSA_PKCS for RSA, CKM_ECDSA_SHA256 for EC, which gives r||s as PKCS#11 defines it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .listing import matching_tokens, open_session, parse_uri, pin_for
from .main import CommandError, command

DEFAULT_MECHANISMS = {"RSA": "SHA256_RSA_PKCS", "EC": "ECDSA_SHA256", "EC_EDWARDS": "EDDSA",
                      "ML_DSA": "ML_DSA"}  # PKCS#11 3.2 pure ML-DSA (hedged, empty context)


def find_private_key(lib, uri_text: str, pin: str | None):
    """(session, key) for the single private key the URI names; the caller closes the session."""
    from pkcs11 import Attribute, ObjectClass

    uri = parse_uri(uri_text)
    if uri.type not in (None, "private"):
        raise CommandError(f"{uri_text} names a {uri.type} object; signing needs type=private")
    if uri.object is None and uri.id is None:
        raise CommandError("the key URI must name the key: object=LABEL and/or id=%XX")
    tokens = matching_tokens(lib, uri)
    if not tokens:
        raise CommandError(f"no token matches {uri_text}")
    pin = pin_for(uri, pin)
    for token in tokens:
        session = open_session(token, pin)
        template = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if uri.object is not None:
            template[Attribute.LABEL] = uri.object
        if uri.id is not None:
            template[Attribute.ID] = uri.id
        keys = list(session.get_objects(template))
        if len(keys) == 1:
            return session, keys[0]
        session.close()
        if len(keys) > 1:
            raise CommandError(f"{uri_text} matches {len(keys)} private keys in `{token.label}'; add id= to choose")
    hint = "" if pin else " (private keys need a PIN: --pin, pin-value= in the URI, or SOFTSHIELD_PIN)"
    raise CommandError(f"no private key matches {uri_text}{hint}")


@command("sign", "keys", "sign a file with a private key named by a pkcs11: URI")
class Sign:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key", required=True, metavar="URI",
                       help="pkcs11:token=...;object=...;type=private")
        p.add_argument("--in", dest="infile", required=True, type=Path, help="file to sign")
        p.add_argument("--out", required=True, type=Path, help="where the signature goes")
        p.add_argument("--mechanism", help="CKM name without CKM_, e.g. SHA256_RSA_PKCS_PSS "
                       "(default by key type: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_MECHANISMS.items()) + ")")
        p.add_argument("--pin", help="user PIN (or pin-value in the URI, or SOFTSHIELD_PIN)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from pkcs11 import Attribute, KeyType, Mechanism

        from . import p11client

        try:
            data = args.infile.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {args.infile}: {exc.strerror}") from None
        lib = p11client.load()
        session, key = find_private_key(lib, args.key, args.pin)
        with session:
            name = args.mechanism or DEFAULT_MECHANISMS.get(KeyType(key[Attribute.KEY_TYPE]).name)
            if name is None:
                raise CommandError("no default mechanism for this key type: give --mechanism")
            try:
                mechanism = Mechanism[name.upper().removeprefix("CKM_")]
            except KeyError:
                raise CommandError(f"unknown mechanism {name}") from None
            signature = key.sign(data, mechanism=mechanism)
        args.out.write_bytes(signature)
        print(f"signed {len(data)} bytes with {mechanism.name}: {len(signature)}-byte signature in {args.out}")
        return 0
