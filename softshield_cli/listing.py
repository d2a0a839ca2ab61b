"""`softshield list-objects [--json] [pkcs11:URI]`: every object of the matching tokens, with its URI.

Goes through the PKCS#11 library (python-pkcs11 loading our .so), as any client would. Also home of
what the PKCS#11-facing commands share: choosing tokens and objects by a PKCS#11 URI, the PIN
(`--pin`, the URI's pin-value/pin-source, or SOFTSHIELD_PIN), and printing a listing as a table or
as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Iterable, Sequence

from .main import CommandError, command
from .uri import CLASS_TYPES, Pkcs11Uri, UriError, object_uri, token_uri


def parse_uri(text: str | None) -> Pkcs11Uri:
    if not text:
        return Pkcs11Uri()
    try:
        return Pkcs11Uri.parse(text)
    except UriError as exc:
        raise CommandError(f"bad PKCS#11 URI: {exc}") from None


def token_info(token: Any) -> dict[str, Any]:
    slot = token.slot
    return {
        "token": token.label, "manufacturer": token.manufacturer_id, "model": token.model,
        "serial": token.serial.decode() if isinstance(token.serial, bytes) else token.serial,
        "slot-id": slot.slot_id, "slot-description": slot.slot_description,
        "slot-manufacturer": slot.manufacturer_id,
    }


def matching_tokens(lib: Any, uri: Pkcs11Uri) -> list[Any]:
    """Initialised tokens the URI selects (all of them for a bare `pkcs11:`)."""
    from pkcs11 import TokenFlag

    info = lib.library_description, lib.manufacturer_id
    found = []
    for slot in lib.get_slots(token_present=True):
        token = slot.get_token()
        if not token.flags & TokenFlag.TOKEN_INITIALIZED:
            continue
        details = token_info(token)
        details.update({"library-description": info[0], "library-manufacturer": info[1],
                        "library-version": "%d.%d" % tuple(lib.library_version)})
        if uri.matches_token(details):
            found.append(token)
    return found


def pin_for(uri: Pkcs11Uri, given: str | None) -> str | None:
    return given or uri.pin or os.environ.get("SOFTSHIELD_PIN")


def open_session(token: Any, pin: str | None, rw: bool = False) -> Any:
    """Logged in when a PIN is known and the token wants one; public session otherwise."""
    from pkcs11 import TokenFlag

    wants_login = bool(token.flags & TokenFlag.LOGIN_REQUIRED)
    return token.open(user_pin=pin if (pin and wants_login) else None, rw=rw)


def objects_in(session: Any, uri: Pkcs11Uri) -> Iterable[Any]:
    from pkcs11 import Attribute

    template: dict[Any, Any] = {}
    if uri.object is not None:
        template[Attribute.LABEL] = uri.object
    if uri.id is not None:
        template[Attribute.ID] = uri.id
    if uri.object_class is not None:
        template[Attribute.CLASS] = uri.object_class
    return session.get_objects(template)


def _attr(obj: Any, attribute: Any, default: Any = None) -> Any:
    try:
        return obj[attribute]
    except Exception:  # the attribute does not apply to this class, or is sensitive
        return default


def describe(token: Any, obj: Any) -> dict[str, Any]:
    from pkcs11 import Attribute, KeyType

    cls = int(obj.object_class)
    label = _attr(obj, Attribute.LABEL, "")
    object_id = _attr(obj, Attribute.ID, b"")
    key_type = _attr(obj, Attribute.KEY_TYPE)
    row = {
        "token": token.label, "type": CLASS_TYPES.get(cls, f"0x{cls:x}"), "label": label,
        "id": object_id.hex() if object_id else "",
        "key_type": KeyType(key_type).name if key_type is not None else "",
        "uri": object_uri(token_info(token), label, object_id, cls).format(),
    }
    return row


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out=None) -> None:
    """Fixed-width columns under an upper-case header, like nShield's listings."""
    out = out or sys.stdout
    widths = [max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        json.dump(list(rows), sys.stdout, indent=2)
        print()
    else:
        print_table(rows, columns)


def add_listing_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@command("list-objects", "tokens", "list the objects of PKCS#11 tokens with their pkcs11: URIs")
class ListObjects:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("uri", nargs="?", help="pkcs11: URI selecting tokens/objects (default: all)")
        p.add_argument("--pin", help="user PIN, to see private objects (or pin-value in the URI, or SOFTSHIELD_PIN)")
        add_listing_arguments(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from . import p11client

        uri = parse_uri(args.uri)
        lib = p11client.load()
        rows = []
        for token in matching_tokens(lib, uri):
            with open_session(token, pin_for(uri, args.pin)) as session:
                rows.extend(describe(token, obj) for obj in objects_in(session, uri))
        emit(rows, ("token", "type", "label", "id", "key_type", "uri"), args.json)
        return 0


@command("list-tokens", "tokens", "list the initialised PKCS#11 tokens with their pkcs11: URIs")
class ListTokens:
    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("uri", nargs="?", help="pkcs11: URI selecting tokens (default: all)")
        add_listing_arguments(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from . import p11client

        lib = p11client.load()
        rows = []
        for token in matching_tokens(lib, parse_uri(args.uri)):
            info = token_info(token)
            rows.append({"slot": info["slot-id"], "label": token.label, "serial": info["serial"],
                         "uri": token_uri(info).format()})
        emit(rows, ("slot", "label", "serial", "uri"), args.json)
        return 0
