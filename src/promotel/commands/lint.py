"""``promotel lint [--content-type CT] FILE...``: validate exposition files.

Lint is strict (``Strictness.STRICT``: OpenMetrics 1.0 and the Prometheus text format's rules). Output goes
to stdout as ``FILE:LINE: message``: the first error of an invalid file, then, when the bridge would still
ingest the file (it breaks only rules Prometheus does not enforce, which scraping tolerates and logs), each
other rule it breaks, at the first line that does, in the words the bridge's log uses, or, when the bridge
would refuse the file too, the error that makes it refuse; or ``FILE: cannot read: reason`` when the file
cannot be read. ``-`` reads stdin as bytes.
Exit status: 0 when every file is valid, 1 when any file is invalid or unreadable.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import BinaryIO

from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, Strictness, parse_exposition


def lint_bytes(data: bytes, content_type: str | None = None) -> ExpositionError | None:
    """The first error of one exposition, or None when it is valid."""
    try:
        parse_exposition(data, content_type)
    except ExpositionError as exc:
        return exc
    return None


def lint_errors(data: bytes, content_type: str | None = None) -> list[ExpositionError]:
    """Every error of one exposition that lint reports: none when it is valid; else the first error,
    then, when scraping would ingest it anyway, each other rule it breaks (its leniency), by line, or,
    when scraping would refuse it too, the error that makes it refuse."""
    first = lint_bytes(data, content_type)
    if first is None:
        return []
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    try:
        parser.parse(data, content_type)
    except ExpositionError as fatal:
        others = [fatal]
    else:
        others = [ExpositionError(e.text, e.line) for e in parser.leniencies]
    return [first] + [e for e in others if (e.line, e.message) != (first.line, first.message)]


def _read(path: str, stdin: BinaryIO) -> bytes:
    if path == "-":
        return stdin.read()
    with open(path, "rb") as fh:
        return fh.read()


def cli_lint(args: argparse.Namespace) -> int:
    content_type: str | None = args.content_type
    stdin = sys.stdin.buffer
    failed = False
    for path in args.files:
        name = "<stdin>" if path == "-" else path
        try:
            data = _read(path, stdin)
        except OSError as exc:
            failed = True
            if not _say(f"{name}: cannot read: {exc.strerror or exc}"):
                return 1
            continue
        for err in lint_errors(data, content_type):
            failed = True
            if not _say(f"{name}:{err.line}: {err.message}"):
                return 1
    return 1 if failed else 0


def _say(line: str) -> bool:
    """Print one line; False when stdout's reader went away (``| head``), after which nothing is written."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


__all__ = ["cli_lint", "lint_bytes", "lint_errors"]
