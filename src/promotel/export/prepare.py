"""The per-exporter half of the pipeline: a ``TargetBatch`` becomes the OTLP requests one exporter sends.

    summaries policy (keep | convert | drop) → cumulative → delta (when the exporter wants delta)
        → OTLP encoding, split under the exporter's request-size limit

``ExporterPipeline`` (the service's queue) and ``promotel map`` both prepare batches through this class,
so the offline preview encodes exactly what an exporter would send. State: the exporter's delta state
(``promotel.export.delta``), advanced by ``prepare`` and made durable by ``commit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from promotel.export.presets import ResolvedExporter
from promotel.model import TargetBatch

if TYPE_CHECKING:
    from promotel.export.encode import EncodeResult

__all__ = ["BatchPreparer", "DeltaConverter", "Encoder", "Prepared", "SummaryPolicy"]

Encoder = Callable[[TargetBatch, int, "int | None"], "EncodeResult"]
SummaryPolicy = Callable[[TargetBatch, str], TargetBatch]


class DeltaConverter(Protocol):
    """The per-exporter cumulative→delta state (``promotel.export.delta.DeltaState``)."""

    def to_delta(self, batch: TargetBatch) -> TargetBatch: ...

    def commit(self) -> None: ...


class Prepared(NamedTuple):
    requests: tuple[tuple[bytes, int], ...]   # (serialized ExportMetricsServiceRequest, data points in it)
    dropped_attributes: int                   # attributes over the exporter's per-point limit


class BatchPreparer:
    """Summaries policy, delta and encoding for one exporter (see the module docstring)."""

    def __init__(self, resolved: ResolvedExporter, *, delta: DeltaConverter | None = None,
                 encode: Encoder | None = None, summaries: SummaryPolicy | None = None) -> None:
        self.resolved = resolved
        self.delta = delta
        if encode is None:
            from promotel.export.encode import encode_requests

            encode = encode_requests
        self._encode = encode
        if summaries is None:
            from promotel.export.delta import summaries_for_delta

            summaries = summaries_for_delta
        self._summaries = summaries

    def transform(self, batch: TargetBatch) -> TargetBatch:
        """The batch as this exporter sends it, before encoding: summaries policy, then delta."""
        if self.resolved.summaries != "keep":
            batch = self._summaries(batch, self.resolved.summaries)
        if self.delta is not None:
            batch = self.delta.to_delta(batch)
        return batch

    def prepare(self, batch: TargetBatch) -> Prepared:
        """The batch as requests with their point counts. Raises ``PromotelError`` when it cannot be encoded."""
        return self.encode(self.transform(batch))

    def encode(self, batch: TargetBatch) -> Prepared:
        """Encode an already transformed batch under the exporter's size and attribute limits."""
        result = self._encode(batch, self.resolved.max_request_bytes, self.resolved.max_attributes)
        # The encoder counts the points of each request as it splits the batch (``request_points``).
        return Prepared(tuple(zip(result.requests, result.request_points, strict=True)), result.dropped_attributes)

    def commit(self) -> None:
        """The prepared batches were delivered (or dropped): make the delta state durable. The export queue with a
        state_dir writes the delta state in the same transaction as the batch's requests instead."""
        if self.delta is not None:
            self.delta.commit()
