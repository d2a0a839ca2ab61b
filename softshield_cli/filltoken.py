"""`softshield fill-token --count N [pkcs11:URI]`: fill a token with N durable secret keys, with progress.

For test estates and benchmarks that need thousands of objects (find, login and C_Initialize times
grow with them). Every key is made by C_GenerateKey through our PKCS#11 library, as a client would,
so each is a real ACL'd blob in kmdata; labels are PREFIX0, PREFIX1, ... and CKA_ID the index as
four big-endian bytes, so a script can find key i again by either.
"""

from __future__ import annotations

import argparse

from .listing import matching_tokens, open_session, parse_uri, pin_for
from .main import CommandError, command
from .progress import Progress

#: --type -> (python-pkcs11 KeyType name, default size in bits, sizes allowed)
KEY_TYPES = {
    "AES": ("AES", 256, (128, 192, 256)),
    "GENERIC": ("GENERIC_SECRET", 256, tuple(range(8, 4097, 8))),
    "DES3": ("DES3", 192, (192,)),
}
MAX_COUNT = 1_000_000
DEFAULT_URI = "pkcs11:token=loadshared%20accelerator"


def _check(args: argparse.Namespace) -> tuple[str, int]:
    key_type, default_size, sizes = KEY_TYPES[args.type]
    size = args.size or default_size
    if size not in sizes:
        raise CommandError(f"--size {size} is not a {args.type} key size")
    if not 1 <= args.count <= MAX_COUNT:
        raise CommandError(f"--count must be between 1 and {MAX_COUNT}")
    return key_type, size


@command("fill-token", "tokens", "fill a token with N durable secret keys (test estates), with progress")
class FillToken:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("uri", nargs="?", default=DEFAULT_URI,
                       help=f"pkcs11: URI of the token (default: {DEFAULT_URI}, module-protected keys)")
        p.add_argument("--count", type=int, required=True, help="how many keys to make")
        p.add_argument("--type", choices=sorted(KEY_TYPES), default="AES", help="key type (default AES)")
        p.add_argument("--size", type=int, help="key size in bits (default 256; DES3 192)")
        p.add_argument("--label-prefix", default="fill-", help="labels are PREFIX0, PREFIX1, ... (default fill-)")
        p.add_argument("--pin", help="user PIN (or pin-value in the URI, or SOFTSHIELD_PIN)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from pkcs11 import Attribute, KeyType

        from . import p11client

        key_type_name, size = _check(args)
        uri = parse_uri(args.uri)
        tokens = matching_tokens(p11client.load(), uri)
        if len(tokens) != 1:
            raise CommandError(f"{args.uri} matches {len(tokens)} tokens; name exactly one")
        token = tokens[0]
        key_type = KeyType[key_type_name]
        pin = pin_for(uri, args.pin)
        with open_session(token, pin, rw=True) as session, \
                Progress(f"fill-token {token.label}", total=args.count, unit="keys") as progress:
            for index in range(args.count):
                session.generate_key(key_type, size, store=True, template={
                    Attribute.LABEL: f"{args.label_prefix}{index}",
                    Attribute.ID: index.to_bytes(4, "big"),
                    # Without a login the keys are public objects, as module-protected keys in
                    # nShield's accelerator slot are; with one they are private to the token's user.
                    Attribute.PRIVATE: pin is not None,
                })
                progress.advance()
        print(f"{args.count} {args.type} keys made in `{token.label}' "
              f"({args.label_prefix}0 .. {args.label_prefix}{args.count - 1}).")
        return 0
