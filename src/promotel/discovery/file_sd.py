"""``file_sd_configs``: target groups read from JSON and YAML files, watched for changes.

Prometheus's file SD (``discovery/file``), key for key:

* ``files``: at least one path, each ending in ``.json``, ``.yml`` or ``.yaml`` (any case of the whole
  extension, ``.JSON``), with a ``*`` allowed only in the last path element (``targets/*.json``);
  other glob syntax (``?``, ``[a-z]``, ``\\`` escapes) is Go's ``filepath.Match``. Relative paths are
  relative to the config file's directory. The format follows the extension: a JSON or YAML list of
  ``{targets: [...], labels: {...}}`` groups (:func:`promotel.discovery.targets.parse_target_groups`).
* ``refresh_interval``: every file matching a pattern is read again this often (default ``5m``).
  Between refreshes promotel checks every ``poll_interval`` seconds (1 s) whether the set of matching
  files or any file's modification time, size or inode changed, and refreshes at once when it did.
  Prometheus uses inotify for this; polling needs no watch descriptors and sees the same changes,
  atomic renames included (write a new file and rename it over the old one, as Prometheus advises).
* Each group gets ``__meta_filepath`` (the matched path) and the source ``<path>:<index>``.
* A file that cannot be read or parsed keeps the groups it last gave (none if it never was valid);
  the problem is reported (counted, logged once per change by the manager). A file that no longer
  matches (deleted, renamed away) takes its groups with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import time
from collections.abc import Sequence
from typing import Any, Final

import yaml
from pydantic import Field, field_validator

from promotel.discovery._config import ConfigPath, PromDuration, SDModel
from promotel.discovery.targets import Refresh, TargetGroup, parse_target_groups

__all__ = ["FileDiscoverer", "FileSDConfig", "go_glob", "read_target_groups"]

DEFAULT_REFRESH_INTERVAL: Final = 300.0
META_FILEPATH: Final = "__meta_filepath"

# Prometheus's check of a `files` entry (discovery/file: patFileSDName).
_FILE_SD_NAME: Final = re.compile(r"[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)", re.DOTALL)


class FileSDConfig(SDModel):
    files: tuple[ConfigPath, ...] = Field(default=(), validate_default=True)
    refresh_interval: PromDuration = DEFAULT_REFRESH_INTERVAL

    @field_validator("files", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        # Checked on the names as written, before they are joined to the config's directory.
        if value is None or value == [] or value == ():
            raise ValueError("file service discovery config must contain at least one path name")
        if isinstance(value, list | tuple):
            for name in value:
                if isinstance(name, str) and not _FILE_SD_NAME.fullmatch(name):
                    raise ValueError(f'path name "{name}" is not valid for file discovery: it must end in .json, '
                                     ".yml or .yaml and may have a * in its last path element only")
        return value


# --- Go's filepath.Glob ------------------------------------------------------------------------------

def _has_meta(path: str) -> bool:
    return any(ch in path for ch in "*?[\\")


def _match_regex(pattern: str) -> re.Pattern[str]:
    """Go's ``filepath.Match`` pattern as a Python regex. Raises ValueError for a malformed pattern
    (Go's ``ErrBadPattern``: an unclosed or empty class, a bad range, a trailing ``\\``)."""
    out: list[str] = []
    i, n = 0, len(pattern)

    def char(at: int) -> tuple[str, int]:
        """One class character at ``at`` (``\\`` escapes the next); its end."""
        if at >= n or pattern[at] in "-]":
            raise ValueError("syntax error in pattern")
        if pattern[at] == "\\":
            if at + 1 >= n:
                raise ValueError("syntax error in pattern")
            return pattern[at + 1], at + 2
        return pattern[at], at + 1

    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "\\":
            if i + 1 >= n:
                raise ValueError("syntax error in pattern")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[str] = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = char(i)
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = char(i + 1)
                if hi < lo:
                    raise ValueError("syntax error in pattern")
                ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
            out.append(("[^" if negated else "[") + "".join(ranges) + "]")
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on POSIX (unlike ``normpath``, a leading ``//`` becomes ``/``)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def go_glob(pattern: str) -> list[str]:
    """The files matching ``pattern`` as Go's ``filepath.Glob`` lists them: per directory in sorted
    name order, names starting with ``.`` included, I/O errors ignored. Raises ValueError for a
    malformed pattern."""
    _match_regex(pattern)  # Go checks the whole pattern first
    return _glob(pattern, 0)


def _glob(pattern: str, depth: int) -> list[str]:
    if depth > 10_000:
        raise ValueError("syntax error in pattern")
    if not _has_meta(pattern):
        return [pattern] if os.path.lexists(pattern) else []
    slash = pattern.rfind("/")
    directory, name = pattern[:slash + 1], pattern[slash + 1:]
    directory = "." if directory == "" else directory if directory == "/" else directory[:-1]
    if not _has_meta(directory):
        return _glob_dir(directory, name)
    if directory == pattern:
        raise ValueError("syntax error in pattern")
    matches: list[str] = []
    for found in _glob(directory, depth + 1):
        matches += _glob_dir(found, name)
    return matches


def _glob_dir(directory: str, pattern: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    except OSError:
        return []
    regex = _match_regex(pattern)
    return [_go_clean(directory + "/" + entry) for entry in names if regex.fullmatch(entry)]


# --- reading one file ----------------------------------------------------------------------------------

class _TextLoader(yaml.BaseLoader):
    """YAML as Go's yaml.v2 decodes it into strings: every scalar is its text (``8080``, ``yes``,
    ``1.50`` stay as written), a plain ``null``, ``~`` or empty scalar is null, and a key given twice
    in one mapping is an error (Prometheus reads SD files strictly)."""


_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})


def _scalar(loader: _TextLoader, node: yaml.ScalarNode) -> str | None:
    value = str(loader.construct_scalar(node))
    return None if node.style is None and value in _NULLS else value


def _mapping(loader: _TextLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a scalar",
                                                    key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"mapping key {key!r} already defined", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _sequence(loader: _TextLoader, node: yaml.SequenceNode) -> list[Any]:
    return [loader.construct_object(child, deep=True) for child in node.value]


_TextLoader.add_constructor("tag:yaml.org,2002:str", _scalar)
_TextLoader.add_constructor("tag:yaml.org,2002:map", _mapping)
_TextLoader.add_constructor("tag:yaml.org,2002:seq", _sequence)


def _no_constant(name: str) -> None:
    raise ValueError(f"invalid JSON value {name}")


def decode_groups(content: bytes, fmt: str) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Decode and validate a file's content (``fmt`` ``json`` or ``yaml``). Raises ValueError."""
    text = content.decode("utf-8", "replace")  # Go replaces invalid UTF-8 in strings with U+FFFD
    if fmt == "json":
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from None
        return parse_target_groups(data, "json")
    try:
        data = yaml.load(text, Loader=_TextLoader)  # builds only str, list and dict
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from None
    return parse_target_groups(data, "yaml")


def read_target_groups(path: str) -> tuple[TargetGroup, ...]:
    """The groups of one SD file, with ``__meta_filepath`` and sources ``<path>:<index>``. Raises
    OSError when it cannot be read and ValueError when it is not valid."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".yml", ".yaml"):
        raise ValueError(f"unsupported file extension {ext!r} (.json, .yml or .yaml)")
    with open(path, "rb") as fh:
        content = fh.read()
    groups = decode_groups(content, "json" if ext == ".json" else "yaml")
    return tuple(TargetGroup.of(targets, {**labels, META_FILEPATH: path}, f"{path}:{index}")
                 for index, (targets, labels) in enumerate(groups))


# --- the discoverer ------------------------------------------------------------------------------------

_Signature = tuple[tuple[str, int, int, int, int], ...]


class FileDiscoverer:
    """Reads the files of one ``file_sd_configs`` entry; see the module docstring."""

    mechanism = "file"

    def __init__(self, config: FileSDConfig, name: str = "file_sd_configs[0]", *, poll_interval: float = 1.0) -> None:
        self.name = name
        self.config = config
        self.refresh_interval = config.refresh_interval
        self.poll_interval = poll_interval
        self._last_good: dict[str, tuple[TargetGroup, ...]] = {}
        self._signature: _Signature | None = None

    def _matches(self, problems: list[str] | None = None) -> list[str]:
        paths: list[str] = []
        for pattern in self.config.files:
            try:
                found = go_glob(pattern)
            except ValueError as exc:
                if problems is not None:
                    problems.append(f"{pattern}: cannot expand the pattern: {exc}")
                continue
            paths += [path for path in found if path not in paths]
        return paths

    def _signature_now(self, paths: Sequence[str]) -> _Signature:
        out = []
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                out.append((path, -1, -1, -1, -1))
            else:
                out.append((path, st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        return tuple(out)

    def _scan(self) -> Refresh:
        problems: list[str] = []
        paths = self._matches(problems)
        signature = self._signature_now(paths)
        good: dict[str, tuple[TargetGroup, ...]] = {}
        for path in paths:
            try:
                good[path] = read_target_groups(path)
            except OSError as exc:
                problems.append(f"{path}: cannot read the file: {exc.strerror or exc}")
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
            else:
                continue
            if path in self._last_good:
                good[path] = self._last_good[path]
        self._last_good = good
        self._signature = signature
        return Refresh(tuple(group for path in paths for group in good.get(path, ())), tuple(problems))

    async def refresh(self) -> Refresh:
        return await asyncio.to_thread(self._scan)

    def changed(self) -> bool:
        """Whether the matching files differ from the last refresh (set, mtime, size or inode)."""
        return self._signature_now(self._matches()) != self._signature

    async def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.poll_interval, left))
            if await asyncio.to_thread(self.changed):
                return

    async def aclose(self) -> None:
        return None
