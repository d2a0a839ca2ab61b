"""Which objects one client sees of the shared module: where a call's arguments touch objects, and
session objects per application.

Both rules that hide objects from a client go through the same two pieces:
- `reach(function)`: which parameters are object handles (and the code an invisible handle gets
  there, `HANDLE_CODES`), where the mechanism is (some parameters name a second key:
  `PARAMETER_HANDLES`) and which outputs are objects the call creates, from the C signature;
- `first_hidden`: the answer for the first argument handle a rule hides.
`logins.PublicView` hides private objects from a client without the login; `SessionObjects` here
hides other clients' session objects. PKCS#11 3.0 §4.4: "session objects are only visible to the
application which created them" and are destroyed when the session that created them closes; token
objects are shared by every application. The module behind the hardserver is one application, so
the server keeps who created each session object and answers for the others as if it did not exist.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

from pkcs11_shim.functions import CFunction, Plan, params_of
from pkcs11_shim.constants import CKF_HKDF_SALT_KEY, CKM_HKDF_DATA, CKM_HKDF_DERIVE, CKR, Attribute, Mechanism
from pkcs11_shim.hardserver.codec import Codec

if TYPE_CHECKING:
    from pkcs11_shim.hardserver.clients import Client


#: Object-handle parameter -> what the module answers for a handle that is not visible to the session
#: (the function texts: C_GetAttributeValue & co. CKR.OBJECT_HANDLE_INVALID, *Init and C_DeriveKey
#: CKR.KEY_HANDLE_INVALID, C_WrapKey's wrapping key CKR.WRAPPING_KEY_HANDLE_INVALID, ...).
HANDLE_CODES: dict[str, int] = {
    "hObject": CKR.OBJECT_HANDLE_INVALID, "hKey": CKR.KEY_HANDLE_INVALID, "hBaseKey": CKR.KEY_HANDLE_INVALID,
    "hPublicKey": CKR.KEY_HANDLE_INVALID, "hPrivateKey": CKR.KEY_HANDLE_INVALID,
    "hEncryptionKey": CKR.KEY_HANDLE_INVALID, "hAuthenticationKey": CKR.KEY_HANDLE_INVALID,
    "hWrappingKey": CKR.WRAPPING_KEY_HANDLE_INVALID, "hUnwrappingKey": CKR.UNWRAPPING_KEY_HANDLE_INVALID,
}


def _handle_parameter(ffi: Any, mechanism: Any) -> list[int]:
    # CKM_CONCATENATE_BASE_AND_KEY: the parameter is the other key's CK_OBJECT_HANDLE.
    if int(mechanism.ulParameterLen) != ffi.sizeof("CK_OBJECT_HANDLE"):
        return []  # the module's CKR.MECHANISM_PARAM_INVALID
    return [int(ffi.cast("CK_OBJECT_HANDLE *", mechanism.pParameter)[0])]


def _hkdf_salt_key(ffi: Any, mechanism: Any) -> list[int]:
    if int(mechanism.ulParameterLen) != ffi.sizeof("CK_HKDF_PARAMS"):
        return []
    param = ffi.cast("CK_HKDF_PARAMS *", mechanism.pParameter)
    return [int(param.hSaltKey)] if int(param.ulSaltType) == CKF_HKDF_SALT_KEY else []


#: Mechanism -> (the handles its parameter names, the code the module answers for an invalid one
#: there: keymgmt.derive_key resolves them with CKR.KEY_HANDLE_INVALID).
PARAMETER_HANDLES: dict[int, tuple[Callable[[Any, Any], list[int]], int]] = {
    Mechanism.CONCATENATE_BASE_AND_KEY: (_handle_parameter, CKR.KEY_HANDLE_INVALID),
    CKM_HKDF_DERIVE: (_hkdf_salt_key, CKR.KEY_HANDLE_INVALID),
    CKM_HKDF_DATA: (_hkdf_salt_key, CKR.KEY_HANDLE_INVALID),
}


@dataclass(frozen=True)
class Reach:
    """Where one function's arguments touch objects (positions in its C parameter list)."""

    handles: tuple[tuple[int, int], ...]  # (position, CKR for an invisible object there)
    created: tuple[int, ...]  # CK_OBJECT_HANDLE_PTR outputs: objects the call creates
    mechanism: int | None = None  # the CK_MECHANISM_PTR, whose parameter may name keys


def reach(f: CFunction) -> Reach:
    params = params_of(f)
    handles = tuple((i, HANDLE_CODES[name]) for i, (ctype, name) in enumerate(params)
                    if ctype == "CK_OBJECT_HANDLE" and name in HANDLE_CODES)
    # C_FindObjects' handle array is found objects, not created ones (out_handles, never out_ulong).
    created = tuple(i for i, (ctype, name) in enumerate(params)
                    if ctype == "CK_OBJECT_HANDLE_PTR" and f.name != "C_FindObjects")
    mechanism = next((i for i, (ctype, _name) in enumerate(params) if ctype == "CK_MECHANISM_PTR"), None)
    return Reach(handles, created, mechanism)


