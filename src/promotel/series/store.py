"""The per-target series store: start times, resets and staleness (the convert stage).

State kept here, per target (one ``SeriesStore`` per configured source):

* per metric ``(name, kind, scope name, scope version)``: the last Metric header seen (name, unit,
  description, …) to write staleness markers with, and a dict of its live series;
* per series (keyed by its Attributes tuple inside its metric): one small list
  ``[start_ns, last value or count, last sum, scrape round last seen]``.

When the state is forgotten:

* a series missing from a scrape gets ONE point flagged ``NoRecordedValue`` (the OTLP staleness
  marker, with its old start time) in that scrape's result and is forgotten at once; if it comes
  back it is a new series with a new start time (Prometheus staleness semantics);
* a failed scrape (:meth:`SeriesStore.fail`) marks every known series stale and forgets them all;
* a metric left without live series is forgotten with its last series.

So nothing outlives the scrape after its last sighting and the state is bounded by the live series,
which ``max_series`` caps (new series beyond it are dropped and counted, one warning per scrape).
(The config key ``expire_after_scrapes`` is deprecated for that reason: no series waits for a later scrape.)

Start times (conversion.md, "Start times, resets and staleness"): ``_created`` when present; else
the time the series was first seen; a reset — a counter value, or a histogram's/summary's count or
sum, going down — restarts the series at that scrape's time. Gauges keep ``start_ns`` 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from promotel.model import (
    Attributes,
    Exemplar,
    HistogramPoint,
    Kind,
    Metric,
    NumberPoint,
    Point,
    SummaryPoint,
)

log = logging.getLogger("promotel.series.store")

_SUM, _GAUGE, _HISTOGRAM, _SUMMARY = Kind.SUM, Kind.GAUGE, Kind.HISTOGRAM, Kind.SUMMARY

# OTLP times are fixed64 nanoseconds since the epoch. The exposition formats allow more (negative
# Prometheus milliseconds; OpenMetrics seconds of any size): a sample outside [0, 2^64) is dropped and
# counted, as Prometheus rejects out-of-bounds samples; a bad _created or exemplar time is ignored.
_U64 = 1 << 64


def _clean_exemplars(exemplars: tuple[Exemplar, ...]) -> tuple[Exemplar, ...]:
    return tuple(e if e.timestamp_ns is None or 0 <= e.timestamp_ns < _U64 else e._replace(timestamp_ns=None)
                 for e in exemplars)


class ConvertResult(NamedTuple):
    metrics: tuple[Metric, ...]        # points with start_ns/time_ns set, plus staleness markers
    series: int                        # live series after this scrape
    series_added: int                  # new series this scrape (scrape_series_added)
    dropped_over_cap: int              # points dropped because the target hit max_series
    dropped_invalid: int = 0           # points dropped for a timestamp OTLP cannot carry
    over_cap_example: str = ""         # the first metric a point was dropped from for max_series
    invalid_example: str = ""          # the first metric a point was dropped from for its timestamp


_MetricKey = tuple[str, Kind, str, str]


class _MetricState:
    __slots__ = ("header", "series")

    def __init__(self, header: Metric) -> None:
        self.header = header
        # attributes → [start_ns, value-or-count, sum, round]
        self.series: dict[Attributes, list[float]] = {}


def _stale_point(kind: Kind, attrs: Attributes, start: int, time_ns: int) -> Point:
    if kind is _HISTOGRAM:
        return HistogramPoint(attrs, (), (), 0.0, None, None, None, (), start, time_ns, True)
    if kind is _SUMMARY:
        return SummaryPoint(attrs, (), 0.0, 0.0, None, None, start, time_ns, True)
    return NumberPoint(attrs, 0.0, None, None, (), start, time_ns, True)


class SeriesStore:
    """Start times, resets and staleness markers for the series of one target (see module docstring)."""

    def __init__(self, target: str, *, max_series: int = 200_000, honor_timestamps: bool = True) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1 for target {target}, got {max_series}.")
        self.target = target
        self.max_series = max_series
        self.honor_timestamps = honor_timestamps   # False: exposition timestamps are replaced by the scrape time
        self._metrics: dict[_MetricKey, _MetricState] = {}
        self._count = 0
        self._round = 0

    def __len__(self) -> int:
        return self._count

    def convert(self, metrics: Sequence[Metric], scrape_time_ns: int) -> ConvertResult:
        """Set start/time on every point, add staleness markers for vanished series, update the state."""
        self._round += 1
        rnd = float(self._round)
        seen = 0                       # distinct known series seen this round (to skip the vanish scan)
        added = 0
        over_cap = 0
        invalid = 0
        honor = self.honor_timestamps
        count = self._count
        cap = self.max_series
        states = self._metrics
        out: list[Metric] = []
        index: dict[_MetricKey, int] = {}        # where each metric sits in ``out`` (markers join it)
        over_cap_example = invalid_example = ""
        for metric in metrics:
            if not metric.points:
                continue
            over_cap_before, invalid_before = over_cap, invalid
            kind = metric.kind
            mkey = (metric.name, kind, metric.scope_name, metric.scope_version)
            header = metric._replace(points=())    # the header only: the points are not kept
            st = states.get(mkey)
            if st is None:
                st = states[mkey] = _MetricState(header)
            else:
                st.header = header
            series = st.series
            points: list[Point] = []
            append = points.append
            if kind is _GAUGE:
                for p in metric.points:
                    attrs = p.attributes
                    ts = p.timestamp_ns
                    if ts is not None and not (honor and 0 <= ts < _U64):
                        if honor:
                            invalid += 1
                            continue
                        ts = None
                    s = series.get(attrs)
                    if s is None:
                        if count >= cap:
                            over_cap += 1
                            continue
                        series[attrs] = [0, 0.0, 0.0, rnd]
                        count += 1
                        added += 1
                    elif s[3] != rnd:
                        s[3] = rnd
                        seen += 1
                    exemplars = p.exemplars  # type: ignore[union-attr]
                    if exemplars:
                        exemplars = _clean_exemplars(exemplars)
                    append(NumberPoint(attrs, p.value, ts, p.created_ns, exemplars,  # type: ignore[union-attr]
                                       0, ts if ts is not None else scrape_time_ns, False))
            else:
                # Sums, histograms and summaries: the same bookkeeping. A series keeps
                # [start, first value, second value, round]: a sum's value and 0.0, or a histogram's /
                # summary's count and sum. Either going down is a reset (for sums: when monotonic).
                is_sum = kind is _SUM
                detect_resets = metric.monotonic or not is_sum
                for p in metric.points:
                    attrs = p.attributes
                    ts = p.timestamp_ns
                    if ts is not None and not (honor and 0 <= ts < _U64):
                        if honor:
                            invalid += 1
                            continue
                        ts = None
                    t = ts if ts is not None else scrape_time_ns
                    created = p.created_ns
                    if created is not None and not 0 <= created < _U64:
                        created = None
                    if is_sum:
                        v1: float = p.value  # type: ignore[union-attr]
                        v2 = 0.0
                    else:
                        v1 = p.count  # type: ignore[assignment]
                        sm = p.sum  # type: ignore[union-attr]
                        v2 = sm if sm is not None else 0.0
                    s = series.get(attrs)
                    if s is None:
                        if count >= cap:
                            over_cap += 1
                            continue
                        start = created if created is not None else t
                        series[attrs] = [start, v1, v2, rnd]
                        count += 1
                        added += 1
                    else:
                        if s[3] != rnd:
                            s[3] = rnd
                            seen += 1
                        if created is not None:
                            s[0] = created
                        elif detect_resets and (v1 < s[1] or v2 < s[2]):
                            s[0] = t          # reset: restarted since the last scrape
                        s[1] = v1
                        s[2] = v2
                        start = int(s[0])
                    exemplars = getattr(p, "exemplars", ())
                    if exemplars:
                        p = p._replace(exemplars=_clean_exemplars(exemplars))  # type: ignore[call-arg]
                    append(p._replace(start_ns=start, time_ns=t, timestamp_ns=ts, created_ns=created,
                                      no_recorded_value=False))
            if points:
                index[mkey] = len(out)
                out.append(metric._replace(points=tuple(points)))
            if over_cap != over_cap_before and not over_cap_example:
                over_cap_example = metric.name
            if invalid != invalid_before and not invalid_example:
                invalid_example = metric.name
        # Series that vanished: one staleness marker each, then forgotten.
        known_before = self._count
        if seen != known_before:
            self._expire(out, index, rnd, scrape_time_ns)
            count -= known_before - seen
        self._count = count
        if over_cap:
            log.warning("Target %s reached its limit of %d series: %d new series were dropped in this scrape. "
                        "Raise max_series for this source or drop high-cardinality labels.",
                        self.target, cap, over_cap,
                        extra={"fields": {"source": self.target, "max_series": cap, "dropped": over_cap}})
        return ConvertResult(tuple(out), self._count, added, over_cap, invalid, over_cap_example, invalid_example)

    def _expire(self, out: list[Metric], index: dict[_MetricKey, int], rnd: float, now_ns: int) -> None:
        empty: list[_MetricKey] = []
        for mkey, st in self._metrics.items():
            series = st.series
            gone = [a for a, s in series.items() if s[3] != rnd]
            if not gone:
                if not series:
                    empty.append(mkey)
                continue
            kind = mkey[1]
            stale: list[Point] = []
            for attrs in gone:
                s = series.pop(attrs)
                stale.append(_stale_point(kind, attrs, int(s[0]), now_ns))
            at = index.get(mkey)
            if at is None:
                out.append(st.header._replace(points=tuple(stale)))
            else:                               # same metric in this scrape: one Metric, markers appended
                out[at] = out[at]._replace(points=out[at].points + tuple(stale))
            if not series:
                empty.append(mkey)
        for mkey in empty:
            del self._metrics[mkey]

    def fail(self, scrape_time_ns: int) -> ConvertResult:
        """The scrape failed: one staleness marker per known series, then the store is empty."""
        out: list[Metric] = []
        for (_name, kind, _sn, _sv), st in self._metrics.items():
            if st.series:
                out.append(st.header._replace(points=tuple(
                    _stale_point(kind, attrs, int(s[0]), scrape_time_ns) for attrs, s in st.series.items())))
        self._metrics.clear()
        self._count = 0
        self._round += 1
        return ConvertResult(tuple(out), 0, 0, 0)


__all__ = ["ConvertResult", "SeriesStore"]
