"""The series stage: per target, start times, resets, staleness markers and the series cap (``store``)."""

from promotel.series.store import ConvertResult, SeriesStore

__all__ = ["ConvertResult", "SeriesStore"]
