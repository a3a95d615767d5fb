"""From Kubernetes objects to target groups: Prometheus's groups and ``__meta_kubernetes_*`` labels, role by role.

:func:`build_groups` makes one group per object, source ``pod/<ns>/<name>``, ``svc/<ns>/<name>``,
``endpoints/<ns>/<name>``, ``endpointslice/<ns>/<name>``, ``node/<name>``, ``ingress/<ns>/<name>``,
with the targets and labels of Prometheus's ``discovery/kubernetes`` for that role. The related
objects a role looks up (the services and pods behind endpoints, and the nodes, namespaces,
ReplicaSets and Jobs of ``attach_metadata``) come in :class:`Stores`. Kubernetes label and
annotation names become label names as Prometheus's ``strutil.SanitizeLabelName`` makes them (every
character outside ``[a-zA-Z0-9_]`` becomes ``_``).

Pure functions of the objects given: no client, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from promotel.discovery.kubernetes.objects import JSONObject, get_list, get_map, get_str, is_set, object_key
from promotel.discovery.targets import ADDRESS_LABEL, TargetGroup

__all__ = [
    "META",
    "NAMESPACE_LABEL",
    "PRESENT",
    "Stores",
    "build_groups",
    "endpoints_group",
    "endpointslice_group",
    "ingress_group",
    "node_group",
    "pod_group",
    "sanitize_label_name",
    "service_group",
]

META: Final = "__meta_kubernetes_"
NAMESPACE_LABEL: Final = META + "namespace"
PRESENT: Final = "true"

_INVALID_LABEL_CHAR: Final = re.compile(r"[^a-zA-Z0-9_]")


def sanitize_label_name(name: str) -> str:
    """Prometheus's ``strutil.SanitizeLabelName``: every character outside ``[a-zA-Z0-9_]`` is ``_``."""
    return _INVALID_LABEL_CHAR.sub("_", name)


