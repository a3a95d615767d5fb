"""The command line itself: every argument explains itself, and one exit status means one thing."""

from __future__ import annotations

import argparse

import pytest

from promotel.cli import EXIT_STATUS, build_parser, main


def parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    root = build_parser()
    found = [("promotel", root)]
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"promotel {name}", sub) for name, sub in action.choices.items()]
    return found


def test_every_command_is_covered() -> None:
    assert [name for name, _ in parsers()] == ["promotel", "promotel run", "promotel check", "promotel lint",
                                                "promotel map", "promotel targets", "promotel mappings",
                                                "promotel simulate", "promotel demo", "promotel top"]


@pytest.mark.parametrize("name, parser", parsers(), ids=[name for name, _ in parsers()])
def test_every_argument_of_every_command_has_help(name: str, parser: argparse.ArgumentParser) -> None:
    missing = [action.dest for action in parser._actions if not action.help or action.help == argparse.SUPPRESS]
    assert missing == [], f"{name}: no help for {missing}"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            assert set(listed) == set(action.choices) and all(listed.values()), listed
    assert parser.description, f"{name} --help says nothing about what it does"


def test_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["run", "--help"], ["check", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert EXIT_STATUS in out
    assert "2    the command line or the config is wrong" in EXIT_STATUS


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--no-such-flag"])
    assert done.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
