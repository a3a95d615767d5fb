"""file_sd_configs: the config, Go's glob, the JSON/YAML format, and files changing during a run.

The run test drives a real DiscoveryManager over a real directory: files are added, modified, made
invalid (the file's last good groups stay, the problem is logged once and counted), fixed and
deleted while discovery runs; every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from promotel.discovery.file_sd import FileDiscoverer, FileSDConfig, go_glob, read_target_groups
from promotel.discovery.targets import DiscoveryManager, TargetGroup

POLL = 0.05
DEADLINE = 10.0  # seconds for discovery to see a change (it polls every 50 ms)


def test_config_defaults_and_paths(tmp_path: Path) -> None:
    cfg = FileSDConfig.model_validate({"files": ["sd/*.json", "/abs/x.yml"]}, context={"base_dir": str(tmp_path)})
    assert cfg.files == (str(tmp_path / "sd/*.json"), "/abs/x.yml")
    assert cfg.refresh_interval == 300.0
    assert FileSDConfig.model_validate({"files": ["a.YAML"], "refresh_interval": "1m30s"}).refresh_interval == 90.0


@pytest.mark.parametrize(("data", "message"), [
    ({"files": []}, "file service discovery config must contain at least one path name"),
    ({}, "file service discovery config must contain at least one path name"),
    ({"files": ["targets.txt"]}, 'path name "targets.txt" is not valid for file discovery'),
    ({"files": ["*/x.json"]}, 'path name "*/x.json" is not valid for file discovery'),
    ({"files": ["a.Json"]}, 'path name "a.Json" is not valid for file discovery'),
    ({"files": ["a.json"], "refresh_interval": 30}, 'not a valid duration string: "30"'),
    ({"files": ["a.json"], "refresh_interval": "0s"}, "must be greater than zero"),
    ({"files": ["a.json"], "refresh": "1m"}, "Extra inputs are not permitted"),
])
def test_config_refusals(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        FileSDConfig.model_validate(data)
    assert message in str(info.value)


def test_go_glob(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", ".hidden.json", "c.yml", "x[1].json"):
        (tmp_path / name).write_text("[]")
    (tmp_path / "sub1").mkdir()
    (tmp_path / "sub2").mkdir()
    (tmp_path / "sub2" / "z.json").write_text("[]")
    base = str(tmp_path)
    # Sorted by name, names starting with "." included (Go's Match has no special case for them).
    assert go_glob(base + "/*.json") == [f"{base}/.hidden.json", f"{base}/a.json", f"{base}/b.json",
                                         f"{base}/x[1].json"]
    assert go_glob(base + "/[ab].json") == [f"{base}/a.json", f"{base}/b.json"]
    assert go_glob(base + "/[^ab].yml") == [f"{base}/c.yml"]
    assert go_glob(base + "/?.json") == [f"{base}/a.json", f"{base}/b.json"]
    assert go_glob(base + "/x\\[1\\].json") == [f"{base}/x[1].json"]
    assert go_glob(base + "/sub?/*.json") == [f"{base}/sub2/z.json"]
    assert go_glob(base + "/missing.json") == []
    assert go_glob(base + "/a.json") == [f"{base}/a.json"]
    for bad in ("/[.json", "/[].json", "/[a-].json", "/x\\", "/[z-a].json"):
        with pytest.raises(ValueError, match="syntax error in pattern"):
            go_glob(base + bad)


def test_go_glob_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.json").write_text("[]")
    assert go_glob("*.json") == ["t.json"]  # Go's Join(".", name) is "name"
    assert go_glob("./*.json") == ["t.json"]


def test_read_target_groups(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("- targets: ['a:1', b:2]\n  labels: {env: prod, port: 8080, __meta_filepath: mine}\n- {}\n")
    groups = read_target_groups(str(path))
    assert groups == (
        TargetGroup.of(["a:1", "b:2"], {"env": "prod", "port": "8080", "__meta_filepath": str(path)}, f"{path}:0"),
        TargetGroup.of([], {"__meta_filepath": str(path)}, f"{path}:1"),
    )
    bad = tmp_path / "bad.json"
    bad.write_text('[{"targets": ["a:1"]},]')
    with pytest.raises(ValueError, match="invalid JSON"):
        read_target_groups(str(bad))
    nan = tmp_path / "nan.json"
    nan.write_text('[{"targets": [NaN]}]')
    with pytest.raises(ValueError, match="NaN"):
        read_target_groups(str(nan))


def _write(path: Path, content: object) -> None:
    """Write atomically (a new file renamed over the old one), as Prometheus's docs advise."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content if isinstance(content, str) else json.dumps(content))
    os.replace(tmp, path)


