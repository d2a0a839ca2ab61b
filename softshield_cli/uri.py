"""PKCS#11 URIs (RFC 7512): parse, format, and match against slot, token and object attributes.

`pkcs11:token=my%20token;object=signer;type=private;id=%01?pin-value=1234` names a key the way
OpenSSL's engine, p11-kit, GnuTLS (p11tool) and pkcs11-provider do. Values are octet strings:
percent-decoded here, text attributes as UTF-8, `id` as bytes. Formatting percent-encodes every
octet outside the RFC's unreserved set and its path/query extras, and always encodes `id` whole,
as p11tool prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

SCHEME = "pkcs11:"

#: RFC 7512 §2.3 path attributes, in the order we print them (p11tool's order for token ones).
PATH_ATTRIBUTES = (
    "library-manufacturer", "library-description", "library-version",
    "slot-manufacturer", "slot-description", "slot-id",
    "model", "manufacturer", "serial", "token",
    "id", "object", "type",
)
QUERY_ATTRIBUTES = ("pin-source", "pin-value", "module-name", "module-path")
#: the `type` values and the CKO_ numbers they stand for (§2.3: cert, data, private, public, secret-key).
TYPES = {"data": 0, "cert": 1, "public": 2, "private": 3, "secret-key": 4}
CLASS_TYPES = {number: name for name, number in TYPES.items()}

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = _UNRESERVED | frozenset(b":[]@!$'()*+,=&")  # pk11-pchar without ';' '/' '?' '%'
_QUERY_SAFE = _UNRESERVED | frozenset(b":[]@!$'()*+,=/?|")  # pk11-qchar without '&' '%'


class UriError(ValueError):
    """Not a PKCS#11 URI we can use; the message names the part at fault."""


def percent_decode(text: str) -> bytes:
    out = bytearray()
    raw = text.encode("utf-8")
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            pair = raw[i + 1:i + 3]
            try:
                if len(pair) != 2:
                    raise ValueError
                out.append(int(pair, 16))
            except ValueError:
                raise UriError(f"bad percent-encoding at `{text[i:i + 3]}'") from None
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def percent_encode(value: bytes | str, safe: frozenset[int] = _PATH_SAFE, encode_all: bool = False) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return "".join(chr(b) if (b in safe and not encode_all) else f"%{b:02X}" for b in data)


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed URI: path and query attributes with decoded values (`id` as bytes, others text)."""

    path: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    # --- reading -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> "Pkcs11Uri":
        if not text.lower().startswith(SCHEME):
            raise UriError(f"`{text}' does not start with {SCHEME}")
        rest = text[len(SCHEME):]
        path_part, _, query_part = rest.partition("?")
        path: dict[str, Any] = {}
        for item in filter(None, path_part.split(";")):
            name, sep, value = item.partition("=")
            name = name.strip().lower()
            if not sep or not name:
                raise UriError(f"path attribute `{item}' is not name=value")
            if name in path:
                raise UriError(f"path attribute `{name}' given twice")  # RFC 7512 §2.3
            decoded = percent_decode(value)
            if name == "id":
                path[name] = decoded
            else:
                path[name] = decoded.decode("utf-8", errors="strict")
        if "type" in path and path["type"] not in TYPES:
            raise UriError(f"type=`{path['type']}' is not one of {', '.join(TYPES)}")
        if "slot-id" in path and not str(path["slot-id"]).isdigit():
            raise UriError("slot-id must be a decimal number")
        query: dict[str, str] = {}
        for item in filter(None, query_part.split("&")):
            name, sep, value = item.partition("=")
            if not sep:
                raise UriError(f"query attribute `{item}' is not name=value")
            query[name.strip().lower()] = percent_decode(value).decode("utf-8")
        return cls(path, query)

    def get(self, name: str, default: Any = None) -> Any:
        return self.path.get(name, default)

    @property
    def token(self) -> str | None:
        return self.path.get("token")

    @property
    def object(self) -> str | None:
        return self.path.get("object")

    @property
    def type(self) -> str | None:
        return self.path.get("type")

    @property
    def id(self) -> bytes | None:
        return self.path.get("id")

    @property
    def object_class(self) -> int | None:
        return TYPES[self.type] if self.type else None

    @property
    def pin(self) -> str | None:
        """pin-value, or the first line of the file pin-source names (file: URIs or plain paths)."""
        if "pin-value" in self.query:
            return self.query["pin-value"]
        source = self.query.get("pin-source")
        if source:
            path = source[len("file:"):] if source.startswith("file:") else source
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        return None

    # --- writing -------------------------------------------------------------------------------
    def format(self) -> str:
        parts = []
        names = [n for n in PATH_ATTRIBUTES if n in self.path] + sorted(set(self.path) - set(PATH_ATTRIBUTES))
        for name in names:
            value = self.path[name]
            if name == "id":
                parts.append(f"id={percent_encode(bytes(value), encode_all=True)}")
            else:
                parts.append(f"{name}={percent_encode(str(value))}")
        text = SCHEME + ";".join(parts)
        if self.query:
            text += "?" + "&".join(f"{k}={percent_encode(v, _QUERY_SAFE)}" for k, v in self.query.items())
        return text

    __str__ = format

    # --- matching (§3.3: every attribute the URI names must match; unknown ones never match) ----
    def matches_token(self, info: Mapping[str, Any]) -> bool:
        """info: any of library-*, slot-*, model, manufacturer, serial, token -> text (slot-id int)."""
        for name in PATH_ATTRIBUTES[:10]:
            if name in self.path and name in info:
                if str(self.path[name]) != str(info[name]).rstrip():
                    return False
            elif name in self.path:
                return False
        return True

    def matches_object(self, label: str | None, object_id: bytes | None, object_class: int | None) -> bool:
        if "object" in self.path and self.path["object"] != (label or ""):
            return False
        if "id" in self.path and self.path["id"] != (object_id or b""):
            return False
        if "type" in self.path and TYPES[self.path["type"]] != object_class:
            return False
        return True


def parse(text: str) -> Pkcs11Uri:
    return Pkcs11Uri.parse(text)


def token_uri(info: Mapping[str, Any]) -> Pkcs11Uri:
    """The URI naming a token, from model/manufacturer/serial/token text."""
    return Pkcs11Uri({k: str(info[k]).rstrip() for k in ("model", "manufacturer", "serial", "token") if info.get(k)})


def object_uri(token: Mapping[str, Any], label: str | None, object_id: bytes | None,
               object_class: int | None) -> Pkcs11Uri:
    path: dict[str, Any] = dict(token_uri(token).path)
    if object_id:
        path["id"] = object_id
    if label:
        path["object"] = label
    if object_class in CLASS_TYPES:
        path["type"] = CLASS_TYPES[object_class]
    return Pkcs11Uri(path)
