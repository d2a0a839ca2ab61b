"""Progress for long work (large key generation, filling a token, security-domain export, bench runs).

Shown on stderr so that stdout stays parseable (`--json`, tables). On a terminal it redraws one line;
elsewhere it prints nothing unless SOFTSHIELD_PROGRESS=1 asks for it (then one line per step of 10 %
or per second, so CI logs show that a long job is alive). SOFTSHIELD_PROGRESS=0 silences it always.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Optional

#: SOFTSHIELD_PROGRESS values that force progress on / off.
FORCE_ON = ("1", "yes", "true", "on")
FORCE_OFF = ("0", "no", "false", "off")
REDRAW_INTERVAL = 0.2  # seconds between redraws on a terminal
LOG_INTERVAL = 1.0  # seconds between lines when the stream is not a terminal


def wanted(stream: IO[str]) -> bool:
    setting = os.environ.get("SOFTSHIELD_PROGRESS", "").strip().lower()
    if setting in FORCE_OFF:
        return False
    if setting in FORCE_ON:
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


class Progress:
    """`with Progress("generating", total=n) as p: ... p.advance()`; total None shows elapsed time.

    Without a total (one long call that reports nothing, such as RSA-8192 generation) a ticker
    thread redraws the elapsed time until the block ends.
    """

    def __init__(self, label: str, total: Optional[int] = None, *, unit: str = "",
                 stream: Optional[IO[str]] = None, enabled: Optional[bool] = None) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = wanted(self.stream) if enabled is None else enabled
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._started = 0.0
        self._last_draw = 0.0
        self._last_decile = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None

    def __enter__(self) -> "Progress":
        self._started = time.monotonic()
        if self.enabled:
            self._draw(force=True)
            if self.total is None:
                self._ticker = threading.Thread(target=self._tick, name="softshield-progress", daemon=True)
                self._ticker.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.enabled:
            outcome = "done" if exc_type is None else "stopped"
            self._write(self._line(outcome), final=True)

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
        if self.enabled:
            self._draw()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _tick(self) -> None:
        interval = REDRAW_INTERVAL if self.terminal else LOG_INTERVAL
        while not self._stop.wait(interval):
            self._draw(force=True)

    def _line(self, state: Optional[str] = None) -> str:
        elapsed = self.elapsed()
        parts = [f"{self.label}:"]
        if self.total is not None:
            percent = 100.0 * self.done / self.total if self.total else 100.0
            parts.append(f"{self.done}/{self.total}{(' ' + self.unit) if self.unit else ''} ({percent:.0f}%)")
            if self.done and elapsed > 0:
                rate = self.done / elapsed
                parts.append(f"{rate:,.0f}/s")
                if state is None and self.done < self.total:
                    parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts.append(_duration(elapsed))
        if state:
            parts.append(state)
        return " ".join(parts)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.terminal:
            if not force and now - self._last_draw < REDRAW_INTERVAL:
                return
        else:
            # In a log, a line per second or per tenth of the work, whichever comes first.
            if self.total is not None and self.done >= self.total:
                return  # the closing line says it
            decile = int(10 * self.done / self.total) if self.total else -1
            if not force and decile == self._last_decile and now - self._last_draw < LOG_INTERVAL:
                return
            self._last_decile = decile
        self._last_draw = now
        self._write(self._line())

    def _write(self, text: str, final: bool = False) -> None:
        with self._lock:
            if self.terminal:
                self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
