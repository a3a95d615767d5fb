"""``kubernetes_sd_configs``: targets from the Kubernetes API, kept current by list and watch.

Prometheus's Kubernetes SD (``discovery/kubernetes``), through the official ``kubernetes`` Python
client, which is an optional extra: ``pip install 'promotel[kubernetes]'``. Without it, a config
using ``kubernetes_sd_configs`` fails validation saying so.

Keys, with Prometheus's meaning, defaults, checks and messages:

* ``role`` (required): ``pod``, ``service``, ``endpoints``, ``endpointslice``, ``node``, ``ingress``.
* How to reach the API server, one of: nothing (in-cluster: ``KUBERNETES_SERVICE_HOST`` and
  ``KUBERNETES_SERVICE_PORT``, the service account's token and CA under
  ``/var/run/secrets/kubernetes.io/serviceaccount``; the token file is read again every minute, so a
  rotated token is picked up); ``kubeconfig_file`` (its current context; relative to the config
  file's directory); or ``api_server`` with Prometheus's HTTP client keys inline (``basic_auth``,
  ``authorization``, ``bearer_token(_file)``, ``tls_config``, ``proxy_url``; credential files read at
  every request). An ``api_server`` without a scheme is ``http://``, as client-go makes it. HTTP
  client keys need ``api_server``; ``kubeconfig_file`` and ``api_server`` exclude each other.
  ``tls_config`` ``min_version`` other than ``TLS12`` and ``max_version`` are refused (the client's
  urllib3 pool takes no TLS version bounds; TLS 1.2 is its minimum); ``follow_redirects`` and
  ``enable_http2`` have no effect.
* ``namespaces``: ``names`` (default: all namespaces) and ``own_namespace`` (in-cluster only: the
  namespace in the service account's ``namespace`` file, added to ``names``).
* ``selectors``: ``role``, ``label``, ``field``, one entry per role, each passed as the API's
  ``labelSelector`` and ``fieldSelector`` to that role's list and watch. Which roles a job's role
  accepts and the selector syntax are checked as Prometheus checks them (``labels.Parse``,
  ``fields.ParseSelector``); the API server checks the field names.
* ``attach_metadata``: ``node`` (roles pod, endpoints, endpointslice: the node's labels and
  annotations; a pod on a node not (yet) known has no targets), ``namespace`` (the namespace's
  labels and annotations, every role but node), ``deployment`` (``__meta_kubernetes_pod_deployment_name``
  through the pod's ReplicaSet), ``job`` and ``cronjob`` (``..._pod_job_name``, ``..._pod_cronjob_name``).

Target groups, sources and ``__meta_kubernetes_*`` labels are Prometheus's, role by role
(:func:`build_groups`): one group per object, source ``pod/<ns>/<name>``, ``svc/<ns>/<name>``,
``endpoints/<ns>/<name>``, ``endpointslice/<ns>/<name>``, ``node/<name>``, ``ingress/<ns>/<name>``.
Kubernetes label and annotation names become label names as Prometheus's
``strutil.SanitizeLabelName`` makes them (every character outside ``[a-zA-Z0-9_]`` becomes ``_``).

How a watch feeds the polled :class:`promotel.discovery.targets.Discoverer` protocol: the first
``refresh()`` starts one background thread per watched collection (a reflector, as client-go's
informers have: the role's objects in one namespace, plus the services and pods of that namespace
for endpoints and endpointslice, plus nodes, namespaces, ReplicaSets or Jobs for ``attach_metadata``).
A reflector lists (in pages of 500, the store replaced whole), then watches from the list's
``resourceVersion`` (``watch=true&resourceVersion=...&allowWatchBookmarks=true``, with a
``timeoutSeconds`` between 5 and 10 minutes after which it watches again from the last version
seen), applying ADDED, MODIFIED and DELETED events to its store and keeping the version of every
event and bookmark. A ``410 Gone`` (the version is too old, as an ERROR event in the stream or as the
answer) makes it list again; that is the protocol, not a failure. Any other failure (a refused
request, a broken connection, an answer that is not a list) is recorded as the reflector's problem,
the store keeps what it had, and the reflector lists again after a backoff (0.5 s doubling to 30 s),
clearing the problem when a list succeeds. A watch stream that breaks off (a dropped connection) is
followed by a new list after the same kind of backoff, and is a problem only if that list fails.

Every change of a store bumps a generation counter and wakes :meth:`KubernetesDiscoverer.wait`
(through the event loop's thread-safe call), which then waits ``debounce`` seconds more so that a
burst of events (a rollout) makes one refresh. ``refresh()`` builds the groups from the stores'
current contents (cached while the generation is unchanged): a namespace contributes its groups once
all its reflectors listed successfully at least once; problems of reflectors are returned as the
``Refresh``'s problems, so the :class:`~promotel.discovery.targets.DiscoveryManager` reports them
while the last good objects keep their targets. If no reflector ever listed and one failed, the
refresh raises :class:`promotel.errors.DiscoveryError`; the first refresh waits up to
``sync_timeout`` seconds for the first lists. ``refresh_interval`` (30 s) is only how long ``wait()``
sleeps when nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from promotel.config.secrets import redact_all
from promotel.discovery._config import ConfigPath, SDModel
from promotel.discovery.httpconfig import USER_AGENT, HTTPClientConfig
from promotel.discovery.targets import ADDRESS_LABEL, Refresh, TargetGroup
from promotel.errors import DiscoveryError

__all__ = [
    "INSTALL_HINT",
    "SERVICE_ACCOUNT_DIR",
    "AttachMetadataConfig",
    "KubernetesDiscoverer",
    "KubernetesSDConfig",
    "NamespaceDiscovery",
    "SelectorConfig",
    "Stores",
    "build_groups",
    "client_installed",
    "object_key",
    "parse_field_selector",
    "parse_label_selector",
    "sanitize_label_name",
]

log = logging.getLogger("promotel.discovery")

Role = Literal["pod", "service", "endpoints", "endpointslice", "node", "ingress"]
ROLES: Final[tuple[Role, ...]] = ("pod", "service", "endpoints", "endpointslice", "node", "ingress")
SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
INSTALL_HINT: Final = ("kubernetes_sd_configs needs the official Kubernetes client, which is an optional extra: "
                       "pip install 'promotel[kubernetes]'")

# Which selector roles each role accepts (Prometheus's allowedSelectors).
_ALLOWED_SELECTORS: Final[dict[str, tuple[str, ...]]] = {
    "pod": ("pod", "node"),
    "service": ("service",),
    "endpointslice": ("pod", "service", "endpointslice"),
    "endpoints": ("pod", "service", "endpoints"),
    "node": ("node",),
    "ingress": ("ingress",),
}

META: Final = "__meta_kubernetes_"
NAMESPACE_LABEL: Final = META + "namespace"
PRESENT: Final = "true"

_INVALID_LABEL_CHAR: Final = re.compile(r"[^a-zA-Z0-9_]")


def sanitize_label_name(name: str) -> str:
    """Prometheus's ``strutil.SanitizeLabelName``: every character outside ``[a-zA-Z0-9_]`` is ``_``."""
    return _INVALID_LABEL_CHAR.sub("_", name)


