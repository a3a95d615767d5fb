"""``promotel top``: watch a running bridge through its health listener's ``/status``.

One frame is two tables, sources then exporters, with fixed column widths so a redraw never moves a
column. Live mode redraws the frame in place (``rich.live.Live``: the cursor goes back up over the
previous frame, nothing scrolls) every ``--interval`` seconds until Ctrl-C; ``--once`` prints one frame
and exits (for scripts and tests). An unreachable listener is shown in the frame (live) or is exit
status 1 (``--once``).

The listener: ``--url``, else the ``health.listen`` of the config given with ``-c``, else
``http://127.0.0.1:8888`` (``health.listen``'s default). A wildcard listen address (``0.0.0.0``, ``::``)
is reached on loopback.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from promotel.errors import ConfigError, PromotelError

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod, RenderableType
    from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8888"
_FETCH_TIMEOUT_S = 3.0


class TopError(PromotelError):
    """The health listener could not be read."""


def listener_url(url: str | None, config_path: str | None, allow_insecure: bool = False) -> str:
    """The base URL of the health listener to watch (see the module docstring)."""
    if url:
        return url.rstrip("/")
    if not config_path:
        return DEFAULT_URL
    from promotel.service.bridge import load
    from promotel.service.health import parse_listen

    config = load(config_path, allow_insecure)
    if config.health is None:
        raise ConfigError([("health", f"{config_path} has no 'health' section, so the bridge serves no /status; "
                                      "add 'health: {listen: \"127.0.0.1:8888\"}' or pass --url")])
    host, port = parse_listen(config.health.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fetch_status(base: str) -> dict[str, object]:
    import httpx

    try:
        response = httpx.get(base + "/status", timeout=_FETCH_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise TopError(f"cannot read {base}/status: {type(exc).__name__}: {exc or 'no answer'}; is 'promotel run' "
                       "running with a 'health' section, on this address?") from exc
    if response.status_code != 200:
        raise TopError(f"{base}/status answered {response.status_code}: {response.text.strip()[:200]}")
    try:
        data = response.json()
    except ValueError as exc:
        raise TopError(f"{base}/status did not answer JSON; is this promotel's health listener?") from exc
    if not isinstance(data, dict):
        raise TopError(f"{base}/status did not answer a JSON object; is this promotel's health listener?")
    return data


# ─── formatting: every cell a short string of bounded width ──────────────────────────────────────────

def _parse_iso(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ago(value: object, now: datetime.datetime | None) -> str:
    """``2026-…T12:00:03Z`` → ``5s ago`` relative to the bridge's own clock (no skew with this host)."""
    moment = _parse_iso(value)
    if moment is None or now is None:
        return "-"
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def _count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    n = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e4)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _bytes(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    n = float(value)
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _by_kind(value: object) -> str:
    if not isinstance(value, Mapping) or not any(value.values()):
        return "0"
    return " ".join(f"{k}={_count(n)}" for k, n in sorted(value.items()) if n)


def _seconds(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


# ─── the frame ─────────────────────────────────────────────────────────────────────────────────────

def _table(title: str, columns: tuple[tuple[str, int, int, JustifyMethod], ...]) -> Table:
    """A table of one-line cells; columns are (header, width, minimum width, justify): on a narrow terminal
    the free-text columns give way first."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False)
    for header, width, least, justify in columns:
        table.add_column(header, width=width, min_width=least, justify=justify, no_wrap=True, overflow="ellipsis")
    return table


def render_frame(base: str, status: Mapping[str, object] | None, error: str | None = None) -> RenderableType:
    """One frame: a title line, the sources table, the exporters table."""
    from rich.console import Group
    from rich.text import Text

    status = status or {}
    now = _parse_iso(status.get("now_at"))
    title = Text(f"promotel top — {base}", style="bold")
    if status.get("now_at"):
        title.append(f" — now {status['now_at']}")
    if error:
        title.append(f"\n{error}", style="bold red")

    sources = _table("sources", (("source", 16, 8, "left"), ("up", 4, 4, "center"),
                                 ("last scrape", 11, 8, "right"), ("next", 9, 6, "right"),
                                 ("duration", 9, 6, "right"), ("samples", 7, 6, "right"),
                                 ("series", 7, 6, "right"), ("error", 36, 5, "left")))
    targets = status.get("targets")
    for name, t in sorted(targets.items()) if isinstance(targets, Mapping) else ():
        if not isinstance(t, Mapping):
            continue
        up = t.get("up")
        up_cell = Text("-" if up is None else ("up" if up else "DOWN"),
                       style="" if up is None else ("green" if up else "bold red"))
        sources.add_row(str(name), up_cell, _ago(t.get("last_scrape_at"), now), _ago(t.get("next_scrape_at"), now),
                        _seconds(t.get("duration_s")), _count(t.get("samples")), _count(t.get("series")),
                        str(t.get("error") or ""))

    exporters = _table("exporters", (("exporter", 16, 8, "left"), ("state", 17, 8, "left"),
                                     ("ready", 5, 5, "center"), ("queue", 5, 5, "right"),
                                     ("persisted", 14, 9, "right"), ("sent req", 8, 6, "right"),
                                     ("sent points", 11, 7, "right"), ("failed", 14, 6, "left"),
                                     ("dropped", 14, 7, "left"), ("last success", 12, 8, "right")))
    exps = status.get("exporters")
    for name, e in sorted(exps.items()) if isinstance(exps, Mapping) else ():
        if not isinstance(e, Mapping):
            continue
        state = str(e.get("state", "-"))
        ready = e.get("ready")
        exporters.add_row(str(name), Text(state, style="green" if state == "ok" else "yellow"),
                          Text("yes" if ready else "NO", style="green" if ready else "bold red"),
                          _count(e.get("queue_length")),
                          f"{_count(e.get('persisted_requests'))} / {_bytes(e.get('persisted_bytes'))}",
                          _count(e.get("sent_requests")), _count(e.get("sent_points")),
                          _by_kind(e.get("failed_requests")), _by_kind(e.get("dropped")),
                          _ago(e.get("last_success_at"), now))
    return Group(title, sources, exporters)


def _console(file: object = None) -> Console:
    from rich.console import Console

    # Not a terminal (a pipe, a test): wide enough that no column is squeezed, no colour codes.
    out = file if file is not None else sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, width=None if tty else 200, highlight=False)  # type: ignore[arg-type]


def run_top(base: str, interval: float, once: bool) -> int:
    from promotel.config.secrets import redact_all

    console = _console()
    if once:
        status = fetch_status(base)
        console.print(render_frame(base, status))
        return 0
    from rich.live import Live

    def frame() -> RenderableType:
        try:
            return render_frame(base, fetch_status(base))
        except TopError as exc:
            return render_frame(base, None, redact_all(str(exc)))

    with Live(frame(), console=console, auto_refresh=False, transient=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
        except KeyboardInterrupt:
            pass
    return 0


def cli_top(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("promotel top: --interval must be more than 0 seconds", file=sys.stderr)
        return 2
    try:
        base = listener_url(args.url, args.config, args.allow_insecure_config_permissions)
    except ConfigError as exc:
        print(f"promotel top: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        return run_top(base, args.interval, args.once)
    except PromotelError as exc:
        print(f"promotel top: {exc}", file=sys.stderr)
        return 1
