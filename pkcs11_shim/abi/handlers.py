"""The table of Python handlers, one per C function, filled by the chapter modules as they load.

Kept apart from `entry` so that a chapter registering its handlers imports only this table, while
`entry` imports the chapters: registration without an import circle.
"""

from __future__ import annotations

from typing import Any, Callable

HANDLERS: dict[str, Callable[..., Any]] = {}


def handler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the Python side of the C function `name`."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for {name}")
        HANDLERS[name] = fn
        return fn

    return register
