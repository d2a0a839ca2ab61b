"""How the shim tells a forked child from its parent: `mark[0]` differs in the child.

The child of a fork is a new application (PKCS#11 3.0 §5.1.2): it must call C_Initialize itself
(`library.state`), and must not hand out what its parent also hands out (the CKA_UNIQUE_ID pool,
`attributes.templates.new_uuid4`). Python's at-fork hooks do not run when a C host calls fork()
itself. The embedded library hands over its fork generation (native/forks.h: a pthread_atfork child
handler moves it on, and libc's fork() runs that for a C host's fork() and Python's os.fork alike),
read without a system call. A process that imports the shim without the embedded library (the
hardserver's workers, tests) uses its process id, a system call per read.
"""

from __future__ import annotations

import os
from typing import Any


class _ProcessId:
    """`[0]` is the process id."""

    __slots__ = ()

    def __getitem__(self, _index: int) -> int:
        return os.getpid()


#: Indexable, `[0]` the current fork mark; replaced by `watch`.
mark: Any = _ProcessId()


def watch(generation: Any) -> None:
    """Tell forked children apart by `generation[0]` (the C library's counter) from now on."""
    global mark
    mark = generation
