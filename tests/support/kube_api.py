"""A fake Kubernetes API server on 127.0.0.1 for the Kubernetes discovery tests: list and watch.

It serves recorded list responses (``tests/testdata/kubernetes/*.json``: PodList, ServiceList, ... as
the API returns them) and answers as the real API server does where a client can get it wrong:

* every request needs ``Authorization: Bearer <token>`` (the scheme in any case, as the API server's
  bearer token authenticator takes it; else ``401`` with a ``Status`` body);
* paths are the real ones (``/api/v1/namespaces/<ns>/pods``, ``/api/v1/pods``,
  ``/apis/discovery.k8s.io/v1/...``); anything else is ``404``; only GET;
* ``labelSelector`` and ``fieldSelector`` are parsed (a malformed one is ``400``), field names are
  checked per resource (``field label not supported``), and objects are filtered by them;
* ``limit`` and ``continue`` page a list; the list's ``metadata.resourceVersion`` is the store's;
* a watch (``watch=true``) must carry the ``resourceVersion`` of a list (this fake refuses a watch
  without one with ``400``: it would miss what changed since the list); it streams, chunked, the
  events after that version, then new ones as they happen, until ``timeoutSeconds``. A version older
  than the last compaction gets what the real server sends: a ``200`` stream with one ``ERROR`` event
  whose object is a ``Status`` with code ``410`` (``Expired``), then the end;
* ``fail(resource, status)`` makes requests for a resource fail, ``drop_watches()`` cuts every open
  watch, ``expire_watches()`` ends them with the 410 ERROR event.

Every request is recorded (``requests``).
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from support.loopback_http import ClosingServer

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "kubernetes"


@dataclass(frozen=True)
class Kind:
    prefix: str        # "/api/v1" or "/apis/<group>/<version>"
    kind: str
    namespaced: bool
    fields: tuple[str, ...] = ()  # field selector names besides metadata.name / metadata.namespace

    @property
    def api_version(self) -> str:
        return "v1" if self.prefix == "/api/v1" else self.prefix.removeprefix("/apis/")


KINDS = {
    "pods": Kind("/api/v1", "Pod", True, ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                          "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                                          "status.podIP", "status.nominatedNodeName")),
    "services": Kind("/api/v1", "Service", True, ("spec.clusterIP", "spec.type")),
    "endpoints": Kind("/api/v1", "Endpoints", True),
    "nodes": Kind("/api/v1", "Node", False, ("spec.unschedulable",)),
    "namespaces": Kind("/api/v1", "Namespace", False, ("status.phase",)),
    "endpointslices": Kind("/apis/discovery.k8s.io/v1", "EndpointSlice", True, ("addressType",)),
    "ingresses": Kind("/apis/networking.k8s.io/v1", "Ingress", True),
    "replicasets": Kind("/apis/apps/v1", "ReplicaSet", True, ("status.replicas",)),
    "jobs": Kind("/apis/batch/v1", "Job", True, ("status.successful",)),
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class SelectorError(ValueError):
    pass


def _label_matcher(text: str) -> Callable[[dict[str, str]], bool]:
    """A small, independent reading of the label selector syntax (equality and set based)."""
    terms = [t.strip() for t in re.split(r",(?![^()]*\))", text) if t.strip()] if text.strip() else []
    tests: list[Callable[[dict[str, str]], bool]] = []
    key_re = r"(?:[a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
    value_re = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"

    def requirement(key: str, allowed: set[str] | None, negate: bool) -> Callable[[dict[str, str]], bool]:
        """key in allowed (None: key exists), or not."""
        return lambda ls: (key in ls and (allowed is None or ls[key] in allowed)) != negate

    for term in terms:
        if m := re.fullmatch(rf"({key_re})\s*(==|!=|=)\s*({value_re})", term):
            tests.append(requirement(m.group(1), {m.group(4)}, m.group(3) == "!="))
        elif m := re.fullmatch(rf"({key_re})\s+(in|notin)\s*\(([^()]*)\)", term):
            values = {value.strip() for value in m.group(4).split(",")}
            if not all(re.fullmatch(value_re, value) for value in values):
                raise SelectorError(f"unable to parse requirement: invalid label value in {term!r}")
            tests.append(requirement(m.group(1), values, m.group(3) == "notin"))
        elif m := re.fullmatch(rf"!\s*({key_re})", term):
            tests.append(requirement(m.group(1), None, True))
        elif re.fullmatch(key_re, term):
            tests.append(requirement(term, None, False))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")
    return lambda labels: all(test(labels) for test in tests)


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _field_matcher(text: str, kind: Kind) -> Callable[[dict[str, Any]], bool]:
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for term in [t for t in text.split(",") if t]:
        m = re.fullmatch(r"([A-Za-z.]+)(!=|==|=)(.*)", term)
        if m is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        name, op, value = m.groups()
        if name not in ("metadata.name", "metadata.namespace", *kind.fields):
            raise SelectorError(f'field label not supported: {name}')
        tests.append((lambda n, v, neg: lambda o: (_field_value(o, n) == v) != neg)(name, value, op == "!="))
    return lambda obj: all(test(obj) for test in tests)


class FakeKubeAPI(ClosingServer):
    """See the module docstring. ``load(name)`` takes a recorded list from the testdata directory."""

    def __init__(self, *, token: str = "s3cr3t-sa-token", tls: ssl.SSLContext | None = None) -> None:
        self.token = token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {plural: {} for plural in KINDS}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []
        self.resource_version = 1000
        self.compacted = 0
        self.requests: list[Request] = []
        self.failures: dict[str, tuple[int, int]] = {}  # resource -> (status, how many more; -1 = always)
        self.cond = threading.Condition()
        self._expire_generation = 0
        self._drop_generation = 0
        self._closing = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self)

            def do_POST(self) -> None:
                owner._send_json(self, 405, status_body(405, "MethodNotAllowed", "this fake only reads"))

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.tls = tls
        self.serve(Handler, name="fake-kube-api", tls=tls)

    # -- the store --

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @staticmethod
    def key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]

    def load(self, name: str) -> dict[str, Any]:
        """A recorded list (``pods`` → pods.json, a PodList): its items become the store of that
        resource. Returns the list."""
        data: dict[str, Any] = json.loads((TESTDATA / f"{name}.json").read_text())
        plural = name.split("-")[0]
        kind = KINDS[plural]
        assert data["kind"] == kind.kind + "List" and data["apiVersion"] == kind.api_version
        with self.cond:
            for item in data["items"]:
                self.objects[plural][self.key(item)] = item
                self.resource_version = max(self.resource_version, int(item["metadata"]["resourceVersion"]))
        return data

    def _event(self, plural: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            self.resource_version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.resource_version)
            if kind == "DELETED":
                self.objects[plural].pop(self.key(obj), None)
            else:
                self.objects[plural][self.key(obj)] = obj
            self.events.append((self.resource_version, plural, kind, obj))
            self.cond.notify_all()
            return obj

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._event(plural, "ADDED", obj)

    def modify(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._event(plural, "MODIFIED", obj)

    def delete(self, plural: str, key: str) -> dict[str, Any]:
        return self._event(plural, "DELETED", self.objects[plural][key])

    def get(self, plural: str, key: str) -> dict[str, Any]:
        with self.cond:
            return copy.deepcopy(self.objects[plural][key])

    def compact(self) -> None:
        """Versions up to now are gone (etcd compaction): older watches and continues get 410."""
        with self.cond:
            self.compacted = self.resource_version + 1
            self.cond.notify_all()

    def expire_watches(self) -> None:
        """End every open watch with the ERROR event (410 Expired), and compact."""
        with self.cond:
            self.compacted = self.resource_version + 1
            self._expire_generation += 1
            self.cond.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch without a word (a broken connection)."""
        with self.cond:
            self._drop_generation += 1
            self.cond.notify_all()

    def fail(self, plural: str, status: int, times: int = -1) -> None:
        with self.cond:
            self.failures[plural] = (status, times)

    def heal(self) -> None:
        with self.cond:
            self.failures.clear()

    def watches(self, plural: str | None = None) -> list[Request]:
        return [r for r in list(self.requests) if r.query.get("watch") == "true"
                and (plural is None or r.path.endswith("/" + plural))]

    def lists(self, plural: str | None = None) -> list[Request]:
        return [r for r in list(self.requests) if r.query.get("watch") != "true"
                and (plural is None or r.path.endswith("/" + plural))]

    # -- HTTP --

    def _send_json(self, handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _route(self, path: str) -> tuple[str, str | None] | None:
        """(resource, namespace or None) for a collection path."""
        for plural, kind in KINDS.items():
            if path == f"{kind.prefix}/{plural}":
                return plural, None
            if kind.namespaced and (m := re.fullmatch(rf"{re.escape(kind.prefix)}/namespaces/([a-z0-9-]+)/{plural}",
                                                      path)):
                return plural, m.group(1)
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request("GET", parts.path, query, {k.lower(): v for k, v in handler.headers.items()})
        self.requests.append(request)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or credentials != self.token:  # the scheme is case-insensitive
            self._send_json(handler, 401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        route = self._route(parts.path)
        if route is None:
            self._send_json(handler, 404, status_body(404, "NotFound", "the server could not find the requested "
                                                                      "resource"))
            return
        plural, namespace = route
        kind = KINDS[plural]
        with self.cond:
            failure = self.failures.get(plural)
            if failure is not None and failure[1] == 1:
                del self.failures[plural]
            elif failure is not None and failure[1] > 1:
                self.failures[plural] = (failure[0], failure[1] - 1)
        if failure is not None:
            self._send_json(handler, failure[0], status_body(failure[0], "InternalError" if failure[0] >= 500 else
                                                             "Forbidden", f"{plural} is unavailable (injected)"))
            return
        try:
            labels = _label_matcher(query.get("labelSelector", ""))
            fields = _field_matcher(query.get("fieldSelector", ""), kind)
        except SelectorError as exc:
            self._send_json(handler, 400, status_body(400, "BadRequest", str(exc)))
            return

        def selected(obj: dict[str, Any]) -> bool:
            meta = obj["metadata"]
            return ((namespace is None or meta.get("namespace") == namespace)
                    and labels(meta.get("labels") or {}) and fields(obj))

        if query.get("watch") in ("true", "1"):
            self._watch(handler, plural, kind, query, selected)
        else:
            self._list(handler, plural, kind, query, selected)

    def _list(self, handler: BaseHTTPRequestHandler, plural: str, kind: Kind, query: dict[str, str],
              selected: Callable[[dict[str, Any]], bool]) -> None:
        with self.cond:
            items = [copy.deepcopy(o) for key, o in sorted(self.objects[plural].items()) if selected(o)]
            version = self.resource_version
        start = 0
        if token := query.get("continue"):
            at, _, offset = token.partition(":")
            if int(at) < self.compacted:
                self._send_json(handler, 410, status_body(410, "Expired", "The provided continue parameter is too "
                                                          "old to display a consistent list result."))
                return
            version, start = int(at), int(offset)
        limit = int(query.get("limit", "0") or 0)
        end = start + limit if limit > 0 else len(items)
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if end < len(items):
            meta["continue"] = f"{version}:{end}"
        self._send_json(handler, 200, {"kind": kind.kind + "List", "apiVersion": kind.api_version, "metadata": meta,
                                       "items": items[start:end]})

    def _watch(self, handler: BaseHTTPRequestHandler, plural: str, kind: Kind, query: dict[str, str],
               selected: Callable[[dict[str, Any]], bool]) -> None:
        since = query.get("resourceVersion", "")
        if not since.isdigit():
            self._send_json(handler, 400, status_body(400, "BadRequest", "this fake wants every watch to resume from a "
                                                      f"list's resourceVersion, got {since!r}"))
            return
        timeout = float(query.get("timeoutSeconds", "1800"))
        deadline = time.monotonic() + timeout
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()

            def send(event: dict[str, Any]) -> None:
                data = json.dumps(event).encode() + b"\n"
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()

            version = int(since)
            with self.cond:
                expire, drop = self._expire_generation, self._drop_generation
            if version < self.compacted:
                send({"type": "ERROR", "object": status_body(410, "Expired", f"too old resource version: {version} "
                                                             f"({self.compacted})")})
            else:
                while not self._closing and time.monotonic() < deadline:
                    with self.cond:
                        pending = [(rv, kind_, obj) for rv, p, kind_, obj in self.events
                                   if p == plural and rv > version]
                        if not pending:
                            self.cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
                        expired = self._expire_generation != expire
                        dropped = self._drop_generation != drop
                    if dropped:
                        handler.close_connection = True
                        handler.connection.shutdown(2)  # no final chunk: the stream breaks off
                        return
                    for rv, event_kind, obj in pending:
                        version = rv
                        if selected(obj):  # a watched object carries its kind, unlike a list's items
                            send({"type": event_kind, "object": {"kind": kind.kind, "apiVersion": kind.api_version,
                                                                 **obj}})
                    if expired:
                        send({"type": "ERROR", "object": status_body(410, "Expired", "too old resource version")})
                        break
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError, ssl.SSLError):
            handler.close_connection = True

    def close(self) -> None:
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        super().close()
