"""Which forwarded calls the hardserver's C loop answers, and which it hands to the Python path.

The C loop (native/server/serve.c, generated per function by `pkcs11_shim.server_build`) reads
each frame, decodes it with the same plan and the same checks as `codec.Codec`, calls the module's
C entry point and writes the reply, never entering the server's Python. It answers a call only
where no per-application rule changes the answer; everything else goes, as the frame it read, to
the Python path (`server.Hardserver._call`), the reference, which answers it exactly as it answers
every call when the C loop is off (SOFTSHIELD_HARDSERVER_C_PATH=0).

By function (decided here, at build time, from the plans):
- `PYTHON_FUNCTIONS`: calls that change which sessions and logins a client holds, or read the
  caller's environment (`ClientTable`'s hooks, functions.FORWARDED_ENV);
- message-based calls and their inits: the per-message parameter layout follows the session's
  C_Message*Init (`Codec.message_kinds`);
- calls that create or destroy objects: the server records who owns each session object
  (`visibility.SessionObjects`);
- functions the protocol does not carry.
By the call (decided in C, at run time, from state the Python path keeps up to date through
`fastpath.Mirror`):
- the session handle is not one of this client's sessions;
- the session's slot has a login held by other clients, not this one (`logins.PublicView` rewrites
  the answer);
- a handle argument is another client's session object; the mechanism's parameter names keys
  (`visibility.PARAMETER_HANDLES`); C_FindObjects while any client owns a session object;
- anything the C decoder refuses (a length past the bytes held, a stray pointer, a bad nested
  template, an unknown function id): the Python path refuses it with its own message;
- a non-CALL frame, or a frame on a connection that is not a plain Unix socket.
"""

from __future__ import annotations

from pkcs11_shim.functions import Plan
from pkcs11_shim.hardserver.visibility import reach

#: Function -> why the Python path answers it.
PYTHON_FUNCTIONS: dict[str, str] = {
    "C_OpenSession": "records the new session as the client's",
    "C_CloseSession": "forgets the session and may end the client's login",
    "C_CloseAllSessions": "closes the caller's sessions only",
    "C_Login": "login per application (the server's login records)",
    "C_LoginUser": "login per application (the server's login records)",
    "C_LoginEnd": "login per application (the server's login records)",
    "C_Logout": "login per application (the server's login records)",
    "C_DestroyObject": "drops the object from the session-object owners",
}


def python_reason(plan: Plan) -> str | None:
    """Why `plan`'s calls always take the Python path, or None when the C loop may answer them."""
    if plan.ops is None:
        return "not carried by the protocol"
    if plan.name in PYTHON_FUNCTIONS:
        return PYTHON_FUNCTIONS[plan.name]
    if plan.env:
        return "answered under the caller's environment variables"
    if plan.family:
        return "message-based: the per-message layout follows the session's C_Message*Init"
    if reach(plan.function).created:
        return "creates objects: the server records who owns each session object"
    return None


def c_plans(all_plans: list[Plan]) -> list[Plan]:
    return [p for p in all_plans if python_reason(p) is None]
