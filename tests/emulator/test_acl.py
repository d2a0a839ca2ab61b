from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.acl import Acl, Action, PermissionGroup
from emulator.errors import AclInvalid

WRAPPER = "ab" * 20
OTHER = "cd" * 20

actions = st.frozensets(st.sampled_from(list(Action)))
groups = st.builds(PermissionGroup, actions, st.sampled_from([None, WRAPPER, OTHER]))
acls = st.builds(Acl, st.lists(groups, max_size=4).map(tuple))


def test_action_values_are_nshield_names() -> None:
    assert Action.WRAP.value == "UseAsBlobKey"
    assert Action.EXPORT_AS_BLOB.value == "ExportAsBlob"
    assert Action.EXPORT_PLAIN.value == "ExportAsPlain"
    assert Action.REDUCE_ACL.value == "ReduceACL"
    assert Action("Sign") is Action.SIGN


def test_permits_any_group() -> None:
    acl = Acl((PermissionGroup(frozenset({Action.SIGN})), PermissionGroup(frozenset({Action.DECRYPT}))))
    assert acl.permits(Action.SIGN) and acl.permits(Action.DECRYPT)
    assert not acl.permits(Action.ENCRYPT)
    assert acl.actions() == {Action.SIGN, Action.DECRYPT}


def test_export_as_blob_limited_to_one_wrapping_key() -> None:
    acl = Acl.allowing([Action.EXPORT_AS_BLOB, Action.SIGN], wrap_key_hash=WRAPPER.upper())
    assert acl.permits(Action.EXPORT_AS_BLOB, wrap_key_hash=WRAPPER)
    assert not acl.permits(Action.EXPORT_AS_BLOB, wrap_key_hash=OTHER)
    assert not acl.permits(Action.EXPORT_AS_BLOB)  # an unnamed wrapper cannot meet the limit
    assert acl.permits(Action.SIGN)  # the limit concerns ExportAsBlob only


def test_bad_wrap_key_hash_refused() -> None:
    with pytest.raises(AclInvalid, match="40 hex"):
        PermissionGroup(frozenset({Action.EXPORT_AS_BLOB}), "xyz")


def test_reduce_drops_actions_and_empty_groups() -> None:
    acl = Acl((PermissionGroup(frozenset({Action.SIGN, Action.EXPORT_PLAIN})),
               PermissionGroup(frozenset({Action.EXPORT_AS_BLOB}), WRAPPER)))
    reduced = acl.reduce([Action.SIGN, Action.DECRYPT])
    assert reduced.groups == (PermissionGroup(frozenset({Action.SIGN})),)
    assert not reduced.permits(Action.DECRYPT)  # keep never adds


@given(acls, actions)
def test_reduce_never_widens(acl: Acl, keep: frozenset) -> None:
    reduced = acl.reduce(keep)
    assert reduced.is_subset_of(acl)
    assert reduced.actions() <= acl.actions() & keep


@given(acls)
def test_json_round_trip_is_stable(acl: Acl) -> None:
    data = json.loads(json.dumps(acl.to_dict()))
    again = Acl.from_dict(data)
    assert again.to_dict() == acl.to_dict()
    for action in Action:
        for limit in (None, WRAPPER, OTHER):
            assert again.permits(action, wrap_key_hash=limit) == acl.permits(action, wrap_key_hash=limit)


def test_subset_respects_wrap_limits() -> None:
    limited = Acl.allowing([Action.EXPORT_AS_BLOB], wrap_key_hash=WRAPPER)
    free = Acl.allowing([Action.EXPORT_AS_BLOB])
    assert limited.is_subset_of(free)
    assert not free.is_subset_of(limited)
    assert not limited.is_subset_of(Acl.allowing([Action.EXPORT_AS_BLOB], wrap_key_hash=OTHER))
    assert Acl(()).is_subset_of(limited)


@pytest.mark.parametrize("bad, reason", [
    ({"groups": []}, "format-1"),
    ({"format": 1}, "list of groups"),
    ({"format": 1, "groups": [{"actions": ["Fly"]}]}, "group 1"),
    ({"format": 1, "groups": ["Sign"]}, "malformed"),
])
def test_from_dict_rejects_malformed(bad: dict, reason: str) -> None:
    with pytest.raises(AclInvalid, match=reason):
        Acl.from_dict(bad)


def test_describe_lines() -> None:
    acl = Acl((PermissionGroup(frozenset({Action.VERIFY, Action.SIGN})),
               PermissionGroup(frozenset({Action.EXPORT_AS_BLOB}), WRAPPER)))
    assert acl.describe() == [
        "Permission group 1:",
        "  Actions: Sign, Verify",
        "Permission group 2:",
        "  Actions: ExportAsBlob",
        f"  ExportAsBlob only under wrapping key hash {WRAPPER}",
    ]
    assert Acl(()).describe() == ["No permission groups: the key permits nothing"]
