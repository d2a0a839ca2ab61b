"""Object handles: a token object's is derived from its identity, a session object's counts up.

A token object's handle is derived from its identity (app, ident), so every process and every module
of the world that loads the same kmdata gives the same key the same handle (a client load-sharing over
several modules may use a handle found through one module on another). Session objects, which exist
in one module only, count up from 1. See `token_handle`.
"""

from __future__ import annotations

import hashlib
import itertools

#: Session object handles: 1, 2, ... in this process.
session_handles = itertools.count(1)

#: Token object handles lie in [2**62, 2**63): above anything the session counter reaches, and below
#: the sign bit of hosts that keep a CK_ULONG in a signed 64-bit integer (Java's long).
TOKEN_HANDLE_BASE = 1 << 62


def token_handle(app: str, ident: str, probe: int = 0) -> int:
    """The handle of the token object key_<app>_<ident>: SHA-256 of its identity, 62 bits of it.
    Collision rule: when another identity already holds the handle in the same store, the object
    takes the next probe (probe 1, 2, ...). Two identities collide with probability ~n^2/2^63 (about
    1e-11 with 10,000 keys); only then can two modules that loaded the colliding keys in different
    orders disagree on which of the two got probe 0."""
    digest = hashlib.sha256(f"{app}\0{ident}\0{probe}".encode()).digest()
    return TOKEN_HANDLE_BASE | (int.from_bytes(digest[:8], "big") >> 2)
