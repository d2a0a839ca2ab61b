"""Naming a key on the command line: `APP:IDENT`, `-A APP -K IDENT`, or a `pkcs11:` URI (RFC 7512).

A URI is resolved as any PKCS#11 client resolves it: through the library, tokens matched by the
URI's token attributes, objects by `object` (CKA_LABEL), `id` (CKA_ID) and `type`; the object's
nShield names (CKA_NFKM_APPNAME, CKA_NFKM_ID) say which kmdata file holds it. A token key is
visible only after a login: the URI's pin-value / pin-source give the PIN.
"""

from __future__ import annotations

from .main import CommandError

#: URI `type` values that name a key kept as key_<app>_<ident> (a pair's public half shares the file name).
KEY_TYPES = ("private", "secret-key", "public")


def is_uri(text: str | None) -> bool:
    return bool(text) and text.lower().startswith("pkcs11:")


def parse_app_ident(text: str) -> tuple[str, str]:
    app, sep, ident = text.partition(":")
    if not sep or not app or not ident:
        raise CommandError(f"{text!r}: name the key as APP:IDENT (e.g. simple:mykey) or with a pkcs11: URI")
    return app, ident


def resolve(text: str) -> tuple[str, str]:
    """(app, ident) of the key `text` names: APP:IDENT or a pkcs11: URI matching exactly one key."""
    return resolve_uri(text) if is_uri(text) else parse_app_ident(text)


def resolve_uri(text: str, pin: str | None = None) -> tuple[str, str]:
    import pkcs11
    from pkcs11 import Attribute as A, ObjectClass, TokenFlag

    from . import listing, p11client

    parsed = listing.parse_uri(text)
    if parsed.type and parsed.type not in KEY_TYPES:
        raise CommandError(f"{text}: type={parsed.type} names no key")
    pin = listing.pin_for(parsed, pin)
    key_classes = (ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY)
    found: set[tuple[str, str]] = set()
    for token in listing.matching_tokens(p11client.load(), parsed):
        try:
            wants_login = bool(token.flags & TokenFlag.LOGIN_REQUIRED)
            with token.open(user_pin=pin if (pin and wants_login) else None,
                            attribute_mapper=p11client.mapper()) as session:
                for obj in listing.objects_in(session, parsed):
                    if obj[A.CLASS] not in key_classes:
                        continue
                    try:
                        app = obj[p11client.CKA_NFKM_APPNAME]
                        ident = bytes(obj[p11client.CKA_NFKM_ID]).decode()
                    except pkcs11.exceptions.PKCS11Error:
                        continue  # a session object: no kmdata file holds it
                    if app and ident:
                        found.add((app, ident))
        except pkcs11.exceptions.PKCS11Error as exc:
            raise CommandError(f"{text}: token `{token.label.strip()}' refused the search "
                               f"({type(exc).__name__})") from None
    if not found:
        hint = "" if pin else " (a card-set or softcard key is visible only with pin-value or pin-source)"
        raise CommandError(f"{text}: no key matches this URI{hint}")
    if len(found) > 1:
        names = ", ".join(f"{a}:{i}" for a, i in sorted(found))
        raise CommandError(f"{text}: matches {len(found)} keys ({names}): add object=, id= or type=")
    return found.pop()
