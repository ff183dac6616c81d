"""One name per idea: the README's command table and every ``--help`` agree, and the shared
spellings (--batch, --input-size, --duration-s, --force, the model as the first argument) exist
wherever the idea does; old spellings still parse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtlexport.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    capsys.readouterr()
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def _table_rows() -> dict[str, str]:
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"\| `mtlexport (\w+) ([^`]*)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_readme_table_lists_every_command() -> None:
    assert set(_table_rows()) == {"train", "eval", "inspect", "plot", "sweep", "slim", "export", "bench", "demo"}


@pytest.mark.parametrize("command", sorted(_table_rows()))
def test_every_option_in_the_readme_table_is_in_the_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, command)
    for flag in re.findall(r"--[a-z][a-z0-9-]*", _table_rows()[command]):
        assert re.search(rf"{flag}\b", text), f"{command}: README names {flag}, --help does not"


@pytest.mark.parametrize(("flag", "commands"), [
    ("--batch", ["eval", "slim", "export", "bench"]),
    ("--input-size", ["slim", "export", "bench"]),
    ("--duration-s", ["slim", "bench", "demo"]),
    ("--force", ["train", "demo", "slim", "export", "bench"]),
])
def test_one_name_per_idea(flag: str, commands: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for command in commands:
        assert re.search(rf"{flag}\b", _help(capsys, command)), f"{command} --help lacks {flag}"


def test_old_spellings_are_hidden_or_secondary(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "export")
    assert "--height" not in text and "--width" not in text  # hidden: --input-size HxW
    assert "--batch, --batch-size" in _help(capsys, "eval")
    assert "--duration-s, --bench-seconds" in _help(capsys, "demo")
    assert "ENGINE" in _help(capsys, "bench").splitlines()[0]  # the model as the first argument