def _kube(module: str) -> Any:
    """A module of the ``kubernetes`` client, imported when first needed (it is an optional extra;
    typed as Any: its generated API is called by name)."""
    return importlib.import_module(module)


def client_installed() -> bool:
    """Whether the ``kubernetes`` package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("kubernetes") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it (imports blocked)
        return False


# --- selectors: Kubernetes's label and field selector syntax -------------------------------------------

_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE_RE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_INTEGER_RE: Final = re.compile(r"[+-]?[0-9]+")
_SELECTOR_SYMBOLS: Final = ("!=", "==", "=", "!", ",", "(", ")", "<", ">")


def _check_label_key(key: str) -> None:
    """apimachinery's IsQualifiedName: ``[prefix/]name``."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            raise ValueError(f"{key!r}: prefix part must be non-empty")
        if len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
            raise ValueError(f"{key!r}: prefix part must be a lowercase RFC 1123 subdomain")
    else:
        raise ValueError(f"{key!r}: a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                         "with an optional DNS subdomain prefix and '/'")
    if not name:
        raise ValueError(f"{key!r}: name part must be non-empty")
    if len(name) > 63:
        raise ValueError(f"{key!r}: name part must be no more than 63 characters")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"{key!r}: name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                         "start and end with an alphanumeric character")


def _check_label_value(value: str) -> None:
    if len(value) > 63:
        raise ValueError(f"{value!r}: a label value must be no more than 63 characters")
    if not _LABEL_VALUE_RE.fullmatch(value):
        raise ValueError(f"{value!r}: a label value must be empty or consist of alphanumeric characters, '-', '_' "
                         "or '.', and must start and end with an alphanumeric character")


def _label_tokens(text: str) -> list[str]:
    """The lexer of apimachinery's label selector: symbols, and identifiers (runs of anything else
    that is not whitespace)."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        symbol = next((s for s in _SELECTOR_SYMBOLS if text.startswith(s, i)), None)
        if symbol is not None:
            tokens.append(symbol)
            i += len(symbol)
            continue
        start = i
        while i < n and text[i] not in " \t\r\n" and not any(text.startswith(s, i) for s in _SELECTOR_SYMBOLS):
            i += 1
        tokens.append(text[start:i])
    return tokens


def parse_label_selector(text: str) -> None:
    """Check ``text`` as apimachinery's ``labels.Parse`` does; raises ValueError saying what is wrong.

    Requirements are separated by commas: ``key``, ``!key``, ``key=value``, ``key==value``,
    ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``, ``key>1``, ``key<1``. Keys are qualified
    names (``example.com/name``), values label values; ``""`` selects everything."""
    tokens = _label_tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def identifier(what: str) -> str:
        nonlocal pos
        token = peek()
        if token is None or token in _SELECTOR_SYMBOLS:
            raise ValueError(f"found {'end of string' if token is None else repr(token)}, expected: {what}")
        pos += 1
        return token

    if not tokens:
        return
    while True:
        if peek() == "!":
            pos += 1
            _check_label_key(identifier("identifier after '!'"))
        else:
            key = identifier("!, identifier, or 'end of string'")
            _check_label_key(key)
            op = peek()
            if op in ("=", "==", "!="):
                pos += 1
                value = peek()
                if value is None or value == ",":
                    value = ""
                else:
                    value = identifier("identifier (a label value)")
                _check_label_value(value)
            elif op in ("<", ">"):
                pos += 1
                value = identifier("an integer")
                if not _INTEGER_RE.fullmatch(value):
                    raise ValueError(f"for 'Gt', 'Lt' operators, the value must be an integer, got {value!r}")
            elif op in ("in", "notin"):
                pos += 1
                if peek() != "(":
                    raise ValueError(f"found {peek()!r}, expected: '('")
                pos += 1
                while peek() != ")":
                    token = peek()
                    if token is None:
                        raise ValueError("found end of string, expected: ')'")
                    if token == ",":
                        pos += 1
                        continue
                    _check_label_value(identifier("identifier (a label value)"))
                pos += 1
            elif op is not None and op != ",":
                raise ValueError(f"found {op!r}, expected: in, notin, =, ==, !=, gt, lt")
        token = peek()
        if token is None:
            return
        if token != ",":
            raise ValueError(f"found {token!r}, expected: ',' or 'end of string'")
        pos += 1
        if peek() is None:
            raise ValueError("found 'end of string', expected: identifier after ','")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current + ("\\" if escaped else ""))
    return parts


def parse_field_selector(text: str) -> None:
    """Check ``text`` as apimachinery's ``fields.ParseSelector`` does; raises ValueError.

    Terms are separated by unescaped commas, each ``field=value``, ``field==value`` or ``field!=value``;
    in values ``\\\\``, ``\\,`` and ``\\=`` are the only escapes. Which fields a resource supports is the
    API server's to say."""
    for term in _split_unescaped(text, ","):
        if term == "":
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                value = term[i + len(op):]
                break
        else:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{term}'")
        j = 0
        while j < len(value):
            ch = value[j]
            if ch == "\\":
                if j + 1 >= len(value) or value[j + 1] not in "\\,=":
                    raise ValueError(f"invalid field selector value {value!r}: invalid escape sequence")
                j += 2
                continue
            if ch in ",=":
                raise ValueError(f"invalid field selector value {value!r}: unescaped {ch!r} must be escaped")
            j += 1


# --- config ------------------------------------------------------------------------------------------

class NamespaceDiscovery(SDModel):
    own_namespace: bool = False
    names: tuple[str, ...] = ()

    @field_validator("names", mode="before")
    @classmethod
    def _null(cls, value: object) -> object:
        return () if value is None else value


class SelectorConfig(SDModel):
    role: str = ""
    label: str = ""
    field: str = ""

    @field_validator("role", "label", "field", mode="before")
    @classmethod
    def _null(cls, value: object) -> object:
        return "" if value is None else value


class AttachMetadataConfig(SDModel):
    node: bool = False
    namespace: bool = False
    deployment: bool = False
    job: bool = False
    cronjob: bool = False


_DEFAULT_HTTP = HTTPClientConfig()


class KubernetesSDConfig(HTTPClientConfig):
    """One ``kubernetes_sd_configs`` entry; see the module docstring."""

    api_server: str = ""
    role: str = Field(default="", validate_default=True)
    kubeconfig_file: ConfigPath = ""
    namespaces: NamespaceDiscovery = Field(default_factory=NamespaceDiscovery)
    selectors: tuple[SelectorConfig, ...] = ()
    attach_metadata: AttachMetadataConfig = Field(default_factory=AttachMetadataConfig)

    @field_validator("api_server", "role", "kubeconfig_file", mode="before")
    @classmethod
    def _null_text(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("namespaces", "attach_metadata", mode="before")
    @classmethod
    def _null_mapping(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("selectors", mode="before")
    @classmethod
    def _null_list(cls, value: object) -> object:
        return () if value is None else value

    @field_validator("api_server")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value:
            return value  # host[:port]: client-go makes it http://host[:port]
        try:
            parts = urllib.parse.urlsplit(value)
        except ValueError as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("api_server: URL scheme must be 'http' or 'https'")
        if not parts.netloc.rpartition("@")[2]:
            raise ValueError("api_server: host is missing in URL")
        return value

    def _custom_http_client(self) -> bool:
        return any(getattr(self, name) != getattr(_DEFAULT_HTTP, name) for name in HTTPClientConfig.model_fields)

    @model_validator(mode="after")
    def _prometheus_rules(self) -> KubernetesSDConfig:
        # Prometheus's SDConfig.UnmarshalYAML, in its order and words (HTTPClientConfig.Validate ran first).
        if self.role == "":
            raise ValueError("role missing (one of: pod, service, endpoints, endpointslice, node, ingress)")
        if self.role not in ROLES:
            raise ValueError(f'unknown Kubernetes SD role "{self.role}"')
        if self.api_server and self.kubeconfig_file:
            raise ValueError("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
        custom = self._custom_http_client()
        if self.kubeconfig_file and custom:
            raise ValueError("cannot use a custom HTTP client configuration together with 'kubeconfig_file'")
        if not self.api_server and custom:
            raise ValueError("to use custom HTTP client configuration please provide the 'api_server' URL explicitly")
        if self.api_server and self.namespaces.own_namespace:
            raise ValueError("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously")
        if self.kubeconfig_file and self.namespaces.own_namespace:
            raise ValueError("cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously")
        seen: set[str] = set()
        allowed = _ALLOWED_SELECTORS[self.role]
        for selector in self.selectors:
            if selector.role in seen:
                raise ValueError(f"duplicated selector role: {selector.role}")
            seen.add(selector.role)
            if selector.role not in allowed:
                raise ValueError(f"{self.role} role supports only {', '.join(allowed)} selectors")
            try:
                parse_field_selector(selector.field)
            except ValueError as exc:
                raise ValueError(f"selectors: {selector.role}: field: {exc}") from None
            try:
                parse_label_selector(selector.label)
            except ValueError as exc:
                raise ValueError(f"selectors: {selector.role}: label: unable to parse requirement: {exc}") from None
        tls = self.tls_config
        if tls.min_version not in ("", "TLS12") or tls.max_version:
            raise ValueError("tls_config: min_version other than TLS12 and max_version are not supported with "
                             "kubernetes_sd_configs (the Kubernetes client takes no TLS version bounds)")
        if not client_installed():
            raise ValueError(INSTALL_HINT)
        return self

    def selector(self, role: str) -> tuple[str, str]:
        """The (label, field) selector for the list and watch of ``role``'s objects."""
        for selector in self.selectors:
            if selector.role == role:
                return selector.label, selector.field
        return "", ""


# --- from Kubernetes objects to target groups ---------------------------------------------------------

JSONObject = Mapping[str, Any]


def _obj(data: object, key: str) -> JSONObject:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _items(data: object, key: str) -> list[JSONObject]:
    value = data.get(key) if isinstance(data, Mapping) else None
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _str(data: object, key: str) -> str:
    value = data.get(key) if isinstance(data, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    return ""


def _present(data: object, key: str) -> bool:
    """Whether a pointer field of Go's API types is set (the key is there and not null)."""
    return isinstance(data, Mapping) and data.get(key) is not None


def _join_host_port(host: str, port: str) -> str:
    """Go's net.JoinHostPort."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bool(value: object) -> str:
    return "true" if value is True else "false"


def object_key(obj: JSONObject) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = _obj(obj, "metadata")
    namespace, name = _str(meta, "namespace"), _str(meta, "name")
    return f"{namespace}/{name}" if namespace else name


def _add_annotations_and_labels(ls: dict[str, str], meta: JSONObject, resource: str) -> None:
    for name, value in _obj(meta, "labels").items():
        label = sanitize_label_name(str(name))
        ls[f"{META}{resource}_label_{label}"] = value if isinstance(value, str) else ""
        ls[f"{META}{resource}_labelpresent_{label}"] = PRESENT
    for name, value in _obj(meta, "annotations").items():
        label = sanitize_label_name(str(name))
        ls[f"{META}{resource}_annotation_{label}"] = value if isinstance(value, str) else ""
        ls[f"{META}{resource}_annotationpresent_{label}"] = PRESENT


def _add_object_meta(ls: dict[str, str], meta: JSONObject, role: str) -> None:
    ls[f"{META}{role}_name"] = _str(meta, "name")
    _add_annotations_and_labels(ls, meta, role)


def _controller(meta: JSONObject) -> JSONObject | None:
    for ref in _items(meta, "ownerReferences"):
        if ref.get("controller") is True:
            return ref
    return None


@dataclass(frozen=True, slots=True)
class Stores:
    """What the builders look up besides the role's own objects, each keyed by :func:`object_key`.
    ``nodes``/``namespaces``/``replicasets``/``jobs`` are None when that metadata is not attached."""

    services: Mapping[str, JSONObject] = field(default_factory=dict)
    pods: Mapping[str, JSONObject] = field(default_factory=dict)
    nodes: Mapping[str, JSONObject] | None = None
    namespaces: Mapping[str, JSONObject] | None = None
    replicasets: Mapping[str, JSONObject] | None = None
    jobs: Mapping[str, JSONObject] | None = None
    attach_job: bool = False
    attach_cronjob: bool = False


def _pod_labels(pod: JSONObject, stores: Stores) -> dict[str, str]:
    meta, spec, status = _obj(pod, "metadata"), _obj(pod, "spec"), _obj(pod, "status")
    ready = "unknown"
    for condition in _items(status, "conditions"):
        if _str(condition, "type") == "Ready":
            ready = _str(condition, "status").lower()
            break
    ls = {META + "pod_ip": _str(status, "podIP"), META + "pod_ready": ready, META + "pod_phase": _str(status, "phase"),
          META + "pod_node_name": _str(spec, "nodeName"), META + "pod_host_ip": _str(status, "hostIP"),
          META + "pod_uid": _str(meta, "uid")}
    _add_object_meta(ls, meta, "pod")
    owner = _controller(meta)
    if owner is not None:
        kind, name = _str(owner, "kind"), _str(owner, "name")
        if kind:
            ls[META + "pod_controller_kind"] = kind
        if name:
            ls[META + "pod_controller_name"] = name
        key = f"{_str(meta, 'namespace')}/{name}"
        if kind == "ReplicaSet" and stores.replicasets is not None:
            replicaset = stores.replicasets.get(key)
            rs_owner = _controller(_obj(replicaset, "metadata")) if replicaset is not None else None
            if rs_owner is not None and _str(rs_owner, "kind") == "Deployment":
                ls[META + "pod_deployment_name"] = _str(rs_owner, "name")
        elif kind == "Job":
            if stores.attach_job:
                ls[META + "pod_job_name"] = name
            if stores.jobs is not None and stores.attach_cronjob:
                job = stores.jobs.get(key)
                job_owner = _controller(_obj(job, "metadata")) if job is not None else None
                if job_owner is not None and _str(job_owner, "kind") == "CronJob":
                    ls[META + "pod_cronjob_name"] = _str(job_owner, "name")
    return ls


def _node_labels(ls: dict[str, str], stores: Stores, node_name: str | None) -> dict[str, str]:
    """Prometheus's addNodeLabels: the node's name, labels and annotations, when the node is known."""
    if node_name is None or stores.nodes is None:
        return ls
    node = stores.nodes.get(node_name)
    if node is None:
        return ls
    extra: dict[str, str] = {}
    _add_object_meta(extra, _obj(node, "metadata"), "node")
    return {**ls, **extra}


def _namespace_labels(ls: dict[str, str], stores: Stores, namespace: str) -> dict[str, str]:
    if stores.namespaces is None:
        return ls
    ns = stores.namespaces.get(namespace)
    if ns is None:
        return ls
    extra: dict[str, str] = {}
    _add_annotations_and_labels(extra, _obj(ns, "metadata"), "namespace")
    return {**ls, **extra}


def _containers(pod: JSONObject) -> list[tuple[JSONObject, bool]]:
    spec = _obj(pod, "spec")
    return ([(c, False) for c in _items(spec, "containers")] + [(c, True) for c in _items(spec, "initContainers")])


def pod_group(pod: JSONObject, stores: Stores) -> TargetGroup:
    meta, spec, status = _obj(pod, "metadata"), _obj(pod, "spec"), _obj(pod, "status")
    namespace = _str(meta, "namespace")
    source = f"pod/{namespace}/{_str(meta, 'name')}"
    pod_ip = _str(status, "podIP")
    if not pod_ip:
        return TargetGroup((), {}, source)
    node_name = _str(spec, "nodeName")
    if stores.nodes is not None and node_name not in stores.nodes:
        return TargetGroup((), {}, source)
    labels = _pod_labels(pod, stores)
    labels[NAMESPACE_LABEL] = namespace
    labels = _node_labels(labels, stores, node_name)
    labels = _namespace_labels(labels, stores, namespace)
    targets: list[dict[str, str]] = []
    for container, is_init in _containers(pod):
        statuses = _items(status, "initContainerStatuses" if is_init else "containerStatuses")
        name = _str(container, "name")
        container_id = next((_str(s, "containerID") for s in statuses if _str(s, "name") == name), "")
        common = {META + "pod_container_name": name, META + "pod_container_id": container_id,
                  META + "pod_container_image": _str(container, "image"), META + "pod_container_init": _bool(is_init)}
        ports = _items(container, "ports")
        if not ports:
            targets.append({ADDRESS_LABEL: pod_ip, **common})
            continue
        for port in ports:
            number = _str(port, "containerPort")
            targets.append({ADDRESS_LABEL: _join_host_port(pod_ip, number), **common,
                            META + "pod_container_port_number": number,
                            META + "pod_container_port_name": _str(port, "name"),
                            META + "pod_container_port_protocol": _str(port, "protocol")})
    return TargetGroup(tuple(targets), labels, source)


def _service_labels(svc: JSONObject) -> dict[str, str]:
    meta = _obj(svc, "metadata")
    ls = {NAMESPACE_LABEL: _str(meta, "namespace")}
    _add_object_meta(ls, meta, "service")
    return ls


def service_group(svc: JSONObject, stores: Stores) -> TargetGroup:
    meta, spec = _obj(svc, "metadata"), _obj(svc, "spec")
    name, namespace = _str(meta, "name"), _str(meta, "namespace")
    labels = _namespace_labels(_service_labels(svc), stores, namespace)
    kind = _str(spec, "type")
    targets: list[dict[str, str]] = []
    for port in _items(spec, "ports"):
        number = _str(port, "port")
        target = {ADDRESS_LABEL: _join_host_port(f"{name}.{namespace}.svc", number),
                  META + "service_port_name": _str(port, "name"), META + "service_port_number": number,
                  META + "service_port_protocol": _str(port, "protocol"), META + "service_type": kind}
        if kind == "ExternalName":
            target[META + "service_external_name"] = _str(spec, "externalName")
        else:
            target[META + "service_cluster_ip"] = _str(spec, "clusterIP")
        if kind == "LoadBalancer":
            ips = [_str(i, "ip") for i in _items(_obj(_obj(svc, "status"), "loadBalancer"), "ingress") if _str(i, "ip")]
            target[META + "service_loadbalancer_ip"] = ",".join(ips) if ips else _str(spec, "loadBalancerIP")
        targets.append(target)
    return TargetGroup(tuple(targets), labels, f"svc/{namespace}/{name}")


def _pod_ref(ref: object, stores: Stores) -> JSONObject | None:
    if not isinstance(ref, Mapping) or _str(ref, "kind") != "Pod":
        return None
    return stores.pods.get(f"{_str(ref, 'namespace')}/{_str(ref, 'name')}")


def _container_port_labels(pod: JSONObject, port: int | None, protocol_from: JSONObject | None) -> dict[str, str]:
    """The container labels of the first container port equal to an endpoint ``port`` (Prometheus
    takes the protocol from the endpoint port for ``endpoints``, from the container's for slices:
    ``protocol_from`` is the endpoint port, or None)."""
    if port is None:
        return {}
    for container, is_init in _containers(pod):
        for cport in _items(container, "ports"):
            if cport.get("containerPort") == port:
                return {META + "pod_container_name": _str(container, "name"),
                        META + "pod_container_image": _str(container, "image"),
                        META + "pod_container_port_name": _str(cport, "name"),
                        META + "pod_container_port_number": str(port),
                        META + "pod_container_port_protocol": _str(protocol_from if protocol_from is not None
                                                                   else cport, "protocol"),
                        META + "pod_container_init": _bool(is_init)}
    return {}


def _unbound_container_targets(seen: Mapping[str, tuple[JSONObject, list[int | None]]],
                               stores: Stores) -> list[dict[str, str]]:
    """For each pod behind the endpoints, one target per container port that no endpoint port named."""
    targets: list[dict[str, str]] = []
    for pod, ports in seen.values():
        pod_ip = _str(_obj(pod, "status"), "podIP")
        if not pod_ip:
            continue
        for container, is_init in _containers(pod):
            for cport in _items(container, "ports"):
                number = cport.get("containerPort")
                if number in ports:
                    continue
                text = _str(cport, "containerPort")
                target = {ADDRESS_LABEL: _join_host_port(pod_ip, text),
                          META + "pod_container_name": _str(container, "name"),
                          META + "pod_container_image": _str(container, "image"),
                          META + "pod_container_port_name": _str(cport, "name"),
                          META + "pod_container_port_number": text,
                          META + "pod_container_port_protocol": _str(cport, "protocol"),
                          META + "pod_container_init": _bool(is_init)}
                targets.append({**target, **_pod_labels(pod, stores)})
    return targets


def endpoints_group(eps: JSONObject, stores: Stores) -> TargetGroup:
    meta = _obj(eps, "metadata")
    name, namespace = _str(meta, "name"), _str(meta, "namespace")
    labels = {NAMESPACE_LABEL: namespace}
    svc = stores.services.get(f"{namespace}/{name}")
    if svc is not None:
        labels.update(_service_labels(svc))
    _add_object_meta(labels, meta, "endpoints")
    labels = _namespace_labels(labels, stores, namespace)
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[JSONObject, list[int | None]]] = {}

    def add(addr: JSONObject, port: JSONObject, ready: str) -> None:
        target = {ADDRESS_LABEL: _join_host_port(_str(addr, "ip"), _str(port, "port")),
                  META + "endpoint_port_name": _str(port, "name"),
                  META + "endpoint_port_protocol": _str(port, "protocol"), META + "endpoint_ready": ready}
        ref = addr.get("targetRef")
        if isinstance(ref, Mapping):
            target[META + "endpoint_address_target_kind"] = _str(ref, "kind")
            target[META + "endpoint_address_target_name"] = _str(ref, "name")
        if _present(addr, "nodeName"):
            target[META + "endpoint_node_name"] = _str(addr, "nodeName")
        if _str(addr, "hostname"):
            target[META + "endpoint_hostname"] = _str(addr, "hostname")
        if stores.nodes is not None:
            if _present(addr, "nodeName"):
                target = _node_labels(target, stores, _str(addr, "nodeName"))
            elif isinstance(ref, Mapping) and _str(ref, "kind") == "Node":
                target = _node_labels(target, stores, _str(ref, "name"))
        pod = _pod_ref(ref, stores)
        if pod is None:
            targets.append(target)
            return
        entry = seen.setdefault(object_key(pod), (pod, []))
        number = port.get("port") if isinstance(port.get("port"), int) else None
        target = {**target, **_pod_labels(pod, stores), **_container_port_labels(pod, number, port)}
        entry[1].append(number)
        targets.append(target)

    for subset in _items(eps, "subsets"):
        for port in _items(subset, "ports"):
            for addr in _items(subset, "addresses"):
                add(addr, port, "true")
            for addr in _items(subset, "notReadyAddresses"):
                add(addr, port, "false")
    targets += _unbound_container_targets(seen, stores)
    return TargetGroup(tuple(targets), labels, f"endpoints/{namespace}/{name}")


_SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"


def endpointslice_group(eps: JSONObject, stores: Stores) -> TargetGroup:
    meta = _obj(eps, "metadata")
    name, namespace = _str(meta, "name"), _str(meta, "namespace")
    address_type = _str(eps, "addressType")
    labels = {NAMESPACE_LABEL: namespace, META + "endpointslice_address_type": address_type}
    _add_object_meta(labels, meta, "endpointslice")
    svc: JSONObject | None = None
    svc_labels = _obj(meta, "labels")
    if _SERVICE_NAME_LABEL in svc_labels:
        svc = stores.services.get(f"{namespace}/{svc_labels[_SERVICE_NAME_LABEL]}")
        if svc is not None:
            labels.update(_service_labels(svc))
    labels = _namespace_labels(labels, stores, namespace)
    source = f"endpointslice/{namespace}/{name}"
    if svc is not None:  # a dual-stack service's slice of its second IP family gives no targets
        spec = _obj(svc, "spec")
        families = spec.get("ipFamilies")
        if (_str(spec, "ipFamilyPolicy") in ("PreferDualStack", "RequireDualStack") and isinstance(families, list)
                and families and address_type != families[0]):
            return TargetGroup((), labels, source)
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[JSONObject, list[int | None]]] = {}

    def add(addr: str, ep: JSONObject, port: JSONObject) -> None:
        number = port.get("port") if isinstance(port.get("port"), int) else None
        target = {ADDRESS_LABEL: _join_host_port(addr, str(number)) if number is not None else addr}
        if _present(port, "name"):
            target[META + "endpointslice_port_name"] = _str(port, "name")
        if _present(port, "protocol"):
            target[META + "endpointslice_port_protocol"] = _str(port, "protocol")
        if number is not None:
            target[META + "endpointslice_port"] = str(number)
        if _present(port, "appProtocol"):
            target[META + "endpointslice_port_app_protocol"] = _str(port, "appProtocol")
        conditions = _obj(ep, "conditions")
        for key in ("ready", "serving", "terminating"):
            if _present(conditions, key):
                target[f"{META}endpointslice_endpoint_conditions_{key}"] = _bool(conditions[key])
        if _present(ep, "hostname"):
            target[META + "endpointslice_endpoint_hostname"] = _str(ep, "hostname")
        ref = ep.get("targetRef")
        if isinstance(ref, Mapping):
            target[META + "endpointslice_address_target_kind"] = _str(ref, "kind")
            target[META + "endpointslice_address_target_name"] = _str(ref, "name")
        if _present(ep, "nodeName"):
            target[META + "endpointslice_endpoint_node_name"] = _str(ep, "nodeName")
        if _present(ep, "zone"):
            target[META + "endpointslice_endpoint_zone"] = _str(ep, "zone")
        for key, value in _obj(ep, "deprecatedTopology").items():
            label = sanitize_label_name(str(key))
            target[META + "endpointslice_endpoint_topology_" + label] = value if isinstance(value, str) else ""
            target[META + "endpointslice_endpoint_topology_present_" + label] = PRESENT
        if stores.nodes is not None:
            if isinstance(ref, Mapping) and _str(ref, "kind") == "Node":
                target = _node_labels(target, stores, _str(ref, "name"))
            else:
                target = _node_labels(target, stores, _str(ep, "nodeName") if _present(ep, "nodeName") else None)
        pod = _pod_ref(ref, stores)
        if pod is None:
            targets.append(target)
            return
        entry = seen.setdefault(object_key(pod), (pod, []))
        target = {**target, **_pod_labels(pod, stores), **_container_port_labels(pod, number, None)}
        entry[1].append(number)
        targets.append(target)

    for ep in _items(eps, "endpoints"):
        for port in _items(eps, "ports"):
            addresses = ep.get("addresses")
            for addr in addresses if isinstance(addresses, list) else []:
                add(addr if isinstance(addr, str) else "", ep, port)
    targets += _unbound_container_targets(seen, stores)
    return TargetGroup(tuple(targets), labels, source)


_NODE_ADDRESS_ORDER: Final = ("InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname")


def node_group(node: JSONObject, stores: Stores) -> TargetGroup | None:
    """The node's group, or None when it has no address (Prometheus logs that and sends nothing)."""
    meta, status = _obj(node, "metadata"), _obj(node, "status")
    labels = {META + "node_provider_id": _str(_obj(node, "spec"), "providerID")}
    for condition in _items(status, "conditions"):
        name = sanitize_label_name(_str(condition, "type").lower())
        labels[META + "node_condition_" + name] = _str(condition, "status").lower()
    _add_object_meta(labels, meta, "node")
    addresses: dict[str, list[str]] = {}
    for address in _items(status, "addresses"):
        addresses.setdefault(_str(address, "type"), []).append(_str(address, "address"))
    host = next((addresses[kind][0] for kind in _NODE_ADDRESS_ORDER if kind in addresses), None)
    if host is None:
        return None
    port = _str(_obj(_obj(status, "daemonEndpoints"), "kubeletEndpoint"), "Port") or "0"
    target = {ADDRESS_LABEL: _join_host_port(host, port), "instance": _str(meta, "name")}
    for kind, values in addresses.items():
        target[sanitize_label_name(META + "node_address_" + kind)] = values[0]
    return TargetGroup((target,), labels, f"node/{_str(meta, 'name')}")


def _matches_hostname_pattern(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    pattern_parts, host_parts = pattern.split("."), host.split(".")
    if pattern_parts[0] != "*" or len(pattern_parts) != len(host_parts):
        return False
    return pattern_parts[1:] == host_parts[1:]


def ingress_group(ingress: JSONObject, stores: Stores) -> TargetGroup:
    meta, spec = _obj(ingress, "metadata"), _obj(ingress, "spec")
    namespace = _str(meta, "namespace")
    labels = {NAMESPACE_LABEL: namespace}
    if _present(spec, "ingressClassName"):
        labels[META + "ingress_class_name"] = _str(spec, "ingressClassName")
    _add_object_meta(labels, meta, "ingress")
    labels = _namespace_labels(labels, stores, namespace)
    tls_hosts = [host for tls in _items(spec, "tls") for host in (tls.get("hosts") or []) if isinstance(host, str)]
    targets: list[dict[str, str]] = []
    for rule in _items(spec, "rules"):
        host = _str(rule, "host")
        http = rule.get("http")
        # No http section: one target for "/"; a path "" is "/".
        paths = ([_str(p, "path") or "/" for p in _items(http, "paths")] if isinstance(http, Mapping) else ["/"])
        scheme = "https" if any(_matches_hostname_pattern(p, host) for p in tls_hosts) else "http"
        for path in paths:
            targets.append({ADDRESS_LABEL: host, META + "ingress_scheme": scheme, META + "ingress_host": host,
                            META + "ingress_path": path})
    return TargetGroup(tuple(targets), labels, f"ingress/{namespace}/{_str(meta, 'name')}")


_BUILDERS: Final[dict[str, Callable[[JSONObject, Stores], TargetGroup | None]]] = {
    "pod": pod_group, "service": service_group, "endpoints": endpoints_group,
    "endpointslice": endpointslice_group, "node": node_group, "ingress": ingress_group,
}


def build_groups(role: str, objects: Iterable[JSONObject], stores: Stores | None = None) -> list[TargetGroup]:
    """Prometheus's target groups for ``role``'s ``objects`` (Kubernetes objects as the API's JSON
    gives them), in the order given; ``stores`` holds the related objects the role looks up."""
    build = _BUILDERS[role]
    lookups = stores if stores is not None else Stores()
    return [group for obj in objects if (group := build(obj, lookups)) is not None]


# --- reflectors: list and watch in background threads ------------------------------------------------

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

_ReflectorKey = tuple[str, str, str, str]  # kind, namespace ("" = all), label selector, field selector


class _Stop(Exception):
    """The discoverer is closing."""


class _Reflector:
    """One collection (a kind in a namespace, with selectors) listed and watched in a thread; its
    ``objects``, ``synced`` and ``problem`` are read and written under the discoverer's lock."""

    def __init__(self, owner: KubernetesDiscoverer, key: _ReflectorKey) -> None:
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
        api = getattr(_kube("kubernetes.client"), self.resource.api)(self.owner.api_client)
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
        ApiException = _kube("kubernetes.client.exceptions").ApiException

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
                                 f"{_str(data, 'kind') or 'missing'})")
            for item in _items(data, "items"):
                items[object_key(item)] = item
            meta = _obj(data, "metadata")
            token = _str(meta, "continue") or None
            if token is None:
                self.owner.replace(self, items, _str(meta, "resourceVersion"))
                return

    def _watch(self, call: Callable[..., Any]) -> Literal["again", "relist", "broken"]:
        """One watch from the last resource version: ``again`` when it ended normally (at its
        timeoutSeconds: watch again), ``relist`` when a 410 Gone asks for a new list, ``broken`` when
        the stream broke off (a dropped connection: list again; not a problem unless that list
        fails). Raises when the server refused the watch (an HTTP status other than 410)."""
        ApiException = _kube("kubernetes.client.exceptions").ApiException

        owner = self.owner
        if owner.stopping.is_set():
            raise _Stop
        watcher = _kube("kubernetes.watch").Watch()
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


def _describe(exc: BaseException, reflector: _Reflector) -> str:
    """A problem sentence for a failed list or watch: what, the server's answer or the transport
    error, and what to check."""
    what = f"cannot list and watch {reflector.what}"
    from urllib3.exceptions import HTTPError, MaxRetryError, SSLError  # the client's transport

    ApiException = _kube("kubernetes.client.exceptions").ApiException
    if isinstance(exc, ApiException):
        message = ""
        body = exc.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        if isinstance(body, str):
            try:
                message = _str(json.loads(body), "message")
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


@dataclass(slots=True)
class _Unit:
    """The reflectors one namespace's groups are built from: ``main`` is the role's own objects."""

    namespace: str
    main: _ReflectorKey
    others: dict[str, _ReflectorKey] = field(default_factory=dict)  # "service", "pod", "node", ...


class KubernetesDiscoverer:
    """Lists and watches the objects of one ``kubernetes_sd_configs`` entry; see the module docstring.

    ``service_account_dir`` replaces ``/var/run/secrets/kubernetes.io/serviceaccount`` for in-cluster
    access (token, ``ca.crt``, ``namespace``); ``environ`` replaces ``os.environ`` (for
    ``KUBERNETES_SERVICE_HOST``/``PORT``). ``watch_timeout`` is the lower bound of a watch's
    ``timeoutSeconds`` (it is drawn from ``[watch_timeout, 2*watch_timeout)``), ``request_timeout``
    bounds connecting and each list request, ``backoff``/``max_backoff`` space retries after a failure,
    ``debounce`` is how long ``wait()`` lets a burst of events settle, ``sync_timeout`` how long the
    first refresh waits for the first lists."""

    mechanism = "kubernetes"

    def __init__(self, config: KubernetesSDConfig, name: str = "kubernetes_sd_configs[0]", *,
                 service_account_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None,
                 refresh_interval: float = 30.0, sync_timeout: float = 20.0, debounce: float = 1.0,
                 watch_timeout: int = 300, request_timeout: float = 30.0, backoff: float = 0.5,
                 max_backoff: float = 30.0, page_size: int = 500) -> None:
        self.name = name
        self.config = config
        self.refresh_interval = refresh_interval
        self.sync_timeout = sync_timeout
        self.debounce = debounce
        self.watch_timeout = watch_timeout
        self.request_timeout = request_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.page_size = page_size
        self.host = ""
        self.api_client: Any = None
        self.stopping = threading.Event()
        self._service_account_dir = service_account_dir
        self._environ = environ
        self._lock = threading.Lock()
        self._generation = 0
        self._seen_generation = -1
        self._built: Refresh | None = None
        self._reflectors: dict[_ReflectorKey, _Reflector] = {}
        self._units: list[_Unit] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._wait_generation = -1

    # -- called from reflector threads --

    def _bump(self) -> None:
        """Under the lock: something changed; wake wait()."""
        self._generation += 1
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(changed.set)

    def replace(self, reflector: _Reflector, objects: dict[str, JSONObject], resource_version: str) -> None:
        with self._lock:
            reflector.objects = objects
            reflector.resource_version = resource_version
            reflector.synced = True
            reflector.problem = None
            self._bump()

    def apply(self, reflector: _Reflector, kind: str, obj: object) -> None:
        """One watch event. Every event's object carries the resource version to resume from."""
        if not isinstance(obj, Mapping):
            return
        version = _str(_obj(obj, "metadata"), "resourceVersion")
        with self._lock:
            if version:
                reflector.resource_version = version
            if kind in ("ADDED", "MODIFIED"):
                reflector.objects[object_key(obj)] = obj
            elif kind == "DELETED":
                reflector.objects.pop(object_key(obj), None)
            else:
                return  # BOOKMARK: only the version moves
            self._bump()

    def set_problem(self, reflector: _Reflector, problem: str) -> None:
        with self._lock:
            if reflector.problem != problem:
                reflector.problem = problem
                self._bump()

    # -- setting up --

    def _namespaces(self) -> list[str]:
        names = list(self.config.namespaces.names)
        if self.config.namespaces.own_namespace:
            path = os.path.join(self._service_account_dir, "namespace")
            try:
                with open(path, encoding="utf-8") as fh:
                    own = fh.read()
            except OSError as exc:
                raise DiscoveryError(f"could not determine the pod's namespace from {path}: "
                                     f"{exc.strerror or exc}", kind="config") from exc
            if not own:
                raise DiscoveryError(f"could not read own namespace name ({path} is empty)", kind="config")
            names.append(own)
        if not names:
            return [""]
        return list(dict.fromkeys(names))  # a namespace named twice is watched once

    def _plan(self) -> None:
        cfg, attach = self.config, self.config.attach_metadata
        role = cfg.role

        def key(kind: str, namespace: str, selector_role: str | None = None) -> _ReflectorKey:
            label, fld = cfg.selector(selector_role) if selector_role else ("", "")
            return kind, namespace, label, fld

        shared: dict[str, _ReflectorKey] = {}
        if attach.node and role in ("pod", "endpoints", "endpointslice"):
            shared["node"] = key("node", "", "node")
        if attach.namespace and role != "node":
            shared["namespace"] = key("namespace", "")
        units: list[_Unit] = []
        if role == "node":
            units.append(_Unit("", key("node", "", "node")))
        else:
            for namespace in self._namespaces():
                unit = _Unit(namespace, key(role, namespace, role), dict(shared))
                if role in ("endpoints", "endpointslice"):
                    unit.others["service"] = key("service", namespace, "service")
                    unit.others["pod"] = key("pod", namespace, "pod")
                if role in ("pod", "endpoints", "endpointslice"):
                    if attach.deployment:
                        unit.others["replicaset"] = key("replicaset", namespace)
                    if attach.job or attach.cronjob:
                        unit.others["job"] = key("job", namespace)
                units.append(unit)
        self._units = units
        for unit in units:
            for reflector_key in (unit.main, *unit.others.values()):
                if reflector_key not in self._reflectors:
                    self._reflectors[reflector_key] = _Reflector(self, reflector_key)

    def _make_client(self) -> Any:
        """The API client for the configured access; raises DiscoveryError."""
        try:
            client = _kube("kubernetes.client")
            kube_config = _kube("kubernetes.config")
            ConfigException = _kube("kubernetes.config.config_exception").ConfigException
            InClusterConfigLoader = _kube("kubernetes.config.incluster_config").InClusterConfigLoader
        except ImportError as exc:
            raise DiscoveryError(INSTALL_HINT, kind="config") from exc
        cfg = self.config
        configuration = client.Configuration()
        try:
            if cfg.kubeconfig_file:
                kube_config.load_kube_config(config_file=cfg.kubeconfig_file, client_configuration=configuration,
                                             persist_config=False)
            elif not cfg.api_server:
                sa = self._service_account_dir
                InClusterConfigLoader(token_filename=os.path.join(sa, "token"),
                                      cert_filename=os.path.join(sa, "ca.crt"),
                                      environ=self._environ if self._environ is not None else os.environ,
                                      ).load_and_set(configuration)
            else:
                self._configure_http_client(configuration)
        except (ConfigException, OSError, ValueError) as exc:
            where = (f"kubeconfig_file {cfg.kubeconfig_file}" if cfg.kubeconfig_file else
                     "api_server" if cfg.api_server else
                     f"in-cluster config (KUBERNETES_SERVICE_HOST/PORT, {self._service_account_dir})")
            raise DiscoveryError(f"cannot set up the Kubernetes client from {where}: {exc}", kind="config") from exc
        configuration.retries = 0  # the reflectors retry, with backoff
        configuration.connection_pool_maxsize = max(4, len(self._reflectors) + 2)  # each watch holds a connection
        self.host = str(configuration.host)
        api_client = client.ApiClient(configuration)
        api_client.user_agent = USER_AGENT
        return api_client

    def _configure_http_client(self, configuration: Any) -> None:
        """api_server with Prometheus's HTTP client keys."""
        cfg = self.config
        host = cfg.api_server if "://" in cfg.api_server else "http://" + cfg.api_server  # as client-go does
        configuration.host = host.rstrip("/")
        tls = cfg.tls_config
        configuration.ssl_ca_cert = tls.ca_file or None
        if tls.ca:
            configuration.ca_cert_data = tls.ca
        configuration.cert_file = tls.cert_file or None
        configuration.key_file = tls.key_file or None
        configuration.verify_ssl = not tls.insecure_skip_verify
        if tls.server_name:
            configuration.tls_server_name = tls.server_name
        if cfg.proxy_url:
            configuration.proxy = cfg.proxy_url
        header = cfg.authorization_header()  # raises OSError for an unreadable credential file
        if header is not None:
            # The client sends api_key["authorization"] as the Authorization header; the hook runs
            # before every request, so credential files are read again each time, as Prometheus does.
            configuration.api_key["authorization"] = header

            def refresh(conf: Any) -> None:
                conf.api_key["authorization"] = cfg.authorization_header()
            configuration.refresh_api_key_hook = refresh

    async def _start(self) -> None:
        """Plan the reflectors, make the client, start the threads. Raises DiscoveryError (nothing
        started; the next refresh tries again: the files may be there by then)."""
        self._reflectors, self._units = {}, []
        self._plan()
        api_client = await asyncio.to_thread(self._make_client)
        if self.stopping.is_set():
            api_client.close()
            raise DiscoveryError("the discoverer is closed", kind="closed")
        self.api_client = api_client
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        for reflector in self._reflectors.values():
            reflector.thread.start()

    # -- the Discoverer protocol --

    def _snapshot(self) -> tuple[int, bool, list[str], list[tuple[_Unit, dict[str, dict[str, JSONObject]]]]]:
        """Under the lock: the generation, whether any reflector ever listed, the current problems, and
        the stores of each unit whose reflectors have all listed."""
        with self._lock:
            problems = [r.problem for r in self._reflectors.values() if r.problem]
            any_synced = any(r.synced for r in self._reflectors.values())
            ready = []
            for unit in self._units:
                keys = {"main": unit.main, **unit.others}
                if all(self._reflectors[k].synced for k in keys.values()):
                    # Copies: the reflectors go on changing their stores in place.
                    ready.append((unit, {name: dict(self._reflectors[k].objects) for name, k in keys.items()}))
            return self._generation, any_synced, problems, ready

    def _pending(self) -> bool:
        with self._lock:
            return any(not r.synced and r.problem is None for r in self._reflectors.values())

    async def refresh(self) -> Refresh:
        if self._loop is None:
            await self._start()
        deadline = time.monotonic() + self.sync_timeout
        while True:
            with self._lock:
                seen = self._generation
            left = deadline - time.monotonic()
            if not self._pending() or left <= 0:
                break
            await self._wait_change(left, seen)
        generation, any_synced, problems, ready = self._snapshot()
        if not any_synced:
            if problems:
                raise DiscoveryError("; ".join(problems), kind="kubernetes")
            raise DiscoveryError(f"no answer to the first list within {self.sync_timeout:g}s from the API server at "
                                 f"{self.host}", kind="timeout")
        if self._built is not None and generation == self._seen_generation:
            return self._built
        role = self.config.role
        groups: list[TargetGroup] = []
        for _unit, stores in ready:
            lookups = Stores(services=stores.get("service", {}), pods=stores.get("pod", {}),
                             nodes=stores.get("node"), namespaces=stores.get("namespace"),
                             replicasets=stores.get("replicaset"), jobs=stores.get("job"),
                             attach_job=self.config.attach_metadata.job,
                             attach_cronjob=self.config.attach_metadata.cronjob)
            main = stores["main"]
            groups += build_groups(role, (main[k] for k in sorted(main)), lookups)
        waiting = [unit.namespace or "all namespaces" for unit in self._units if all(u is not unit for u, _ in ready)]
        if waiting and not problems:
            problems = [f"still waiting for the first list of {', '.join(waiting)}"]
        self._built = Refresh(tuple(groups), tuple(redact_all(p) for p in problems))
        self._seen_generation = generation
        self._wait_generation = generation
        return self._built

    async def _wait_change(self, seconds: float, seen: int) -> None:
        """Until the generation differs from ``seen``, at most ``seconds``. The event is cleared before
        the generation is read: a change after the read sets it again (on this loop, later)."""
        changed = self._changed
        if changed is None:
            await asyncio.sleep(seconds)
            return
        changed.clear()
        with self._lock:
            if self._generation != seen:
                return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await changed.wait()

    async def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        await self._wait_change(seconds, self._wait_generation)  # at once if something changed since refresh()
        left = deadline - time.monotonic()
        if left > 0 and self.debounce > 0:
            await asyncio.sleep(min(self.debounce, left))  # let a burst of events settle

    async def aclose(self) -> None:
        self.stopping.set()
        reflectors = list(self._reflectors.values())
        for reflector in reflectors:
            reflector.stop()

        def join() -> None:
            # A watch can only be cut once its response has begun; one starting right now is stopped
            # by the next round.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and any(r.thread.is_alive() for r in reflectors):
                for reflector in reflectors:
                    reflector.stop()
                    reflector.thread.join(timeout=0.02)
            if self.api_client is not None:
                with contextlib.suppress(Exception):
                    self.api_client.close()
        await asyncio.to_thread(join)

    # -- for status and tests --

    def reflector_states(self) -> list[tuple[str, bool, str | None, str]]:
        """(what, listed, problem, resource version) for each watched collection."""
        with self._lock:
            return [(r.what, r.synced, r.problem, r.resource_version) for r in self._reflectors.values()]
