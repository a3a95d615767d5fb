"""``promotel check``'s exporter probe: resolve the preset, send one EMPTY request, report the answer.

An empty ``ExportMetricsServiceRequest`` is valid OTLP: a backend that accepts it has accepted the
endpoint, the protocol and the credentials without receiving any data. Messages name the problem
and what to check; they never contain secrets (URLs lose user-info and query strings).
"""

from __future__ import annotations

import asyncio
import threading
from typing import NamedTuple

from promotel.config import ExporterConfig
from promotel.errors import ConfigError, ExportError
from promotel.export.presets import ResolvedExporter, resolve_exporter, safe_url
from promotel.export.sender import Sender, make_sender

# What to check when a backend refuses the credentials, per preset.
_AUTH_HINTS = {
    "datadog": "check the api key (dd-api-key) and the site",
    "honeycomb": "check the api key (x-honeycomb-team)",
    "grafana-cloud": "check instance_id and the token (it needs the metrics:write scope)",
    "newrelic": "check the license key (api-key) and the region",
    "otlp": "check the headers",
}


class ProbeResult(NamedTuple):
    ok: bool
    message: str


def explain(resolved: ResolvedExporter, exc: ExportError) -> str:
    """One line for a failed probe: what the backend said, and what to check."""
    text = str(exc)
    prefix = f"{resolved.name}: "
    text = text.removeprefix(prefix)
    kind = exc.kind
    if "WRONG_VERSION_NUMBER" in text or (kind == "tls" and "speaks plaintext" in text):
        return _plaintext_server(resolved)
    if kind in ("http_401", "http_403", "grpc_unauthenticated", "grpc_permission_denied"):
        return f"{text} — {_AUTH_HINTS.get(resolved.preset, _AUTH_HINTS['otlp'])}"
    if kind in ("http_404", "grpc_unimplemented"):
        return f"{text} — check the endpoint and the protocol (OTLP/HTTP posts to .../v1/metrics)"
    if kind == "tls" and "certificate" in text.lower():
        # The server does speak TLS; its certificate is not trusted or not for this name.
        return f"{text} — set tls.ca_file to the CA that signed the server's certificate, or tls.server_name to a name it holds"
    if kind == "tls":
        return f"{text} — check tls.ca_file / tls.server_name, or use http:// for a plaintext endpoint"
    if kind in ("dns", "protocol"):
        return text            # the sender's message already names the fix
    if kind == "connect" or "connection refused" in text:
        return f"connection refused by {safe_url(resolved.url)} — is the backend running, and is the port right?"
    return text


def _plaintext_server(resolved: ResolvedExporter) -> str:
    """OpenSSL's WRONG_VERSION_NUMBER: the server answered the TLS ClientHello with bytes that are not TLS,
    i.e. it speaks plaintext (a collector's default). The fix is the endpoint's scheme."""
    if resolved.protocol == "grpc":
        shown, fixed = resolved.url, f"http://{resolved.url}"
        why = "an endpoint written https:// or without a scheme means TLS"
    else:
        shown = safe_url(resolved.url)
        fixed = "http://" + shown.split("://", 1)[-1]
        why = "https:// means TLS"
    return (f"the TLS handshake with {shown} failed because the server speaks plaintext, not TLS — use "
            f"endpoint: {fixed} ({why})")


async def aprobe_exporter(cfg: ExporterConfig, *, sender: Sender | None = None, timeout: float | None = None) -> ProbeResult:
    try:
        resolved = resolve_exporter(cfg)
    except ConfigError as exc:
        return ProbeResult(False, "; ".join(f"{path}: {msg}" for path, msg in exc.problems))
    if timeout is not None:
        resolved = resolved._replace(timeout=timeout)
    try:
        sender = sender if sender is not None else make_sender(resolved)
    except ExportError as exc:
        return ProbeResult(False, explain(resolved, exc))
    try:
        outcome = await sender.send(b"")     # an empty ExportMetricsServiceRequest serializes to no bytes
    except ExportError as exc:
        return ProbeResult(False, explain(resolved, exc))
    finally:
        await sender.aclose()
    if outcome.rejected_points or outcome.message:
        return ProbeResult(True, f"accepted (the backend says: {outcome.message})")
    return ProbeResult(True, "accepted")


def probe_exporter(cfg: ExporterConfig, *, timeout: float | None = None) -> ProbeResult:
    """Probe one exporter; safe to call with or without a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aprobe_exporter(cfg, timeout=timeout))
    # Called from inside a loop (an async ``check``): run the probe on its own loop in a thread.
    box: list[ProbeResult] = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(aprobe_exporter(cfg, timeout=timeout))))
    thread.start()
    thread.join()
    return box[0] if box else ProbeResult(False, "the probe failed unexpectedly")


__all__ = ["ProbeResult", "aprobe_exporter", "probe_exporter"]
