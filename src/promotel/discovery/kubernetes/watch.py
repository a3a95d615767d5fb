"""Reflectors: one collection of the Kubernetes API listed and then watched in a background thread.

A reflector is what client-go's informers have: one per watched collection (the role's objects in
one namespace, plus the services and pods of that namespace for endpoints and endpointslice, plus
nodes, namespaces, ReplicaSets or Jobs for ``attach_metadata``; the discoverer plans which). It lists
(in pages of 500, the store replaced whole), then watches from the list's ``resourceVersion``
(``watch=true&resourceVersion=...&allowWatchBookmarks=true``, with a ``timeoutSeconds`` between 5 and
10 minutes after which it watches again from the last version seen), applying ADDED, MODIFIED and
DELETED events to its store and keeping the version of every event and bookmark. A ``410 Gone`` (the
version is too old, as an ERROR event in the stream or as the answer) makes it list again; that is the
protocol, not a failure. Any other failure (a refused request, a broken connection, an answer that is
not a list) is recorded as the reflector's problem, the store keeps what it had, and the reflector
lists again after a backoff (0.5 s doubling to 30 s), clearing the problem when a list succeeds. A
watch stream that breaks off (a dropped connection) is followed by a new list after the same kind of
backoff, and is a problem only if that list fails.

A reflector's store, version and problem change only through its :class:`ReflectorOwner` (the
discoverer), which holds the lock they are read under and wakes whoever waits for a change.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from promotel.discovery.kubernetes.objects import JSONObject, get_list, get_map, get_str, object_key

__all__ = ["Reflector", "ReflectorKey", "ReflectorOwner", "kube_module"]

log = logging.getLogger("promotel.discovery")


def kube_module(module: str) -> Any:
    """A module of the ``kubernetes`` client, imported when first needed (it is an optional extra;
    typed as Any: its generated API is called by name)."""
    return importlib.import_module(module)


@dataclass(frozen=True, slots=True)
class _Resource:
    plural: str                 # for messages and RBAC hints: "pods"
    api: str                    # the client's API class: "CoreV1Api"
    namespaced: str | None      # its list method for one namespace
    cluster: str                # its list method for all namespaces (or for a cluster-scoped kind)


_RESOURCES: Final = {
    "pod": _Resource("pods", "CoreV1Api", "list_namespaced_pod", "list_pod_for_all_namespaces"),
    "service": _Resource("services", "CoreV1Api", "list_namespaced_service", "list_service_for_all_namespaces"),
    "endpoints": _Resource("endpoints", "CoreV1Api", "list_namespaced_endpoints", "list_endpoints_for_all_namespaces"),
    "endpointslice": _Resource("endpointslices", "DiscoveryV1Api", "list_namespaced_endpoint_slice",
                               "list_endpoint_slice_for_all_namespaces"),
    "ingress": _Resource("ingresses", "NetworkingV1Api", "list_namespaced_ingress", "list_ingress_for_all_namespaces"),
    "node": _Resource("nodes", "CoreV1Api", None, "list_node"),
    "namespace": _Resource("namespaces", "CoreV1Api", None, "list_namespace"),
    "replicaset": _Resource("replicasets", "AppsV1Api", "list_namespaced_replica_set",
                            "list_replica_set_for_all_namespaces"),
    "job": _Resource("jobs", "BatchV1Api", "list_namespaced_job", "list_job_for_all_namespaces"),
}

ReflectorKey = tuple[str, str, str, str]  # kind, namespace ("" = all), label selector, field selector


class ReflectorOwner(Protocol):
    """What a reflector needs from the discoverer that runs it: its name and settings, the API client,
    the stop flag, and the three calls through which the reflector's store, version and problem change
    (under the owner's lock; a change wakes the owner's waiters)."""

    name: str
    host: str
    api_client: Any
    stopping: threading.Event
    backoff: float
    max_backoff: float
    page_size: int
    request_timeout: float
    watch_timeout: int

    def replace(self, reflector: Reflector, objects: dict[str, JSONObject], resource_version: str) -> None: ...

    def apply(self, reflector: Reflector, kind: str, obj: object) -> None: ...

    def set_problem(self, reflector: Reflector, problem: str) -> None: ...


class _Stop(Exception):
    """The discoverer is closing."""


class Reflector:
    """One collection (a kind in a namespace, with selectors) listed and watched in a thread; its
    ``objects``, ``synced`` and ``problem`` are read and written under the discoverer's lock."""

    def __init__(self, owner: ReflectorOwner, key: ReflectorKey) -> None:
        self.owner = owner
        self.kind, self.namespace, self.label_selector, self.field_selector = key
        self.resource = _RESOURCES[self.kind]
        self.objects: dict[str, JSONObject] = {}
        self.synced = False
        self.problem: str | None = None
        self.resource_version = ""
        self.watcher: Any = None
        self.break_backoff = owner.backoff
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"k8s-sd {owner.name} {self.resource.plural} {self.namespace or '*'}")

    @property
    def what(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else (
            "" if self.resource.namespaced is None else " in all namespaces")
        selectors = ", ".join(f"{name} {value!r}" for name, value in (("labelSelector", self.label_selector),
                                                                       ("fieldSelector", self.field_selector))
                              if value)
        return f"{self.resource.plural}{where}" + (f" ({selectors})" if selectors else "")

    def _call(self) -> Callable[..., Any]:
        """The list function with namespace and selectors bound. Deliberately without annotations or
        docstring: ``watch.Watch`` then cannot tell the object type and hands the objects over as the
        JSON dicts the API sent (``raw_object``), which is what the builders read."""
        api = getattr(kube_module("kubernetes.client"), self.resource.api)(self.owner.api_client)
        selectors = {name: value for name, value in (("label_selector", self.label_selector),
                                                     ("field_selector", self.field_selector)) if value}
        args: tuple[str, ...] = ()
        if self.namespace and self.resource.namespaced is not None:
            method, args = getattr(api, self.resource.namespaced), (self.namespace,)
        else:
            method = getattr(api, self.resource.cluster)

        def call(**kwargs: Any) -> Any:
            return method(*args, **selectors, **kwargs)
        return call

    def _run(self) -> None:
        owner = self.owner
        backoff = owner.backoff
        while not owner.stopping.is_set():
            try:
                call = self._call()
                self._list(call)
                backoff = owner.backoff
                while (outcome := self._watch(call)) == "again":
                    pass
                if outcome == "broken":  # list again, after a pause that grows while watches keep breaking
                    if owner.stopping.wait(self.break_backoff * random.uniform(1.0, 1.5)):
                        return
                    self.break_backoff = min(self.break_backoff * 2, owner.max_backoff)
            except _Stop:
                return
            except Exception as exc:
                if owner.stopping.is_set():
                    return
                problem = _describe(exc, self)
                log.debug("kubernetes_sd %s: %s", owner.name, problem)
                owner.set_problem(self, problem)
                if owner.stopping.wait(backoff * random.uniform(1.0, 1.5)):
                    return
                backoff = min(backoff * 2, owner.max_backoff)

    def _list(self, call: Callable[..., Any]) -> None:
        """A complete list (in pages), replacing the store; raises on failure."""
        ApiException = kube_module("kubernetes.client.exceptions").ApiException

        items: dict[str, JSONObject] = {}
        token: str | None = None
        restarted = False
        while True:
            kwargs: dict[str, Any] = {"limit": self.owner.page_size, "_preload_content": False,
                                      "_request_timeout": self.owner.request_timeout}
            if token:
                kwargs["_continue"] = token
            try:
                response = call(**kwargs)
            except ApiException as exc:
                if exc.status == 410 and token and not restarted:  # the continue token expired: start over
                    items, token, restarted = {}, None, True
                    continue
                raise
            if self.owner.stopping.is_set():
                raise _Stop
            data = json.loads(response.data)
            if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
                raise ValueError(f"the answer is not a list of {self.resource.plural} (kind "
                                 f"{get_str(data, 'kind') or 'missing'})")
            for item in get_list(data, "items"):
                items[object_key(item)] = item
            meta = get_map(data, "metadata")
            token = get_str(meta, "continue") or None
            if token is None:
                self.owner.replace(self, items, get_str(meta, "resourceVersion"))
                return

    def _watch(self, call: Callable[..., Any]) -> Literal["again", "relist", "broken"]:
        """One watch from the last resource version: ``again`` when it ended normally (at its
        timeoutSeconds: watch again), ``relist`` when a 410 Gone asks for a new list, ``broken`` when
        the stream broke off (a dropped connection: list again; not a problem unless that list
        fails). Raises when the server refused the watch (an HTTP status other than 410)."""
        ApiException = kube_module("kubernetes.client.exceptions").ApiException

        owner = self.owner
        if owner.stopping.is_set():
            raise _Stop
        watcher = kube_module("kubernetes.watch").Watch()
        self.watcher = watcher
        timeout = int(owner.watch_timeout * random.uniform(1.0, 2.0))
        connect = owner.request_timeout
        try:
            for event in watcher.stream(call, resource_version=self.resource_version, timeout_seconds=timeout,
                                        allow_watch_bookmarks=True, _request_timeout=(connect, timeout + connect)):
                if owner.stopping.is_set():
                    raise _Stop
                if not isinstance(event, Mapping):
                    continue
                owner.apply(self, str(event.get("type", "")), event.get("raw_object"))
                self.break_backoff = owner.backoff
        except ApiException as exc:
            if exc.status == 410:
                log.debug("kubernetes_sd %s: %s: resource version %s is gone; listing again", owner.name,
                          self.what, self.resource_version)
                return "relist"
            raise
        except _Stop:
            raise
        except Exception as exc:
            if owner.stopping.is_set():
                raise _Stop from None
            log.debug("kubernetes_sd %s: the watch of %s broke off (%s: %s); listing again", owner.name, self.what,
                      type(exc).__name__, exc)
            return "broken"
        finally:
            self.watcher = None
        if owner.stopping.is_set():
            raise _Stop
        self.break_backoff = owner.backoff
        return "again"

    def stop(self) -> None:
        watcher = self.watcher
        if watcher is not None:
            with contextlib.suppress(Exception):  # best effort: the read times out anyway
                watcher.stop()


def _describe(exc: BaseException, reflector: Reflector) -> str:
    """A problem sentence for a failed list or watch: what, the server's answer or the transport
    error, and what to check."""
    what = f"cannot list and watch {reflector.what}"
    from urllib3.exceptions import HTTPError, MaxRetryError, SSLError  # the client's transport

    ApiException = kube_module("kubernetes.client.exceptions").ApiException
    if isinstance(exc, ApiException):
        message = ""
        body = exc.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        if isinstance(body, str):
            try:
                message = get_str(json.loads(body), "message")
            except ValueError:
                message = body.strip()[:200]
        text = f"{what}: the API server answered {exc.status} {exc.reason or ''}".rstrip()
        if message:
            text += f": {message}"
        if exc.status == 401:
            text += " (check the credentials: service account token, kubeconfig user, or bearer_token)"
        elif exc.status == 403:
            text += f" (the account needs RBAC permission to list and watch {reflector.resource.plural})"
        return text
    reason: BaseException = exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    if isinstance(reason, SSLError) or "SSL" in type(reason).__name__:
        return f"{what}: TLS failed: {reason} (check the CA certificate and the server name)"
    if isinstance(reason, HTTPError | OSError):
        return f"{what}: cannot reach the API server at {reflector.owner.host}: {reason}"
    if isinstance(exc, ValueError):
        return f"{what}: {exc}"
    return f"{what}: unexpected error: {type(exc).__name__}: {exc}"
