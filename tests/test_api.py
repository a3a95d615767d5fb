"""The public Python API is small and pinned."""

import promotel
from promotel import ExpositionError, parse_exposition


def test_all_is_pinned() -> None:
    assert sorted(promotel.__all__) == ["ExpositionError", "PromotelError", "__version__", "parse_exposition"]


def test_parse_exposition_roundtrip_and_error_line() -> None:
    # Family names as declared: Prometheus text declares counters with _total, OpenMetrics without.
    fams = parse_exposition(b"# TYPE a_total counter\na_total 1\n")
    assert [(f.name, f.type) for f in fams] == [("a_total", "counter")]
    assert fams[0].samples[0] == ("a_total", {}, 1.0, None, None)
    om = parse_exposition("# TYPE a counter\na_total 2\n# EOF\n")
    assert [(f.name, f.type, [s.name for s in f.samples]) for f in om] == [("a", "counter", ["a_total"])]
    try:
        parse_exposition("a 1\nb{ 2\n")
    except ExpositionError as exc:
        assert exc.line == 2
    else:  # pragma: no cover
        raise AssertionError("invalid input parsed")


def test_parsing_leaves_the_callers_garbage_collector_alone() -> None:
    """A library call has no process-wide side effect: the GC state the caller chose survives a parse."""
    import gc

    from promotel.exposition import ExpositionParser

    parser = ExpositionParser()
    assert gc.isenabled()
    parser.parse(b"a 1\nb 2\n")
    parse_exposition(b"a 1\n")
    assert gc.isenabled()
    gc.disable()
    try:
        parser.parse(b"a 1\nb 3\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_module_paths_of_0_1_still_import_as_the_moved_modules() -> None:
    """Scripts written against 0.1's flat modules keep working: each old path is the new module itself."""
    import importlib
    import subprocess
    import sys

    from promotel._moved import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from promotel.commands.map import map_scrapes as current
    from promotel.maptool import map_scrapes  # a name imported through an old path

    assert map_scrapes is current
    # In a fresh interpreter too, importing the old path first (before anything imported the new one).
    code = "import promotel.convert as c, promotel.series.store as s; assert c is s and c.__name__ == s.__name__"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    # The same-name packages re-export what the 0.1 modules exported.
    from promotel.config import SourceConfig, load_config  # noqa: F401
    from promotel.scrape import ACCEPT, Scraper  # noqa: F401
    from promotel.service import GRACE_S, Bridge, target_resource, tune_gc  # noqa: F401
