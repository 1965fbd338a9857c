"""The `framecast` command (service/cli/main.py): --version, and help that describes every
subcommand and shows every option's default."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from service.cli import build_parser


def test_version_answers_with_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"framecast {version('framecast')} (Python ")


def test_version_from_the_console_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("framecast "), out.stderr


def _subparsers(parser: argparse.ArgumentParser, path: str = "framecast"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from _subparsers(sub, f"{path} {name}")


def test_every_subcommand_has_a_description_and_shows_its_defaults():
    checked = set()
    for path, sub in _subparsers(build_parser()):
        text = sub.format_help()  # adds the lazily declared arguments (train, evaluate) too
        assert sub.description, f"`{path}` has no description"
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"`{path}`: {name} has no help"
            d = action.default
            if not action.option_strings or d is None or d is False or d in ("", []):
                continue  # positional, or nothing to show: unset, a flag that is off
            assert "default" in sub._get_formatter()._expand_help(action), (
                f"`{path} --help` does not show the default of {name} ({d!r})"
            )
            checked.add(path)
        assert "usage:" in text
    # the commands a newcomer meets first are among those checked
    assert {"framecast serve", "framecast predict", "framecast compare", "framecast stream"} <= {
        p for p, _ in _subparsers(build_parser())
    }
    assert {"framecast predict", "framecast train", "framecast data preview"} <= checked