def reaches(codec: Codec) -> dict[str, Reach]:
    return {plan.name: reach(plan.function) for plan in codec.plans.values()}


def argument_handles(ffi: Any, where: Reach, args: list[Any]) -> Iterator[tuple[int, int]]:
    """(handle, CKR if it is invisible) for every object a call's arguments name."""
    for position, code in where.handles:
        yield int(args[position]), code
    if where.mechanism is not None:
        mechanism = args[where.mechanism]
        if mechanism != ffi.NULL and mechanism.pParameter != ffi.NULL:
            reader, code = PARAMETER_HANDLES.get(int(mechanism.mechanism), (None, 0))
            if reader is not None:
                for handle in reader(ffi, mechanism):
                    yield handle, code


def first_hidden(ffi: Any, where: Reach, args: list[Any], hidden: Callable[[int], bool]) -> int | None:
    """The code for the first handle argument `hidden` hides, or None."""
    for handle, code in argument_handles(ffi, where, args):
        if hidden(handle):
            return code
    return None


def created_handles(ffi: Any, where: Reach, args: list[Any]) -> list[int]:
    return [int(args[i][0]) for i in where.created if args[i] != ffi.NULL]


class SessionObjects:
    """Who created each session object; every call's handles are checked against it."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.ffi, self.lib = codec.ffi, codec.lib
        self.reach = reaches(codec)
        #: session object handle -> (client token, the session that created it). The module never
        #: reuses a handle (handles.session_handles counts up), so an entry cannot outlive into another object.
        self.owners: dict[int, tuple[bytes, int]] = {}
        self.by_session: dict[int, set[int]] = {}
        self.lock = threading.Lock()
        #: The C per-call path's copy of `owners` (set by ClientTable.use_mirror).
        self.mirror: Any = None

    def foreign(self, client: Client, handle: int) -> bool:
        owner = self.owners.get(handle)
        return owner is not None and owner[0] != client.token

    def before(self, client: Client, plan: Plan, args: list[Any]) -> int | None:
        """The invalid-handle code when an argument is another client's session object."""
        if not self.owners:
            return None
        return first_hidden(self.ffi, self.reach[plan.name], args, lambda handle: self.foreign(client, handle))

    def after(self, client: Client, plan: Plan, args: list[Any], rv: int) -> None:
        if rv != CKR.OK:
            return
        if plan.name == "C_DestroyObject":
            self._drop([int(args[1])])
            return
        created = created_handles(self.ffi, self.reach[plan.name], args)
        session = int(args[0])
        mine = [handle for handle in created if not self._token_object(session, handle)]
        if mine:
            with self.lock:
                for handle in mine:
                    self.owners[handle] = (client.token, session)
                self.by_session.setdefault(session, set()).update(mine)
                if self.mirror is not None:
                    self.mirror.owned(mine, client.token)

    def _token_object(self, session: int, handle: int) -> bool:
        value = self.ffi.new("CK_BBOOL *")
        attr = self.ffi.new("CK_ATTRIBUTE *", {"type": Attribute.TOKEN, "pValue": value, "ulValueLen": 1})
        rv = int(self.lib.C_GetAttributeValue(session, handle, attr, 1))
        # Unreadable (cannot happen for an object just made): keep it to its creator, the safe side.
        return rv == CKR.OK and bool(value[0])

    def find(self, client: Client, plan: Plan, args: list[Any]) -> int:
        """C_FindObjects without other clients' session objects, still filling the caller's array as
        far as matches remain (fewer than asked means the search is over, §5.7.8)."""
        session, out, room, count = int(args[0]), args[1], int(args[2]), args[3]
        if not self.owners or out == self.ffi.NULL or count == self.ffi.NULL or room == 0:
            return self.codec.call(plan, args)
        batch, found = self.ffi.new("CK_OBJECT_HANDLE[]", room), self.ffi.new("CK_ULONG *")
        kept: list[int] = []
        while len(kept) < room:
            want = room - len(kept)
            rv = int(self.lib.C_FindObjects(session, batch, want, found))
            if rv != CKR.OK:
                return rv
            got = int(found[0])
            kept += [h for h in (int(batch[i]) for i in range(got)) if not self.foreign(client, h)]
            if got < want:
                break
        for i, handle in enumerate(kept):
            out[i] = handle
        count[0] = len(kept)
        return CKR.OK

    def forget_session(self, session: int) -> None:
        """The module destroyed the session's objects with it (objects.drop_session_objects)."""
        with self.lock:
            handles = self.by_session.pop(session, set())
            for handle in handles:
                self.owners.pop(handle, None)
            if self.mirror is not None:
                self.mirror.disowned(handles)

    def _drop(self, handles: list[int]) -> None:
        with self.lock:
            for handle in handles:
                owner = self.owners.pop(handle, None)
                if owner is not None:
                    self.by_session.get(owner[1], set()).discard(handle)
            if self.mirror is not None:
                self.mirror.disowned(handles)
