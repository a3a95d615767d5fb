"""One ``kubernetes_sd_configs`` entry: its keys, Prometheus's checks, and whether the client is there.

Discovery goes through the official ``kubernetes`` Python client, which is an optional extra:
``pip install 'promotel[kubernetes]'``. Without it, a config using ``kubernetes_sd_configs`` fails
validation saying so (:data:`INSTALL_HINT`).

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
  ``fields.ParseSelector``, in :mod:`~promotel.discovery.kubernetes.selectors`); the API server
  checks the field names.
* ``attach_metadata``: ``node`` (roles pod, endpoints, endpointslice: the node's labels and
  annotations; a pod on a node not (yet) known has no targets), ``namespace`` (the namespace's
  labels and annotations, every role but node), ``deployment`` (``__meta_kubernetes_pod_deployment_name``
  through the pod's ReplicaSet), ``job`` and ``cronjob`` (``..._pod_job_name``, ``..._pod_cronjob_name``).
"""

from __future__ import annotations

import importlib.util
import urllib.parse
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from promotel.discovery._config import ConfigPath, SDModel
from promotel.discovery.httpconfig import HTTPClientConfig
from promotel.discovery.kubernetes.selectors import parse_field_selector, parse_label_selector

__all__ = [
    "INSTALL_HINT",
    "ROLES",
    "SERVICE_ACCOUNT_DIR",
    "AttachMetadataConfig",
    "KubernetesSDConfig",
    "NamespaceDiscovery",
    "Role",
    "SelectorConfig",
    "client_installed",
]

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


def client_installed() -> bool:
    """Whether the ``kubernetes`` package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("kubernetes") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None for it (imports blocked)
        return False


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