def _join_host_port(host: str, port: str) -> str:
    """Go's net.JoinHostPort."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bool(value: object) -> str:
    return "true" if value is True else "false"

def _add_annotations_and_labels(ls: dict[str, str], meta: JSONObject, resource: str) -> None:
    for name, value in get_map(meta, "labels").items():
        label = sanitize_label_name(str(name))
        ls[f"{META}{resource}_label_{label}"] = value if isinstance(value, str) else ""
        ls[f"{META}{resource}_labelpresent_{label}"] = PRESENT
    for name, value in get_map(meta, "annotations").items():
        label = sanitize_label_name(str(name))
        ls[f"{META}{resource}_annotation_{label}"] = value if isinstance(value, str) else ""
        ls[f"{META}{resource}_annotationpresent_{label}"] = PRESENT


def _add_object_meta(ls: dict[str, str], meta: JSONObject, role: str) -> None:
    ls[f"{META}{role}_name"] = get_str(meta, "name")
    _add_annotations_and_labels(ls, meta, role)


def _controller(meta: JSONObject) -> JSONObject | None:
    for ref in get_list(meta, "ownerReferences"):
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
    meta, spec, status = get_map(pod, "metadata"), get_map(pod, "spec"), get_map(pod, "status")
    ready = "unknown"
    for condition in get_list(status, "conditions"):
        if get_str(condition, "type") == "Ready":
            ready = get_str(condition, "status").lower()
            break
    ls = {META + "pod_ip": get_str(status, "podIP"), META + "pod_ready": ready,
          META + "pod_phase": get_str(status, "phase"), META + "pod_node_name": get_str(spec, "nodeName"),
          META + "pod_host_ip": get_str(status, "hostIP"), META + "pod_uid": get_str(meta, "uid")}
    _add_object_meta(ls, meta, "pod")
    owner = _controller(meta)
    if owner is not None:
        kind, name = get_str(owner, "kind"), get_str(owner, "name")
        if kind:
            ls[META + "pod_controller_kind"] = kind
        if name:
            ls[META + "pod_controller_name"] = name
        key = f"{get_str(meta, 'namespace')}/{name}"
        if kind == "ReplicaSet" and stores.replicasets is not None:
            replicaset = stores.replicasets.get(key)
            rs_owner = _controller(get_map(replicaset, "metadata")) if replicaset is not None else None
            if rs_owner is not None and get_str(rs_owner, "kind") == "Deployment":
                ls[META + "pod_deployment_name"] = get_str(rs_owner, "name")
        elif kind == "Job":
            if stores.attach_job:
                ls[META + "pod_job_name"] = name
            if stores.jobs is not None and stores.attach_cronjob:
                job = stores.jobs.get(key)
                job_owner = _controller(get_map(job, "metadata")) if job is not None else None
                if job_owner is not None and get_str(job_owner, "kind") == "CronJob":
                    ls[META + "pod_cronjob_name"] = get_str(job_owner, "name")
    return ls


def _node_labels(ls: dict[str, str], stores: Stores, node_name: str | None) -> dict[str, str]:
    """Prometheus's addNodeLabels: the node's name, labels and annotations, when the node is known."""
    if node_name is None or stores.nodes is None:
        return ls
    node = stores.nodes.get(node_name)
    if node is None:
        return ls
    extra: dict[str, str] = {}
    _add_object_meta(extra, get_map(node, "metadata"), "node")
    return {**ls, **extra}


def _namespace_labels(ls: dict[str, str], stores: Stores, namespace: str) -> dict[str, str]:
    if stores.namespaces is None:
        return ls
    ns = stores.namespaces.get(namespace)
    if ns is None:
        return ls
    extra: dict[str, str] = {}
    _add_annotations_and_labels(extra, get_map(ns, "metadata"), "namespace")
    return {**ls, **extra}


def _containers(pod: JSONObject) -> list[tuple[JSONObject, bool]]:
    spec = get_map(pod, "spec")
    return ([(c, False) for c in get_list(spec, "containers")] + [(c, True) for c in get_list(spec, "initContainers")])


def pod_group(pod: JSONObject, stores: Stores) -> TargetGroup:
    meta, spec, status = get_map(pod, "metadata"), get_map(pod, "spec"), get_map(pod, "status")
    namespace = get_str(meta, "namespace")
    source = f"pod/{namespace}/{get_str(meta, 'name')}"
    pod_ip = get_str(status, "podIP")
    if not pod_ip:
        return TargetGroup((), {}, source)
    node_name = get_str(spec, "nodeName")
    if stores.nodes is not None and node_name not in stores.nodes:
        return TargetGroup((), {}, source)
    labels = _pod_labels(pod, stores)
    labels[NAMESPACE_LABEL] = namespace
    labels = _node_labels(labels, stores, node_name)
    labels = _namespace_labels(labels, stores, namespace)
    targets: list[dict[str, str]] = []
    for container, is_init in _containers(pod):
        statuses = get_list(status, "initContainerStatuses" if is_init else "containerStatuses")
        name = get_str(container, "name")
        container_id = next((get_str(s, "containerID") for s in statuses if get_str(s, "name") == name), "")
        common = {META + "pod_container_name": name, META + "pod_container_id": container_id,
                  META + "pod_container_image": get_str(container, "image"),
                  META + "pod_container_init": _bool(is_init)}
        ports = get_list(container, "ports")
        if not ports:
            targets.append({ADDRESS_LABEL: pod_ip, **common})
            continue
        for port in ports:
            number = get_str(port, "containerPort")
            targets.append({ADDRESS_LABEL: _join_host_port(pod_ip, number), **common,
                            META + "pod_container_port_number": number,
                            META + "pod_container_port_name": get_str(port, "name"),
                            META + "pod_container_port_protocol": get_str(port, "protocol")})
    return TargetGroup(tuple(targets), labels, source)


def _service_labels(svc: JSONObject) -> dict[str, str]:
    meta = get_map(svc, "metadata")
    ls = {NAMESPACE_LABEL: get_str(meta, "namespace")}
    _add_object_meta(ls, meta, "service")
    return ls


def service_group(svc: JSONObject, stores: Stores) -> TargetGroup:
    meta, spec = get_map(svc, "metadata"), get_map(svc, "spec")
    name, namespace = get_str(meta, "name"), get_str(meta, "namespace")
    labels = _namespace_labels(_service_labels(svc), stores, namespace)
    kind = get_str(spec, "type")
    targets: list[dict[str, str]] = []
    for port in get_list(spec, "ports"):
        number = get_str(port, "port")
        target = {ADDRESS_LABEL: _join_host_port(f"{name}.{namespace}.svc", number),
                  META + "service_port_name": get_str(port, "name"), META + "service_port_number": number,
                  META + "service_port_protocol": get_str(port, "protocol"), META + "service_type": kind}
        if kind == "ExternalName":
            target[META + "service_external_name"] = get_str(spec, "externalName")
        else:
            target[META + "service_cluster_ip"] = get_str(spec, "clusterIP")
        if kind == "LoadBalancer":
            ips = [get_str(i, "ip") for i in get_list(get_map(get_map(svc, "status"), "loadBalancer"), "ingress")
                   if get_str(i, "ip")]
            target[META + "service_loadbalancer_ip"] = ",".join(ips) if ips else get_str(spec, "loadBalancerIP")
        targets.append(target)
    return TargetGroup(tuple(targets), labels, f"svc/{namespace}/{name}")


def _pod_ref(ref: object, stores: Stores) -> JSONObject | None:
    if not isinstance(ref, Mapping) or get_str(ref, "kind") != "Pod":
        return None
    return stores.pods.get(f"{get_str(ref, 'namespace')}/{get_str(ref, 'name')}")


def _container_port_labels(pod: JSONObject, port: int | None, protocol_from: JSONObject | None) -> dict[str, str]:
    """The container labels of the first container port equal to an endpoint ``port`` (Prometheus
    takes the protocol from the endpoint port for ``endpoints``, from the container's for slices:
    ``protocol_from`` is the endpoint port, or None)."""
    if port is None:
        return {}
    for container, is_init in _containers(pod):
        for cport in get_list(container, "ports"):
            if cport.get("containerPort") == port:
                return {META + "pod_container_name": get_str(container, "name"),
                        META + "pod_container_image": get_str(container, "image"),
                        META + "pod_container_port_name": get_str(cport, "name"),
                        META + "pod_container_port_number": str(port),
                        META + "pod_container_port_protocol": get_str(protocol_from if protocol_from is not None
                                                                   else cport, "protocol"),
                        META + "pod_container_init": _bool(is_init)}
    return {}


def _unbound_container_targets(seen: Mapping[str, tuple[JSONObject, list[int | None]]],
                               stores: Stores) -> list[dict[str, str]]:
    """For each pod behind the endpoints, one target per container port that no endpoint port named."""
    targets: list[dict[str, str]] = []
    for pod, ports in seen.values():
        pod_ip = get_str(get_map(pod, "status"), "podIP")
        if not pod_ip:
            continue
        for container, is_init in _containers(pod):
            for cport in get_list(container, "ports"):
                number = cport.get("containerPort")
                if number in ports:
                    continue
                text = get_str(cport, "containerPort")
                target = {ADDRESS_LABEL: _join_host_port(pod_ip, text),
                          META + "pod_container_name": get_str(container, "name"),
                          META + "pod_container_image": get_str(container, "image"),
                          META + "pod_container_port_name": get_str(cport, "name"),
                          META + "pod_container_port_number": text,
                          META + "pod_container_port_protocol": get_str(cport, "protocol"),
                          META + "pod_container_init": _bool(is_init)}
                targets.append({**target, **_pod_labels(pod, stores)})
    return targets


def endpoints_group(eps: JSONObject, stores: Stores) -> TargetGroup:
    meta = get_map(eps, "metadata")
    name, namespace = get_str(meta, "name"), get_str(meta, "namespace")
    labels = {NAMESPACE_LABEL: namespace}
    svc = stores.services.get(f"{namespace}/{name}")
    if svc is not None:
        labels.update(_service_labels(svc))
    _add_object_meta(labels, meta, "endpoints")
    labels = _namespace_labels(labels, stores, namespace)
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[JSONObject, list[int | None]]] = {}

    def add(addr: JSONObject, port: JSONObject, ready: str) -> None:
        target = {ADDRESS_LABEL: _join_host_port(get_str(addr, "ip"), get_str(port, "port")),
                  META + "endpoint_port_name": get_str(port, "name"),
                  META + "endpoint_port_protocol": get_str(port, "protocol"), META + "endpoint_ready": ready}
        ref = addr.get("targetRef")
        if isinstance(ref, Mapping):
            target[META + "endpoint_address_target_kind"] = get_str(ref, "kind")
            target[META + "endpoint_address_target_name"] = get_str(ref, "name")
        if is_set(addr, "nodeName"):
            target[META + "endpoint_node_name"] = get_str(addr, "nodeName")
        if get_str(addr, "hostname"):
            target[META + "endpoint_hostname"] = get_str(addr, "hostname")
        if stores.nodes is not None:
            if is_set(addr, "nodeName"):
                target = _node_labels(target, stores, get_str(addr, "nodeName"))
            elif isinstance(ref, Mapping) and get_str(ref, "kind") == "Node":
                target = _node_labels(target, stores, get_str(ref, "name"))
        pod = _pod_ref(ref, stores)
        if pod is None:
            targets.append(target)
            return
        entry = seen.setdefault(object_key(pod), (pod, []))
        number = port.get("port") if isinstance(port.get("port"), int) else None
        target = {**target, **_pod_labels(pod, stores), **_container_port_labels(pod, number, port)}
        entry[1].append(number)
        targets.append(target)

    for subset in get_list(eps, "subsets"):
        for port in get_list(subset, "ports"):
            for addr in get_list(subset, "addresses"):
                add(addr, port, "true")
            for addr in get_list(subset, "notReadyAddresses"):
                add(addr, port, "false")
    targets += _unbound_container_targets(seen, stores)
    return TargetGroup(tuple(targets), labels, f"endpoints/{namespace}/{name}")


_SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"


def endpointslice_group(eps: JSONObject, stores: Stores) -> TargetGroup:
    meta = get_map(eps, "metadata")
    name, namespace = get_str(meta, "name"), get_str(meta, "namespace")
    address_type = get_str(eps, "addressType")
    labels = {NAMESPACE_LABEL: namespace, META + "endpointslice_address_type": address_type}
    _add_object_meta(labels, meta, "endpointslice")
    svc: JSONObject | None = None
    svc_labels = get_map(meta, "labels")
    if _SERVICE_NAME_LABEL in svc_labels:
        svc = stores.services.get(f"{namespace}/{svc_labels[_SERVICE_NAME_LABEL]}")
        if svc is not None:
            labels.update(_service_labels(svc))
    labels = _namespace_labels(labels, stores, namespace)
    source = f"endpointslice/{namespace}/{name}"
    if svc is not None:  # a dual-stack service's slice of its second IP family gives no targets
        spec = get_map(svc, "spec")
        families = spec.get("ipFamilies")
        if (get_str(spec, "ipFamilyPolicy") in ("PreferDualStack", "RequireDualStack") and isinstance(families, list)
                and families and address_type != families[0]):
            return TargetGroup((), labels, source)
    targets: list[dict[str, str]] = []
    seen: dict[str, tuple[JSONObject, list[int | None]]] = {}

    def add(addr: str, ep: JSONObject, port: JSONObject) -> None:
        number = port.get("port") if isinstance(port.get("port"), int) else None
        target = {ADDRESS_LABEL: _join_host_port(addr, str(number)) if number is not None else addr}
        if is_set(port, "name"):
            target[META + "endpointslice_port_name"] = get_str(port, "name")
        if is_set(port, "protocol"):
            target[META + "endpointslice_port_protocol"] = get_str(port, "protocol")
        if number is not None:
            target[META + "endpointslice_port"] = str(number)
        if is_set(port, "appProtocol"):
            target[META + "endpointslice_port_app_protocol"] = get_str(port, "appProtocol")
        conditions = get_map(ep, "conditions")
        for key in ("ready", "serving", "terminating"):
            if is_set(conditions, key):
                target[f"{META}endpointslice_endpoint_conditions_{key}"] = _bool(conditions[key])
        if is_set(ep, "hostname"):
            target[META + "endpointslice_endpoint_hostname"] = get_str(ep, "hostname")
        ref = ep.get("targetRef")
        if isinstance(ref, Mapping):
            target[META + "endpointslice_address_target_kind"] = get_str(ref, "kind")
            target[META + "endpointslice_address_target_name"] = get_str(ref, "name")
        if is_set(ep, "nodeName"):
            target[META + "endpointslice_endpoint_node_name"] = get_str(ep, "nodeName")
        if is_set(ep, "zone"):
            target[META + "endpointslice_endpoint_zone"] = get_str(ep, "zone")
        for key, value in get_map(ep, "deprecatedTopology").items():
            label = sanitize_label_name(str(key))
            target[META + "endpointslice_endpoint_topology_" + label] = value if isinstance(value, str) else ""
            target[META + "endpointslice_endpoint_topology_present_" + label] = PRESENT
        if stores.nodes is not None:
            if isinstance(ref, Mapping) and get_str(ref, "kind") == "Node":
                target = _node_labels(target, stores, get_str(ref, "name"))
            else:
                target = _node_labels(target, stores, get_str(ep, "nodeName") if is_set(ep, "nodeName") else None)
        pod = _pod_ref(ref, stores)
        if pod is None:
            targets.append(target)
            return
        entry = seen.setdefault(object_key(pod), (pod, []))
        target = {**target, **_pod_labels(pod, stores), **_container_port_labels(pod, number, None)}
        entry[1].append(number)
        targets.append(target)

    for ep in get_list(eps, "endpoints"):
        for port in get_list(eps, "ports"):
            addresses = ep.get("addresses")
            for addr in addresses if isinstance(addresses, list) else []:
                add(addr if isinstance(addr, str) else "", ep, port)
    targets += _unbound_container_targets(seen, stores)
    return TargetGroup(tuple(targets), labels, source)


_NODE_ADDRESS_ORDER: Final = ("InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname")


def node_group(node: JSONObject, stores: Stores) -> TargetGroup | None:
    """The node's group, or None when it has no address (Prometheus logs that and sends nothing)."""
    meta, status = get_map(node, "metadata"), get_map(node, "status")
    labels = {META + "node_provider_id": get_str(get_map(node, "spec"), "providerID")}
    for condition in get_list(status, "conditions"):
        name = sanitize_label_name(get_str(condition, "type").lower())
        labels[META + "node_condition_" + name] = get_str(condition, "status").lower()
    _add_object_meta(labels, meta, "node")
    addresses: dict[str, list[str]] = {}
    for address in get_list(status, "addresses"):
        addresses.setdefault(get_str(address, "type"), []).append(get_str(address, "address"))
    host = next((addresses[kind][0] for kind in _NODE_ADDRESS_ORDER if kind in addresses), None)
    if host is None:
        return None
    port = get_str(get_map(get_map(status, "daemonEndpoints"), "kubeletEndpoint"), "Port") or "0"
    target = {ADDRESS_LABEL: _join_host_port(host, port), "instance": get_str(meta, "name")}
    for kind, values in addresses.items():
        target[sanitize_label_name(META + "node_address_" + kind)] = values[0]
    return TargetGroup((target,), labels, f"node/{get_str(meta, 'name')}")