def test_files_changing_during_a_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sd = tmp_path / "sd"
    sd.mkdir()
    a, b, c = sd / "a.json", sd / "b.yml", sd / "c.json"
    _write(a, [{"targets": ["a1:9100"], "labels": {"env": "prod"}}])
    # A long refresh interval: every change below must be seen by the modification-time polling.
    cfg = FileSDConfig.model_validate({"files": [str(sd / "*.json"), str(sd / "*.yml")], "refresh_interval": "5m"})
    discoverer = FileDiscoverer(cfg, "file_sd_configs[0]", poll_interval=POLL)
    manager = DiscoveryManager([discoverer], job="files")
    updates: list[tuple[TargetGroup, ...]] = []

    def view() -> dict[str, list[str]]:
        if not updates:
            return {}
        return {g.source: list(g.addresses) for g in updates[-1]}

    async def until(check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"discovery did not see {what} in {DEADLINE}s; last update: {view()}")
            await asyncio.sleep(POLL / 2)

    async def main() -> None:
        task = asyncio.create_task(manager.run(updates.append))
        try:
            await until(lambda: view() == {f"{a}:0": ["a1:9100"]}, "the initial file")
            assert updates[-1][0].labels == {"env": "prod", "__meta_filepath": str(a)}

            _write(b, "- targets: [b1:9100, b2:9100]\n")                       # add
            await until(lambda: f"{b}:0" in view(), "the added file")
            assert view() == {f"{a}:0": ["a1:9100"], f"{b}:0": ["b1:9100", "b2:9100"]}

            _write(a, [{"targets": ["a1:9100", "a2:9100"]}, {"targets": ["a3:9100"]}])  # modify
            await until(lambda: view().get(f"{a}:1") == ["a3:9100"], "the modified file")
            assert view()[f"{a}:0"] == ["a1:9100", "a2:9100"]

            before = len(updates)
            _write(b, "- targets: [b1:9100]\n  bogus: 1\n")                      # invalid: keep b's last good
            _write(c, "{not json")                                              # invalid from the start
            await until(lambda: len(manager.status()[0].problems) == 2, "the invalid files")
            assert view() == {f"{a}:0": ["a1:9100", "a2:9100"], f"{a}:1": ["a3:9100"],
                              f"{b}:0": ["b1:9100", "b2:9100"]}
            assert len(updates) == before  # nothing changed for the scrape side
            problems = manager.status()[0].problems
            assert any(p.startswith(f"{b}: group 0: unknown key 'bogus'") for p in problems), problems
            assert any(p.startswith(f"{c}: invalid JSON") for p in problems), problems
            errors = manager.status()[0].errors_total
            assert errors >= 2

            _write(b, "- targets: [b3:9100]\n")                                 # fixed
            c.unlink()                                                          # delete
            await until(lambda: view().get(f"{b}:0") == ["b3:9100"] and not manager.status()[0].problems,
                        "the fixed and deleted files")

            a.unlink()                                                          # delete: its groups go
            await until(lambda: f"{a}:0" not in view(), "the deleted file")
            assert view() == {f"{b}:0": ["b3:9100"]}
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await manager.aclose()

    with caplog.at_level(logging.INFO, logger="promotel.discovery"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Each problem logged once although the files were polled (and re-read) many times meanwhile.
    assert len([w for w in warnings if str(b) in w]) == 1, warnings
    assert len([w for w in warnings if str(c) in w]) == 1, warnings
    assert sum("recovered" in r.getMessage() for r in caplog.records) == 1


def test_refresh_interval_rereads_without_a_visible_change(tmp_path: Path) -> None:
    """The periodic refresh reads every file again even when polling saw no change (Prometheus's
    ticker does the same): a change that kept size and modification time is picked up."""
    path = tmp_path / "t.json"
    _write(path, [{"targets": ["a:1"]}])
    stat = path.stat()
    cfg = FileSDConfig.model_validate({"files": [str(path)], "refresh_interval": "200ms"})
    discoverer = FileDiscoverer(cfg, poll_interval=POLL)

    def rewrite_in_place() -> None:  # same size, same inode, modification time put back
        with open(path, "r+") as fh:
            fh.write('[{"targets": ["b:1"]}]')
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    async def main() -> list[tuple[str, ...]]:
        first = await discoverer.refresh()
        rewrite_in_place()
        assert not discoverer.changed()
        started = time.monotonic()
        await discoverer.wait(discoverer.refresh_interval)
        assert 0.15 < time.monotonic() - started < 5
        second = await discoverer.refresh()
        return [first.groups[0].addresses, second.groups[0].addresses]

    assert asyncio.run(main()) == [("a:1",), ("b:1",)]


def test_unreadable_pattern_is_a_problem(tmp_path: Path) -> None:
    cfg = FileSDConfig.model_validate({"files": [str(tmp_path / "[.json"), str(tmp_path / "ok.json")]})
    (tmp_path / "ok.json").write_text('[{"targets": ["a:1"]}]')
    result = asyncio.run(FileDiscoverer(cfg).refresh())
    assert [g.addresses for g in result.groups] == [("a:1",)]
    assert result.problems == (f"{tmp_path}/[.json: cannot expand the pattern: syntax error in pattern",)
