"""The PIN contract every card- or passphrase-reading command shares.

Non-interactively: `--pin-file FILE` (or SOFTSHIELD_PIN_FILE) holds one line per card, `<card file
name> <PIN>`, cards presented in that order; when creating cards, the PIN each new card gets, and
for softcards `<softcard name> <passphrase>`. Interactively each card is asked for ("Insert card 2
of 3, then enter its PIN") and the PIN is read without echo.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from .main import CommandError


def ask_new_secret(prompt: str, again: str, what: str) -> bytes:
    """A new PIN or pass phrase typed twice without echo; CommandError when no terminal or no match."""
    _require_terminal()
    first = getpass.getpass(prompt)
    if getpass.getpass(again) != first:
        raise CommandError(f"the {what} did not match")
    return first.encode("utf-8")


def _require_terminal() -> None:
    if not sys.stdin.isatty():
        raise CommandError("no PIN file given and no terminal to ask on: use --pin-file FILE")


def add_pin_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pin-file", metavar="FILE", default=None,
                        help="one line per card: <card file name> <PIN> (or env SOFTSHIELD_PIN_FILE)")


class PinSource:
    """Lines of the PIN file, consumed in order; or prompts when there is no file."""

    def __init__(self, path: str | None) -> None:
        path = path or os.environ.get("SOFTSHIELD_PIN_FILE") or None
        self.lines: list[tuple[str, bytes]] | None = None
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot read PIN file {path}: {exc.strerror}") from None
            self.lines = []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                name, _, pin = line.strip().partition(" ")
                if not pin:
                    raise CommandError(f"PIN file {path} line {number}: expected `<card file name> <PIN>'")
                self.lines.append((name, pin.strip().encode("utf-8")))
        self.position = 0

    @property
    def interactive(self) -> bool:
        return self.lines is None

    def next(self, prompt_card: str, prompt_pin: str, *, default_name: str | None = None) -> tuple[str, bytes] | None:
        """(name, PIN) of the next line, or asked for; None when the file has no more lines."""
        if self.lines is not None:
            if self.position >= len(self.lines):
                return None
            item = self.lines[self.position]
            self.position += 1
            return item
        return self._ask(prompt_card, prompt_pin, default_name)

    @staticmethod
    def _ask(prompt_card: str, prompt_pin: str, default_name: str | None = None) -> tuple[str, bytes]:
        """(name, PIN) asked for on the terminal."""
        _require_terminal()
        print(prompt_card, file=sys.stderr)
        name = default_name
        if default_name is None:
            name = input("Card file name: ").strip()
        pin = getpass.getpass(prompt_pin)
        return name or "", pin.encode("utf-8")

    def new_pins(self, names: list[str]) -> list[bytes]:
        """PINs for new cards `names` (in order): from the file, or asked twice each."""
        pins = []
        for index, name in enumerate(names, 1):
            if self.lines is not None:
                item = self.next("", "")
                if item is None:
                    raise CommandError(f"PIN file has no line for card {index} of {len(names)} ({name})")
                if item[0] != name:
                    raise CommandError(f"PIN file line {index} names {item[0]}, expected {name}")
                pins.append(item[1])
                continue
            _require_terminal()
            print(f"Insert blank card {index} of {len(names)} ({name}), then enter its new PIN", file=sys.stderr)
            pins.append(ask_new_secret("New PIN: ", "Confirm PIN: ", "PINs"))
        return pins

    def cards(self, reader, k: int) -> list[tuple[Path, bytes]]:
        """The cards presented for a quorum of `k`: every file line, or `k` prompted cards."""
        presented = []
        if self.lines is not None:
            while (item := self.next("", "")) is not None:
                path = reader.resolve(item[0])
                if any(path == seen for seen, _pin in presented):
                    # One card counts once in a quorum; reading it again would only fail its PIN check.
                    raise CommandError(f"the PIN file names card {item[0]} twice: present each card of the quorum once")
                presented.append((path, item[1]))
            return presented
        for index in range(1, k + 1):
            item = self._ask(f"Insert card {index} of {k}, then enter its PIN", "PIN: ")
            presented.append((reader.resolve(item[0]), item[1]))
        return presented
