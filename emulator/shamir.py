"""K-of-N secret sharing of a card set's logical token.

The choice: pycryptodome's `Crypto.Protocol.SecretSharing.Shamir` (Shamir's scheme over GF(2^128),
for 16-byte secrets), a well-kept library, instead of code of our own. A card set's logical token is
therefore a 16-byte (128-bit) secret; every key it protects is derived from it with HKDF, which
matches the 128-bit security strength of all the supported cipher suites.
"""

from __future__ import annotations

import os

# pycryptodome is imported where a quorum is split or combined: a process that only lists the
# card sets (every C_Initialize) never needs it.

SECRET_BYTES = 16
MAX_SHARES = 64  # nShield allows card sets of up to 64 cards


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def split(secret: bytes, k: int, n: int) -> list[tuple[int, bytes]]:
    """N shares (x, y); any K of them recover `secret`."""
    if len(secret) != SECRET_BYTES:
        raise ValueError("a shared secret is 16 bytes")
    if not 1 <= k <= n <= MAX_SHARES:
        raise ValueError(f"quorum {k}/{n} is not 1 <= K <= N <= {MAX_SHARES}")
    from Crypto.Protocol.SecretSharing import Shamir

    return Shamir.split(k, n, secret)


def combine(shares: list[tuple[int, bytes]]) -> bytes:
    """The secret from K distinct shares (a wrong share gives a wrong secret: callers check it)."""
    xs = [x for x, _ in shares]
    if len(set(xs)) != len(xs):
        raise ValueError("the same share twice")
    from Crypto.Protocol.SecretSharing import Shamir

    return Shamir.combine(shares)
