"""Who a network connection is, and whether the module's permitted-client list admits it.

The list is `[hs_clients]` of the module's config (netconfig), as nShield's: one entry per client key
hash, with the address it may come from, its permission (priv or unpriv) and, ours, the end of its
validity; `[revoked_clients]` remembers keys taken off the list so a refusal can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from pkcs11_shim.hardserver import netconfig


@dataclass(frozen=True)
class Peer:
    addr: str
    key_hash: str | None
    privileged: bool = False

    def __str__(self) -> str:
        who = f"client key {self.key_hash}" if self.key_hash else "no client certificate"
        return f"{self.addr} ({who})"


class Refused(Exception):
    """A connection we serve nothing on; the message is the log line's reason."""


def admission(config: netconfig.Config, key_hash: str, ip: str) -> netconfig.Entry:
    """The [hs_clients] entry that admits `key_hash` from `ip` now, or Refused saying why not."""
    for entry in config.entries("revoked_clients"):
        if entry.get("keyhash") == key_hash:
            raise Refused(f"client key {key_hash} was revoked at {entry.get('revoked', '?')}")
    entries = [e for e in config.entries("hs_clients") if e.get("keyhash") == key_hash]
    if not entries:
        raise Refused(f"client key {key_hash} is not in [hs_clients] (an unenrolled client)")
    allowed = [e for e in entries if e.get("addr", "") in ("", "0.0.0.0", "::", ip)]
    if not allowed:
        raise Refused(f"client key {key_hash} is permitted only from {entries[0].get('addr')}, not {ip}")
    now = netconfig.utc_now()
    for entry in allowed:
        until = entry.get("validity", "")
        try:
            if not until or netconfig.parse_time(until) > now:
                return entry
        except ValueError as exc:
            raise Refused(f"client key {key_hash}: [hs_clients] validity: {exc}") from None
    raise Refused(f"client key {key_hash} expired: its validity ended at {allowed[0].get('validity')}")
