"""Fixtures of the benchmarks: one logged-in R/W session per backend on its "main" token, the keys
the hot paths use, and the report written when the run ends (bench/report.py)."""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import backends  # noqa: E402
import report  # noqa: E402


# --- progress (issue 8): one stderr line per benchmark, so a 10-minute `make bench` shows it is alive
_PROGRESS: dict = {"total": 0, "done": 0, "started": 0.0}


def _progress_enabled() -> bool:
    from softshield_cli.progress import FORCE_OFF

    return os.environ.get("SOFTSHIELD_PROGRESS", "").strip().lower() not in FORCE_OFF


def _bench_label(item) -> tuple[str, str]:
    """(group, what): the benchmark group (the case, or the test's name) and the implementation."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    group = params.get("case") or item.originalname
    extra = [str(params[k]) for k in ("direction", "kind") if k in params]
    if extra:
        group = f"{group} {' '.join(extra)}"
    return group, str(params.get("impl", ""))


def pytest_collection_finish(session) -> None:
    _PROGRESS["total"] = len(session.items)  # after -k / -m deselection
    _PROGRESS["started"] = time.monotonic()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    if not _progress_enabled():
        return
    _PROGRESS["done"] += 1
    group, impl = _bench_label(item)
    elapsed = time.monotonic() - _PROGRESS["started"]
    minutes, seconds = divmod(int(elapsed), 60)
    line = f"bench: {_PROGRESS['done']}/{_PROGRESS['total']} {group}{f' [{impl}]' if impl else ''} ({minutes}m{seconds:02d}s)\n"
    capture = item.config.pluginmanager.get_plugin("capturemanager")
    # Around pytest's own capture, so the line reaches the terminal or CI log as it happens.
    if capture is not None:
        with capture.global_and_fixture_disabled():
            sys.stderr.write(line)
            sys.stderr.flush()
    else:
        sys.stderr.write(line)


def pytest_sessionfinish(session, exitstatus) -> None:
    backends.OPENCRYPTOKI_TOKEN.stop()
    if report.ROWS:
        out = report.OUT / "smoke" if backends.SMOKE else report.OUT
        text = report.write(out)
        terminal = session.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.write_line(text)
        else:
            print(text)


def measure(benchmark, fn, *, rounds: int | None = None) -> float:
    """Seconds per call of fn: pytest-benchmark's median, or one timed call when it is disabled."""
    if getattr(benchmark, "disabled", False) or backends.SMOKE:
        start = time.perf_counter()
        benchmark(fn)
        return time.perf_counter() - start
    if rounds is not None:
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn)
    return benchmark.stats.stats.median


@pytest.fixture(scope="session")
def sessions():
    """{"ours": session, "softhsm": session, "opencryptoki": session}, logged in, read-write, on each
    backend's main token ("opencryptoki" only where its soft token could be set up)."""
    opened = {}
    for name, backend in backends.BACKENDS.items():
        opened[name] = backend.token("main").open(user_pin=backends.USER_PIN, rw=True)
    if backends.OPENCRYPTOKI_TOKEN.pid is not None:  # the second C peer, where it could be set up
        try:
            opened["opencryptoki"] = backends.OPENCRYPTOKI.token("main").open(user_pin=backends.USER_PIN, rw=True)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot start is a skipped column
            backends.OPENCRYPTOKI_TOKEN.reason = f"opencryptoki soft token not usable: {exc!r}"
    yield opened
    for s in opened.values():
        s.close()


@pytest.fixture(scope="session")
def lib_sessions():
    """Further sessions (one per thread) on each main token: callables name -> new session."""
    made = []

    def open_session(name: str):
        s = backends.BACKENDS[name].token("main").open(rw=True)
        made.append(s)
        return s

    yield open_session
    for s in made:
        s.close()
