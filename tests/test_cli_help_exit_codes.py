"""``gapcam predict --help`` and ``gapcam evaluate --help`` list the exit codes the command
really returns: 0 done, 1 some input failed or the run stopped, 2 a usage or set-up error
(nothing written), 130 interrupted, 143 terminated (SIGTERM)."""

from __future__ import annotations

import re

import pytest

from napari_gapcam.cli import main
from napari_gapcam.cli.signals import Terminated


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_help_lists_every_exit_code(command, capsys):
    text = help_text(command, capsys)
    assert "exit codes:" in text
    section = text.split("exit codes:", 1)[1]
    codes = {int(code): words for code, words in re.findall(r"^  (\d+) +(.+)$", section, re.M)}
    assert sorted(codes) == [0, 1, 2, 130, 143]
    assert codes[0].startswith("done")
    assert "failed" in codes[1] or "could not be read" in codes[1]
    assert "usage or set-up error" in codes[2] and "nothing written" in codes[2]
    assert codes[130].startswith("interrupted (Ctrl-C)")
    assert codes[143].startswith("terminated (SIGTERM")


@pytest.mark.parametrize(
    "raised, code", [(KeyboardInterrupt, 130), (Terminated, 143), (None, 0), (1, 1)]
)
def test_the_listed_codes_are_the_ones_returned(monkeypatch, raised, code, capsys):
    """What main returns when the command is interrupted, terminated, done or failed."""

    def handler(args):
        if isinstance(raised, type):
            raise raised()
        return raised or 0

    monkeypatch.setattr("napari_gapcam.cli.command.predict_command", handler)
    assert main(["predict", "x.png"]) == code


def test_a_usage_error_is_2(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
