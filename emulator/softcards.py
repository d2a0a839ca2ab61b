"""Softcards (`ppmk --new NAME`): a logical token protected by a passphrase alone.

A softcard is the same kind of logical token C_InitToken makes in load-sharing mode (tokens.py:
`softcard_<hash>`, the hash unrelated to the passphrase, as nShield's softcard documentation
says): its 32-byte logical key is sealed under a scrypt-derived key of the passphrase, and keys
protected by it are sealed under that logical key.
Both the user and the security-officer wrap use the softcard's passphrase, so `ppmk` softcards and
PKCS#11 tokens are one thing with one file format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import TokenNotFound, WorldStateError
from .tokens import TokenInfo

if TYPE_CHECKING:
    from .module import Module

MIN_PASSPHRASE = 1


def create(module: "Module", name: str, passphrase: bytes) -> TokenInfo:
    if not name or len(name) > 32:
        raise WorldStateError(f"softcard name {name!r}: 1 to 32 characters (it is the PKCS#11 token label)")
    if any(t.label == name for t in module._tokens.list()):
        raise WorldStateError(f"a softcard named `{name}' already exists")
    if len(passphrase) < MIN_PASSPHRASE:
        raise WorldStateError("a softcard needs a passphrase")
    info = module.init_token(name, passphrase)
    so = module.login(info.hash, "so", passphrase)
    module.init_user_pin(info.hash, so, passphrase)
    return module.token_info(info.hash)


def by_name(module: "Module", name: str) -> TokenInfo:
    for info in module._tokens.list():
        if info.label == name:
            return info
    raise TokenNotFound(f"no softcard named `{name}' in this world")


def list_softcards(module: "Module") -> list[TokenInfo]:
    return sorted(module._tokens.list(), key=lambda t: (t.created, t.hash))
