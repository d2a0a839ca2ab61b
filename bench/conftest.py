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


def pytest_sessionfinish(session, exitstatus) -> None:
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
    """{"ours": session, "softhsm": session}, logged in, read-write, on each backend's main token."""
    opened = {}
    for name, backend in backends.BACKENDS.items():
        opened[name] = backend.token("main").open(user_pin=backends.USER_PIN, rw=True)
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
