"""``promotel lint``: exit 0 when valid, ``FILE:LINE: message`` on stdout and exit 1 otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promotel.cli import main
from promotel.commands.lint import lint_bytes, lint_errors
from promotel.errors import ExpositionError
from promotel.exposition import ExpositionParser, Strictness
from support.cli import run_into_closed_pipe
from support.paths import CONFORMANCE, conformance_cases

PROMOTEL = Path(sys.executable).parent / "promotel"
SUITE = CONFORMANCE


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "good.prom": b"# TYPE a counter\na_total 1\n",
        "good.om": b"# TYPE a counter\na_total 1\n# EOF\n",
        "bad.prom": b"a 1\nb{x=1} 2\n",
        "bad.om": b"# TYPE a counter\na_total -1\n# EOF\n",
        "utf8.prom": b"a 1\n\xff 2\n",
    }
    paths = {}
    for name, data in out.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths[name] = p
    return paths


def test_valid_files_exit_0(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(files["good.prom"]), str(files["good.om"])]) == 0
    assert capsys.readouterr().out == ""


def test_invalid_files_are_reported_with_their_line(files: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lint", str(files["good.prom"]), str(files["bad.prom"]), str(files["bad.om"]),
                 str(files["utf8.prom"])])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out == [
        f"{files['bad.prom']}:2: expected '\"' to open the value of label \"x\", found '1'",
        f"{files['bad.om']}:2: \"a_total\" is a counter-like value and cannot be -1",
        f"{files['utf8.prom']}:2: invalid UTF-8 (byte 0xff at column 1); expositions must be UTF-8 encoded",
    ]


def test_content_type_overrides_detection(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # Without '# EOF' the text is Prometheus text unless the content type says OpenMetrics.
    assert main(["lint", "--content-type", "application/openmetrics-text", str(files["good.prom"])]) == 1
    assert "missing '# EOF'" in capsys.readouterr().out


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.txt"
    assert main(["lint", str(missing)]) == 1
    assert capsys.readouterr().out == f"{missing}: cannot read: No such file or directory\n"
    assert main(["lint", str(tmp_path)]) == 1                         # a directory
    assert capsys.readouterr().out.startswith(f"{tmp_path}: cannot read: ")


def test_subprocess_with_stdin(files: dict[str, Path]) -> None:
    ok = subprocess.run([str(PROMOTEL), "lint", "-"], input=files["good.om"].read_bytes(),
                        capture_output=True, timeout=60, check=False)
    assert (ok.returncode, ok.stdout) == (0, b"")
    bad = subprocess.run([str(PROMOTEL), "lint", str(files["good.prom"]), "-"],
                         input=files["bad.prom"].read_bytes(), capture_output=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert bad.stdout.decode() == "<stdin>:2: expected '\"' to open the value of label \"x\", found '1'\n"


def test_subprocess_on_the_conformance_suite() -> None:
    good = [str(p / "metrics") for p in conformance_cases() if '"shouldParse": true' in (p / "test.json").read_text()]
    bad = [str(p / "metrics") for p in conformance_cases() if '"shouldParse": false' in (p / "test.json").read_text()]
    ct = ["--content-type", "application/openmetrics-text; version=1.0.0"]
    ok = subprocess.run([str(PROMOTEL), "lint", *ct, *good], capture_output=True, timeout=60, check=False)
    assert (ok.returncode, ok.stdout) == (0, b"")
    res = subprocess.run([str(PROMOTEL), "lint", *ct, *bad], capture_output=True, timeout=60, check=False)
    lines = res.stdout.decode().splitlines()
    # Every bad case is reported, its first line being its first error; a case the bridge would still
    # ingest has one more line per other rule it breaks.
    files = list(dict.fromkeys(line.split(":")[0] for line in lines))
    assert res.returncode == 1 and files == bad and len(bad) == 167
    assert all(line.split(":")[1].isdigit() for line in lines)
    first = {}
    for line in lines:
        first.setdefault(line.split(":")[0], line)
    for path in bad[::10]:
        err = lint_bytes(Path(path).read_bytes(), ct[1])
        assert err is not None and first[path] == f"{path}:{err.line}: {err.message}"


def test_lint_into_a_closed_pipe_exits_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.prom"
    bad.write_text("# TYPE a gauge\na{ 1\n")
    code, err = run_into_closed_pipe(["lint", str(bad), str(bad)], tmp_path)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 1


def test_each_rule_the_bridge_tolerates_is_reported_at_its_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # client_golang's OpenMetrics quirk and a negative counter: the bridge ingests this (Prometheus does),
    # logging each rule it tolerates; lint reports each, in the same words, at the same lines.
    path = tmp_path / "golang.om"
    data = (b"# HELP m Number.\n# TYPE m gauge\nm 1\n# HELP m Total.\n# TYPE m counter\nm_total 2\n"
            b"# TYPE c counter\nc_total -1\nc_total{a=\"1\"} -2\n# EOF\n")
    path.write_bytes(data)
    assert main(["lint", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f'{path}:4: HELP line for "m" after its samples; metadata must come before the samples',
        f'{path}:6: the name "m" is used by two metric families; families must not repeat or overlap '
        "(samples of one family must be consecutive)",
        f'{path}:8: "c_total" is a counter-like value and cannot be -1',
    ]
    parser = ExpositionParser(strictness=Strictness.SCRAPE)
    parser.parse(data)
    assert [(str(e.rule), e.line, e.count) for e in parser.leniencies] == [
        ("metadata-after-samples", 4, 1), ("family-unique", 6, 1), ("counter-value", 8, 2)]
    assert [(e.line, e.message) for e in lint_errors(data)] == [(e.line, e.text) for e in parser.leniencies]


def test_a_file_the_bridge_refuses_too_gets_its_first_error_and_why_it_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.om"
    data = b"# TYPE c counter\nc_total -1\n# TYPE d gauge\nd{ 1\n# EOF\n"
    path.write_bytes(data)
    assert main(["lint", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f'{path}:2: "c_total" is a counter-like value and cannot be -1',
        f"{path}:4: expected a label name, found ' '",
    ]
    with pytest.raises(ExpositionError, match="expected a label name"):
        ExpositionParser(strictness=Strictness.SCRAPE).parse(data)
    # A lexical error first: that one line, which is also why the bridge refuses the file.
    assert [(e.line, e.message) for e in lint_errors(b"d{ 1\n# TYPE c counter\nc_total -1\n# EOF\n")] == [
        (1, "expected a label name, found ' '")]
    assert lint_errors(b"# TYPE c counter\nc_total 1\n# EOF\n") == []
