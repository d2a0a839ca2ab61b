"""CPython's cyclic collector paused while a token's keys are listed or dropped in bulk."""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

_PAUSE_LOCK = threading.Lock()
_pause_depth = 0
_paused_collector = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """CPython's cyclic collector held off while a token's keys are listed or dropped in bulk: a
    login with 10,000 keys makes ~17 tracked objects per key (key, file stamp, cache entry, index
    row, material loader, P11Object, index entries), none in a cycle, and the collector would
    otherwise walk the whole growing heap several times over (its oldest generation runs each time
    the survivors grow by a quarter): about a tenth of such a login.
    Nested and concurrent pauses count; the collector is switched back on only if this pause
    switched it off (a host that disabled it keeps it disabled)."""
    global _pause_depth, _paused_collector
    with _PAUSE_LOCK:
        if _pause_depth == 0:
            _paused_collector = gc.isenabled()
            if _paused_collector:
                gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pause_depth -= 1
            if _pause_depth == 0 and _paused_collector:
                _paused_collector = False
                _age_survivors()
                gc.enable()


def _age_survivors() -> None:
    """Move what the paused stretch allocated (the token's listing: ~7 containers per key, none in
    a cycle, all kept) to the collector's oldest generation, as two collections would, without the
    two walks over it: `gc.freeze()` moves every tracked object to the permanent generation and
    resets the young count, `gc.unfreeze()` moves them all to the oldest one; both are list splices.
    After a login to 10,000 keys, those walks and the full collection they lead to cost ~20 ms of
    the first find. Not when the host keeps objects frozen itself (a pre-fork server does, so its
    children share those pages): unfreezing would undo that."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
