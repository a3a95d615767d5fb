"""``kubernetes_sd_configs``: the public names, at the path :mod:`promotel.discovery.sd` and callers import.

The code is in the package :mod:`promotel.discovery.kubernetes` (config, selector syntax, labels per
role, reflectors, the discoverer; see its docstring); this module re-exports what it exported when it
held all of it, as the same objects: the names in ``__all__``, and (as ``name as name``, so that
type checkers see them re-exported too) the other public names it defined.
"""

from __future__ import annotations

from promotel.discovery.kubernetes.config import (
    INSTALL_HINT,
    SERVICE_ACCOUNT_DIR,
    AttachMetadataConfig,
    KubernetesSDConfig,
    NamespaceDiscovery,
    SelectorConfig,
    client_installed,
)
from promotel.discovery.kubernetes.config import ROLES as ROLES
from promotel.discovery.kubernetes.config import Role as Role
from promotel.discovery.kubernetes.discoverer import KubernetesDiscoverer
from promotel.discovery.kubernetes.objects import JSONObject as JSONObject
from promotel.discovery.kubernetes.objects import object_key
from promotel.discovery.kubernetes.roles import META as META
from promotel.discovery.kubernetes.roles import NAMESPACE_LABEL as NAMESPACE_LABEL
from promotel.discovery.kubernetes.roles import PRESENT as PRESENT
from promotel.discovery.kubernetes.roles import Stores, build_groups, sanitize_label_name
from promotel.discovery.kubernetes.roles import endpoints_group as endpoints_group
from promotel.discovery.kubernetes.roles import endpointslice_group as endpointslice_group
from promotel.discovery.kubernetes.roles import ingress_group as ingress_group
from promotel.discovery.kubernetes.roles import node_group as node_group
from promotel.discovery.kubernetes.roles import pod_group as pod_group
from promotel.discovery.kubernetes.roles import service_group as service_group
from promotel.discovery.kubernetes.selectors import parse_field_selector, parse_label_selector

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