def _matches_hostname_pattern(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    pattern_parts, host_parts = pattern.split("."), host.split(".")
    if pattern_parts[0] != "*" or len(pattern_parts) != len(host_parts):
        return False
    return pattern_parts[1:] == host_parts[1:]


def ingress_group(ingress: JSONObject, stores: Stores) -> TargetGroup:
    meta, spec = get_map(ingress, "metadata"), get_map(ingress, "spec")
    namespace = get_str(meta, "namespace")
    labels = {NAMESPACE_LABEL: namespace}
    if is_set(spec, "ingressClassName"):
        labels[META + "ingress_class_name"] = get_str(spec, "ingressClassName")
    _add_object_meta(labels, meta, "ingress")
    labels = _namespace_labels(labels, stores, namespace)
    tls_hosts = [host for tls in get_list(spec, "tls") for host in (tls.get("hosts") or []) if isinstance(host, str)]
    targets: list[dict[str, str]] = []
    for rule in get_list(spec, "rules"):
        host = get_str(rule, "host")
        http = rule.get("http")
        # No http section: one target for "/"; a path "" is "/".
        paths = ([get_str(p, "path") or "/" for p in get_list(http, "paths")] if isinstance(http, Mapping) else ["/"])
        scheme = "https" if any(_matches_hostname_pattern(p, host) for p in tls_hosts) else "http"
        for path in paths:
            targets.append({ADDRESS_LABEL: host, META + "ingress_scheme": scheme, META + "ingress_host": host,
                            META + "ingress_path": path})
    return TargetGroup(tuple(targets), labels, f"ingress/{namespace}/{get_str(meta, 'name')}")


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
