"""Progress for long work: shown on stderr (stdout stays parseable), forced or silenced by
SOFTSHIELD_PROGRESS, redrawn on a terminal; `fill-token` shows it while making durable keys."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from ecoenv import USER_PIN, softshield
from softshield_cli.progress import Progress, wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_counted_progress_in_a_log_prints_tenths_and_a_closing_line():
    out = io.StringIO()
    with Progress("filling", total=50, unit="keys", stream=out, enabled=True) as progress:
        for _ in range(50):
            progress.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("filling: 0/50 keys (0%)")
    assert re.match(r"filling: 50/50 keys \(100%\) [\d,]+/s [\d.]+s done$", lines[-1])
    # One line per tenth at most, plus the first and the last: a log is not flooded.
    assert 3 <= len(lines) <= 12
    percents = [int(m.group(1)) for m in (re.search(r"\((\d+)%\)", line) for line in lines) if m]
    assert percents == sorted(percents)


def test_terminal_redraws_one_line_and_ends_it():
    out = Terminal()
    with Progress("generating", total=3, stream=out, enabled=True) as progress:
        for _ in range(3):
            progress.advance()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("done\n")
    assert text.startswith("\r\x1b[K") and "ETA" not in text.split("\r\x1b[K")[-1]


def test_uncounted_work_shows_elapsed_time_until_it_ends():
    out = io.StringIO()
    with Progress("generating RSA-8192", stream=out, enabled=True):
        time.sleep(1.3)  # the ticker writes once a second into a log
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and lines[-1].endswith("done")
    assert all(line.startswith("generating RSA-8192: ") for line in lines)


def test_a_failure_inside_the_block_is_reported_as_stopped():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("export", total=4, stream=out, enabled=True) as progress:
            progress.advance()
            raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("export: 1/4 (25%)")
    assert out.getvalue().rstrip().endswith("stopped")


@pytest.mark.parametrize("setting, tty, shown", [("", False, False), ("", True, True), ("1", False, True),
                                                 ("0", True, False), ("off", True, False)])
def test_progress_is_for_terminals_unless_the_environment_says(monkeypatch, setting, tty, shown):
    monkeypatch.setenv("SOFTSHIELD_PROGRESS", setting)
    assert wanted(Terminal() if tty else io.StringIO()) is shown


def test_fill_token_makes_durable_findable_keys_with_progress_on_stderr(token_label: str):
    uri = f"pkcs11:token={token_label}"
    made = softshield("fill-token", uri, "--count", "40", "--label-prefix", "filled-", "--pin", USER_PIN,
                      env={"SOFTSHIELD_PROGRESS": "1"})
    assert made.stdout.strip() == f"40 AES keys made in `{token_label}' (filled-0 .. filled-39)."
    assert "fill-token" in made.stderr and made.stderr.rstrip().endswith("done")
    # A later process (a fresh load of the library) finds each key by label and by its index as CKA_ID.
    rows = json.loads(softshield("list-objects", "--json", "--pin", USER_PIN, f"{uri};object=filled-39").stdout)
    assert [(r["type"], r["key_type"], r["id"]) for r in rows] == [("secret-key", "AES", "00000027")]
    all_rows = json.loads(softshield("list-objects", "--json", "--pin", USER_PIN, f"{uri};type=secret-key").stdout)
    assert sum(r["label"].startswith("filled-") for r in all_rows) == 40
    # Quiet when not asked and not on a terminal: scripts see only the result line.
    quiet = softshield("fill-token", uri, "--count", "1", "--label-prefix", "quiet-", "--pin", USER_PIN,
                       env={"SOFTSHIELD_PROGRESS": "0"})
    assert quiet.stderr == ""


@pytest.mark.parametrize("argv, message", [
    (("--count", "0"), "--count must be between 1 and 1000000"),
    (("--count", "2", "--type", "DES3", "--size", "128"), "--size 128 is not a DES3 key size"),
    (("pkcs11:token=no-such-token", "--count", "2"), "matches 0 tokens"),
])
def test_fill_token_refuses_bad_requests_with_one_line(argv, message):
    result = softshield("fill-token", *argv, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_library_refusals_are_one_line_not_a_traceback(token_label: str):
    result = softshield("fill-token", f"pkcs11:token={token_label}", "--count", "1", "--pin", "wrong-pin",
                        check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("softshield fill-token: the PKCS#11 library refused the call (PinIncorrect)")
