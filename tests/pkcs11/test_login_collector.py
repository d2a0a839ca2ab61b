"""`collector_pause.collector_paused`, held around a login's bulk listing and a logout's bulk drop, gives
CPython's cyclic collector back exactly as it found it: on after the outermost of nested or
overlapping pauses, still off when the host had switched it off, and on after an exception."""

from __future__ import annotations

import gc
import threading

import pytest

from pkcs11_shim.collector_pause import collector_paused


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_nested_pauses_restore_on_outermost_exit() -> None:
    with collector_paused():
        assert gc.isenabled() is False
        with collector_paused():
            assert gc.isenabled() is False
        assert gc.isenabled() is False
    assert gc.isenabled() is True


def test_host_disabled_collector_stays_disabled() -> None:
    gc.disable()
    with collector_paused():
        assert gc.isenabled() is False
    assert gc.isenabled() is False


def test_exception_restores_collector() -> None:
    with pytest.raises(RuntimeError):
        with collector_paused():
            raise RuntimeError("listing failed")
    assert gc.isenabled() is True


def test_overlapping_pauses_from_two_threads() -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with collector_paused():
            entered.set()
            release.wait(5)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    thread.start()
    entered.wait(5)
    with collector_paused():
        pass
    # The other thread's pause is still open: this thread's exit must not switch the collector on.
    assert gc.isenabled() is False
    release.set()
    thread.join(5)
    assert seen == [False]
    assert gc.isenabled() is True


def test_what_a_pause_allocated_leaves_the_young_generation_unwalked() -> None:
    before = [generation["collections"] for generation in gc.get_stats()]
    with collector_paused():
        kept = [[i] for i in range(20_000)]  # like a listing: containers that all survive
    # Moved to the oldest generation in one splice: the young generation does not overflow with
    # them, so no collection walks them on the way out.
    assert [generation["collections"] for generation in gc.get_stats()] == before
    assert gc.get_count()[0] < 1_000 and len(kept) == 20_000


def test_a_host_s_frozen_objects_stay_frozen() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        with collector_paused():
            kept = [[i] for i in range(1_000)]
        assert gc.get_freeze_count() == frozen and len(kept) == 1_000
    finally:
        gc.unfreeze()
