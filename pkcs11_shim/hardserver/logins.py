"""Login state per application: what a client that is not logged in sees of a token the module is
logged in to for another client.

On PKCS#11 each process is its own application with its own login state (PKCS#11 3.0 §5.6: "all
sessions an application has with a token share the same login state"; nShield's hardserver keeps it
per client connection). Behind the hardserver the module is one application, logged in for whoever
logged in first, so for every other client the server restores what the module would say if that
client were alone and logged out:
- C_GetSessionInfo reports a public session (CKS_RO/RW_PUBLIC_SESSION);
- private objects do not exist: C_FindObjectsInit finds only Attribute.PRIVATE=FALSE objects, and a
  private object's handle answers the invalid-handle code of the argument it is passed in;
- an object the call would create as private is refused with CKR.USER_NOT_LOGGED_IN (§4.4: private
  objects need the user logged in), and undone if the module made it from defaults;
- SO functions answer CKR.USER_NOT_LOGGED_IN.
Clients that hold the login (or any client while nobody holds one) reach the module unchanged.
Which arguments are handles, and the code each gets, is `visibility.reach`, shared with the rule
that hides other clients' session objects.
"""

from __future__ import annotations

from typing import Any

from pkcs11_shim.constants import Attribute, CKR
from pkcs11_shim.functions import Plan
from pkcs11_shim.hardserver.codec import Codec
from pkcs11_shim.hardserver.visibility import created_handles, first_hidden, reaches


#: CK_STATE of a logged-in session -> the state of the same session without the login (§5.6).
PUBLIC_STATE = {1: 0, 3: 2, 4: 2}  # RO_USER -> RO_PUBLIC; RW_USER, RW_SO -> RW_PUBLIC
#: Functions only a logged-in SO may call (§5.6.5 C_InitPIN).
SO_ONLY = frozenset({"C_InitPIN"})


class PublicView:
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.ffi, self.lib = codec.ffi, codec.lib
        self.reach = reaches(codec)
        self.false = self.ffi.new("CK_BBOOL *", 0)  # read by the module only, shared by every call

    def _private(self, session: int, handle: int) -> bool:
        value = self.ffi.new("CK_BBOOL *")
        attr = self.ffi.new("CK_ATTRIBUTE *", {"type": Attribute.PRIVATE, "pValue": value, "ulValueLen": 1})
        rv = int(self.lib.C_GetAttributeValue(session, handle, attr, 1))
        # An invalid handle is the module's to answer, by the call itself.
        return rv == CKR.OK and bool(value[0])

    def before(self, plan: Plan, args: list[Any]) -> int | None:
        """A CKR to answer instead of the call, or None (args may be rewritten in place)."""
        if plan.name in SO_ONLY:
            return CKR.USER_NOT_LOGGED_IN
        session = int(args[0])
        refused = first_hidden(self.ffi, self.reach[plan.name], args, lambda handle: self._private(session, handle))
        if refused is not None:
            return refused
        if plan.name == "C_FindObjectsInit":
            args[1], args[2] = self._public_template(args[1], int(args[2]))
        return None

    def _public_template(self, template: Any, count: int) -> tuple[Any, int]:
        """The search template plus Attribute.PRIVATE = CK_FALSE (alive as long as the call's args)."""
        if template == self.ffi.NULL and count:
            return template, count  # the module's CKR.ARGUMENTS_BAD
        attrs = self.ffi.new("CK_ATTRIBUTE[]", count + 1)
        for i in range(count):
            attrs[i] = template[i]
        attrs[count].type, attrs[count].pValue, attrs[count].ulValueLen = Attribute.PRIVATE, self.false, 1
        return attrs, count + 1

    def after(self, plan: Plan, args: list[Any], rv: int) -> int:
        """The answer the client gets, given the module's."""
        if rv != CKR.OK:
            return rv
        if plan.name == "C_GetSessionInfo" and args[1] != self.ffi.NULL:
            args[1].state = PUBLIC_STATE.get(int(args[1].state), int(args[1].state))
            return rv
        session = int(args[0])
        created = created_handles(self.ffi, self.reach[plan.name], args)
        if any(self._private(session, handle) for handle in created):
            for handle in created:
                self.lib.C_DestroyObject(session, handle)
            return CKR.USER_NOT_LOGGED_IN
        return rv
