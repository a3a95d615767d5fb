"""OTLP/JSON for ``promotel map --format otlp-json`` (the OTLP specification's JSON mapping).

``MessageToDict`` gives the proto3 JSON mapping, which differs from OTLP/JSON in two ways fixed here:
trace and span ids are hex strings (proto3 JSON writes bytes as base64), and enums are integers
(proto3 JSON writes their names). Keys are already lowerCamelCase and 64-bit integers strings.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

_ID_KEYS = frozenset({"traceId", "spanId"})


def _fix(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in _ID_KEYS and isinstance(v, str):
                out[k] = base64.b64decode(v).hex()
            else:
                out[k] = _fix(v)
        return out
    if isinstance(node, list):
        return [_fix(v) for v in node]
    return node


def to_otlp_json(request: bytes | ExportMetricsServiceRequest) -> dict[str, Any]:
    """One ExportMetricsServiceRequest (bytes or message) as an OTLP/JSON object."""
    msg = ExportMetricsServiceRequest.FromString(request) if isinstance(request, bytes | bytearray) else request
    doc = MessageToDict(msg, preserving_proto_field_name=False, use_integers_for_enums=True)
    fixed: dict[str, Any] = _fix(doc)
    return fixed


__all__ = ["to_otlp_json"]
