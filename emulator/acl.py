"""Key ACLs in nShield's shape: permission groups, each a set of actions.

A key may do an action when any of its groups permits it. A group that permits ExportAsBlob may
name the one wrapping key (by key hash) it may be exported under, as nShield groups carry a
`UseAsBlobKey` limit. ACLs can only be reduced, never expanded (nShield's ReduceACL / ExpandACL:
we have no ExpandACL). The module checks them; the PKCS#11 attributes above are only a view.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import paths
from .errors import AclInvalid

ACL_FORMAT = 1


class Action(str, enum.Enum):
    """nShield-style permission names (nShield's ACL permission groups). Names nShield's public docs do not
    show (UnwrapKey, DeriveKey, DigestKey, Destroy) are our own, in the same style."""

    ENCRYPT = "Encrypt"
    DECRYPT = "Decrypt"
    SIGN = "Sign"
    VERIFY = "Verify"
    WRAP = "UseAsBlobKey"  # wrap other keys
    UNWRAP = "UnwrapKey"
    DERIVE = "DeriveKey"
    DIGEST = "DigestKey"  # feed the secret into a digest (C_DigestKey)
    EXPORT_AS_BLOB = "ExportAsBlob"  # be wrapped by another key
    EXPORT_PLAIN = "ExportAsPlain"
    REDUCE_ACL = "ReduceACL"
    GET_APPDATA = "GetAppData"
    SET_APPDATA = "SetAppData"
    DUPLICATE = "DuplicateHandle"
    DESTROY = "Destroy"


_ORDER = {action: index for index, action in enumerate(Action)}


def _sorted(actions: Iterable[Action]) -> list[Action]:
    return sorted(actions, key=_ORDER.__getitem__)


@dataclass(frozen=True)
class PermissionGroup:
    actions: frozenset[Action]
    wrap_key_hash: str | None = None  # ExportAsBlob only under this wrapping key (40 hex) when set

    def __post_init__(self) -> None:
        actions = frozenset(Action(a) for a in self.actions)
        object.__setattr__(self, "actions", actions)
        if self.wrap_key_hash is not None:
            limit = self.wrap_key_hash.lower()
            if not paths.HASH_RE.match(limit):
                raise AclInvalid(f"wrap key hash {self.wrap_key_hash!r} is not 40 hex digits")
            object.__setattr__(self, "wrap_key_hash", limit)

    def permits(self, action: Action, wrap_key_hash: str | None = None) -> bool:
        if action not in self.actions:
            return False
        if action is Action.EXPORT_AS_BLOB and self.wrap_key_hash is not None:
            # An unnamed wrapping key cannot satisfy a limit to one named key.
            return wrap_key_hash is not None and wrap_key_hash.lower() == self.wrap_key_hash
        return True


@dataclass(frozen=True)
class Acl:
    groups: tuple[PermissionGroup, ...]
    #: Action values some group grants with no wrap-key limit: `permits` answers those with one
    #: string lookup (it runs for every use of a key; Enum members hash in Python code).
    _unlimited: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "_unlimited", frozenset(
            action.value for group in self.groups for action in group.actions
            if not (action is Action.EXPORT_AS_BLOB and group.wrap_key_hash is not None)))

    @classmethod
    def allowing(cls, actions: Iterable[Action], *, wrap_key_hash: str | None = None) -> Acl:
        """One group with `actions`: what most keys need."""
        return cls((PermissionGroup(frozenset(actions), wrap_key_hash),))

    def permits(self, action: Action, *, wrap_key_hash: str | None = None) -> bool:
        if action._value_ in self._unlimited:
            return True
        return any(group.permits(action, wrap_key_hash) for group in self.groups)

    def actions(self) -> frozenset[Action]:
        """Every action some group grants (ignoring wrap-key limits)."""
        return frozenset().union(*(group.actions for group in self.groups))

    def reduce(self, keep: Iterable[Action]) -> Acl:
        """Drop every action not in `keep`; groups left empty go. Never adds anything."""
        kept = frozenset(Action(a) for a in keep)
        groups = []
        for group in self.groups:
            actions = group.actions & kept
            if actions:
                limit = group.wrap_key_hash if Action.EXPORT_AS_BLOB in actions else None
                groups.append(PermissionGroup(actions, limit))
        return Acl(tuple(groups))

    def is_subset_of(self, other: Acl) -> bool:
        """True when `other` permits everything this ACL permits (wrap-key limits included)."""
        for group in self.groups:
            for action in group.actions:
                limit = group.wrap_key_hash if action is Action.EXPORT_AS_BLOB else None
                # An unlimited ExportAsBlob asks `other` with no wrapping key named, which only
                # an unlimited group of `other` grants.
                if not other.permits(action, wrap_key_hash=limit):
                    return False
        return True

    # --- stable stored form --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ACL_FORMAT,
            "groups": [
                {"actions": [a.value for a in _sorted(g.actions)], "wrap_key_hash": g.wrap_key_hash}
                for g in self.groups
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Acl:
        if not isinstance(data, dict) or data.get("format") != ACL_FORMAT:
            raise AclInvalid("ACL is not a format-1 ACL object")
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, list):
            raise AclInvalid("ACL has no list of groups")
        groups = []
        for index, raw in enumerate(raw_groups, 1):
            if not isinstance(raw, dict) or not isinstance(raw.get("actions"), list):
                raise AclInvalid(f"ACL group {index} is malformed")
            try:
                actions = frozenset(Action(name) for name in raw["actions"])
            except ValueError as exc:
                raise AclInvalid(f"ACL group {index}: {exc}") from None
            limit = raw.get("wrap_key_hash")
            if limit is not None and not isinstance(limit, str):
                raise AclInvalid(f"ACL group {index}: wrap key hash is not a string")
            groups.append(PermissionGroup(actions, limit))
        return cls(tuple(groups))

    def describe(self) -> list[str]:
        """aclprint-style lines, one block per group."""
        if not self.groups:
            return ["No permission groups: the key permits nothing"]
        lines = []
        for index, group in enumerate(self.groups, 1):
            lines.append(f"Permission group {index}:")
            lines.append("  Actions: " + ", ".join(a.value for a in _sorted(group.actions)))
            if group.wrap_key_hash is not None and Action.EXPORT_AS_BLOB in group.actions:
                lines.append(f"  ExportAsBlob only under wrapping key hash {group.wrap_key_hash}")
        return lines
