"""A command module that does not import is an installation fault: `softshield` says which one and
why in one line and exits 1, rather than running without the command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from softshield_cli import main as cli


@pytest.fixture
def extra_module(monkeypatch: pytest.MonkeyPatch):
    def add(name: str) -> None:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, name))
    yield add
    for name in [m for m in sys.modules if m.startswith("softshield_broken_cmd")]:
        del sys.modules[name]


def test_a_missing_command_module_is_an_error(extra_module, capsys: pytest.CaptureFixture[str]) -> None:
    extra_module("softshield_cli.no_such_command")
    assert cli.main(["--help"]) == 1
    assert capsys.readouterr().err == ("softshield: command module softshield_cli.no_such_command does not "
                                       "import: ModuleNotFoundError: No module named "
                                       "'softshield_cli.no_such_command'\n")


def test_a_command_module_that_fails_on_import_is_named(extra_module, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "softshield_broken_cmd.py").write_text("raise RuntimeError('its table is malformed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    extra_module("softshield_broken_cmd")
    assert cli.main(["nfkminfo"]) == 1
    assert capsys.readouterr().err == ("softshield: command module softshield_broken_cmd does not import: "
                                       "RuntimeError: its table is malformed\n")
