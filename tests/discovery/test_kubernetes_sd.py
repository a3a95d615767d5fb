"""kubernetes_sd_configs against a fake API server on 127.0.0.1 answering recorded list responses.

No cluster can run here, so ``support.kube_api.FakeKubeAPI`` serves recorded PodList, ServiceList,
EndpointsList, EndpointSliceList, NodeList, IngressList, ... (tests/testdata/kubernetes) and watch
streams, checking what the real API server would refuse (the bearer token, the paths, the selector
syntax and field names, a watch without the list's resourceVersion). The expected labels are written
out from Prometheus's documentation and discovery/kubernetes code, role by role."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from promotel.discovery.kubernetes_sd import (
    INSTALL_HINT,
    KubernetesDiscoverer,
    KubernetesSDConfig,
    parse_field_selector,
    parse_label_selector,
    sanitize_label_name,
)
from promotel.discovery.relabel import RelabelConfig
from promotel.discovery.sd import parse_sd_configs
from promotel.discovery.targets import (
    Discoverer,
    DiscoveryManager,
    ScrapeDefaults,
    TargetGroup,
    build_targets,
)
from promotel.errors import ConfigError, DiscoveryError
from support.certs import make_cert, tls_context
from support.kube_api import FakeKubeAPI

pytest.importorskip("kubernetes", reason="the promotel[kubernetes] extra is part of the test extra")

TOKEN = "s3cr3t-sa-token"
M = "__meta_kubernetes_"
T = TypeVar("T")


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI(token=TOKEN) as server:
        for name in ("pods", "services", "endpoints", "endpointslices", "nodes", "ingresses", "namespaces",
                     "replicasets", "jobs"):
            server.load(name)
        yield server


def kubeconfig(tmp_path: Path, server: FakeKubeAPI, token: str = TOKEN) -> str:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server.url}
users:
- name: promotel
  user:
    token: {token}
contexts:
- name: fake
  context: {{cluster: fake, user: promotel}}
current-context: fake
""")
    return str(path)


def make(config: dict[str, Any], **kwargs: Any) -> KubernetesDiscoverer:
    options = {"debounce": 0.02, "watch_timeout": 5, "backoff": 0.05, "max_backoff": 0.2, "sync_timeout": 5.0,
               "request_timeout": 5.0, **kwargs}
    return KubernetesDiscoverer(KubernetesSDConfig.model_validate(config), **options)


def run(discoverer: KubernetesDiscoverer, body: Callable[[KubernetesDiscoverer], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await asyncio.wait_for(body(discoverer), 30)
        finally:
            await discoverer.aclose()
    return asyncio.run(main())


def groups_of(discoverer: KubernetesDiscoverer) -> tuple[TargetGroup, ...]:
    async def body(d: KubernetesDiscoverer) -> tuple[TargetGroup, ...]:
        result = await d.refresh()
        assert result.problems == ()
        return result.groups
    return run(discoverer, body)


def by_source(groups: tuple[TargetGroup, ...]) -> dict[str, TargetGroup]:
    return {group.source: group for group in groups}


def flat(group: TargetGroup) -> list[dict[str, str]]:
    """Each target's labels with its group's (the target's own win), as Prometheus merges them."""
    return [{**group.labels, **target} for target in group.targets]


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# --- config -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ({}, "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"),
    ({"role": "Pod"}, 'unknown Kubernetes SD role "Pod"'),
    ({"role": "pod", "api_server": "https://k8s:6443", "kubeconfig_file": "kc"},
     "cannot use 'kubeconfig_file' and 'api_server' simultaneously"),
    ({"role": "pod", "kubeconfig_file": "kc", "bearer_token": "x"},
     "cannot use a custom HTTP client configuration together with 'kubeconfig_file'"),
    ({"role": "pod", "tls_config": {"insecure_skip_verify": True}},
     "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"),
    ({"role": "pod", "api_server": "https://k8s:6443", "namespaces": {"own_namespace": True}},
     "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously"),
    ({"role": "pod", "kubeconfig_file": "kc", "namespaces": {"own_namespace": True}},
     "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously"),
    ({"role": "pod", "selectors": [{"role": "pod"}, {"role": "pod", "label": "a=b"}]}, "duplicated selector role: pod"),
    ({"role": "service", "selectors": [{"role": "pod"}]}, "service role supports only service selectors"),
    ({"role": "endpoints", "selectors": [{"role": "node"}]},
     "endpoints role supports only pod, service, endpoints selectors"),
    ({"role": "pod", "selectors": [{"role": "pod", "label": "app in (web"}]}, "expected: ')'"),
    ({"role": "pod", "selectors": [{"role": "pod", "field": "spec.nodeName"}]},
     "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
    ({"role": "pod", "api_server": "ftp://k8s"}, "URL scheme must be 'http' or 'https'"),
    ({"role": "pod", "api_server": "https:///api"}, "host is missing in URL"),
    ({"role": "pod", "api_server": "https://k8s", "tls_config": {"min_version": "TLS13"}},
     "min_version other than TLS12 and max_version are not supported"),
    ({"role": "pod", "api_server": "https://k8s", "bearer_token": "a", "bearer_token_file": "f"},
     "at most one of bearer_token & bearer_token_file must be configured"),
    ({"role": "pod", "namespace": ["x"]}, "Extra inputs are not permitted"),
])
def test_config_refusals(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        KubernetesSDConfig.model_validate(data)
    assert message in str(info.value)


def test_config_defaults_nulls_and_paths(tmp_path: Path) -> None:
    cfg = KubernetesSDConfig.model_validate({"role": "endpoints", "kubeconfig_file": "kube/config", "namespaces": None,
                                             "selectors": None, "attach_metadata": None},
                                            context={"base_dir": str(tmp_path)})
    assert cfg.kubeconfig_file == str(tmp_path / "kube/config")
    assert cfg.namespaces.names == () and not cfg.namespaces.own_namespace
    assert cfg.selectors == () and not cfg.attach_metadata.node
    cfg = KubernetesSDConfig.model_validate({
        "role": "endpoints", "api_server": "https://k8s.example:6443", "bearer_token": "k8s-t0ken",
        "namespaces": {"names": ["shop", "monitoring"]},
        "selectors": [{"role": "pod", "label": "app=web,tier!=db", "field": "spec.nodeName=node-a"},
                      {"role": "service", "label": "!canary"}]})
    assert cfg.selector("pod") == ("app=web,tier!=db", "spec.nodeName=node-a")
    assert cfg.selector("service") == ("!canary", "")
    assert cfg.selector("endpoints") == ("", "")
    for server in ("kubernetes.default.svc:443", "10.0.0.1:6443", "http://k8s:8080/"):
        assert KubernetesSDConfig.model_validate({"role": "pod", "api_server": server}).api_server == server
    assert "k8s-t0ken" not in repr(cfg) and "k8s-t0ken" not in str(cfg.bearer_token)


@pytest.mark.parametrize("text", [
    "", "app", "!app", "app=web", "app==web", "app!=web", "app=", "app in (web, api)", "app notin (a,b,)",
    "example.com/tier=front,env in (prod),!canary", "replicas>1", "replicas < 10", "  app = web  ",
    "app.kubernetes.io/name=node-exporter",
])
def test_label_selectors_accepted(text: str) -> None:
    parse_label_selector(text)


@pytest.mark.parametrize("text", [
    "app=web,", ",app", "app=we b", "app in web", "app in (web", "-app=x", "app=web!", "a/b/c=d",
    "Example.com/x=y", "app>one", "app=" + "x" * 64, "app=(x)", "!", "app web",
])
def test_label_selectors_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_label_selector(text)


@pytest.mark.parametrize(("text", "ok"), [
    ("", True), ("metadata.name=web", True), ("spec.nodeName==node-a,status.phase!=Failed", True),
    ("metadata.name=a\\,b", True), ("a=b,,c=d", True), ("metadata.name", False), ("a=b=c", False),
    ("a=b\\x", False), ("a=b\\", False),
])
def test_field_selectors(text: str, ok: bool) -> None:
    if ok:
        parse_field_selector(text)
    else:
        with pytest.raises(ValueError):
            parse_field_selector(text)


def test_sanitize_label_name() -> None:
    assert sanitize_label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert sanitize_label_name("prometheus.io/scrape") == "prometheus_io_scrape"
    assert sanitize_label_name("ünï-cøde") == "_n__c_de"  # one _ per character, as Go's regexp per rune


def test_missing_client_fails_validation_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as if the extra were not installed
    with pytest.raises(ConfigError) as info:
        parse_sd_configs({"kubernetes_sd_configs": [{"role": "pod"}]}, "sources[1]")
    assert info.value.problems == (("sources[1].kubernetes_sd_configs[0]", INSTALL_HINT),)
    assert "pip install 'promotel[kubernetes]'" in str(info.value)


def test_sd_configs_entry(tmp_path: Path) -> None:
    sd = parse_sd_configs({"kubernetes_sd_configs": [{"role": "pod"}, {"role": "node", "kubeconfig_file": "kc"}],
                           "static_configs": [{"targets": ["a:1"]}]}, base_dir=tmp_path)
    discoverers = sd.discoverers()
    assert [(d.name, d.mechanism) for d in discoverers] == [
        ("static_configs", "static"), ("kubernetes_sd_configs[0]", "kubernetes"),
        ("kubernetes_sd_configs[1]", "kubernetes")]
    assert all(isinstance(d, Discoverer) for d in discoverers)
    assert sd.kubernetes_sd_configs[1].kubeconfig_file == str(tmp_path / "kc")
    assert parse_sd_configs({"kubernetes_sd_configs": None}).discoverers() == ()


# --- roles --------------------------------------------------------------------------------------------

def test_pod_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = by_source(groups_of(make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api)})))
    assert sorted(groups) == ["pod/monitoring/node-exporter-5xk2t", "pod/shop/cache-0",
                              "pod/shop/report-28519260-h4k2p", "pod/shop/web-7d4b9c8f6d-q8z7m",
                              "pod/shop/web-7d4b9c8f6d-x2x9k"]
    assert groups["pod/shop/cache-0"].targets == () and dict(groups["pod/shop/cache-0"].labels) == {}  # no IP yet
    web = groups["pod/shop/web-7d4b9c8f6d-x2x9k"]
    assert dict(web.labels) == {
        M + "namespace": "shop", M + "pod_name": "web-7d4b9c8f6d-x2x9k", M + "pod_ip": "10.244.1.17",
        M + "pod_ready": "true", M + "pod_phase": "Running", M + "pod_node_name": "node-a",
        M + "pod_host_ip": "10.0.0.11", M + "pod_uid": "5f0c8b1e-1b7a-4d3e-9a51-0c2f7e9b1a01",
        M + "pod_controller_kind": "ReplicaSet", M + "pod_controller_name": "web-7d4b9c8f6d",
        M + "pod_label_app": "web", M + "pod_labelpresent_app": "true",
        M + "pod_label_app_kubernetes_io_name": "web", M + "pod_labelpresent_app_kubernetes_io_name": "true",
        M + "pod_label_pod_template_hash": "7d4b9c8f6d", M + "pod_labelpresent_pod_template_hash": "true",
        M + "pod_annotation_prometheus_io_scrape": "true", M + "pod_annotationpresent_prometheus_io_scrape": "true",
        M + "pod_annotation_prometheus_io_port": "9090", M + "pod_annotationpresent_prometheus_io_port": "true",
        M + "pod_annotation_kubectl_kubernetes_io_restartedAt": "",
        M + "pod_annotationpresent_kubectl_kubernetes_io_restartedAt": "true",
    }
    web_id = "containerd://4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
    image = "registry.example.com/shop/web:1.42.0"
    assert [dict(t) for t in web.targets] == [
        {"__address__": "10.244.1.17:8080", M + "pod_container_name": "web", M + "pod_container_id": web_id,
         M + "pod_container_image": image, M + "pod_container_port_name": "http",
         M + "pod_container_port_number": "8080", M + "pod_container_port_protocol": "TCP",
         M + "pod_container_init": "false"},
        {"__address__": "10.244.1.17:9090", M + "pod_container_name": "web", M + "pod_container_id": web_id,
         M + "pod_container_image": image, M + "pod_container_port_name": "metrics",
         M + "pod_container_port_number": "9090", M + "pod_container_port_protocol": "TCP",
         M + "pod_container_init": "false"},
        # a container without ports: one target, the pod IP alone (a port is added by relabeling)
        {"__address__": "10.244.1.17", M + "pod_container_name": "envoy",
         M + "pod_container_id": "containerd://e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8",
         M + "pod_container_image": "envoyproxy/envoy:v1.30.1", M + "pod_container_init": "false"},
        {"__address__": "10.244.1.17", M + "pod_container_name": "migrate",
         M + "pod_container_id": "containerd://0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c",
         M + "pod_container_image": image, M + "pod_container_init": "true"},
    ]
    not_ready = groups["pod/shop/web-7d4b9c8f6d-q8z7m"]
    assert not_ready.labels[M + "pod_ready"] == "false"
    assert not_ready.addresses == ("10.244.2.23:8080", "10.244.2.23:9090")
    job = groups["pod/shop/report-28519260-h4k2p"]
    assert job.labels[M + "pod_controller_kind"] == "Job" and M + "pod_job_name" not in job.labels
    # the pod list is one cluster-wide list and watch
    assert [(r.path, r.query.get("watch")) for r in api.requests][:2] == [("/api/v1/pods", None),
                                                                          ("/api/v1/pods", "true")]


def test_service_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = by_source(groups_of(make({"role": "service", "kubeconfig_file": kubeconfig(tmp_path, api)})))
    assert sorted(groups) == ["svc/monitoring/node-exporter", "svc/shop/legacy-db", "svc/shop/web", "svc/shop/web-lb"]
    web = groups["svc/shop/web"]
    assert dict(web.labels) == {
        M + "namespace": "shop", M + "service_name": "web", M + "service_label_app": "web",
        M + "service_labelpresent_app": "true", M + "service_label_app_kubernetes_io_part_of": "shop",
        M + "service_labelpresent_app_kubernetes_io_part_of": "true",
        M + "service_annotation_prometheus_io_probe": "true", M + "service_annotationpresent_prometheus_io_probe": "true"}
    assert [dict(t) for t in web.targets] == [
        {"__address__": "web.shop.svc:80", M + "service_port_name": "http", M + "service_port_number": "80",
         M + "service_port_protocol": "TCP", M + "service_type": "ClusterIP", M + "service_cluster_ip": "10.96.12.34"}]
    lb = groups["svc/shop/web-lb"]
    assert [dict(t) for t in lb.targets] == [
        {"__address__": "web-lb.shop.svc:443", M + "service_port_name": "https", M + "service_port_number": "443",
         M + "service_port_protocol": "TCP", M + "service_type": "LoadBalancer",
         M + "service_cluster_ip": "10.96.40.2", M + "service_loadbalancer_ip": "203.0.113.10,203.0.113.11"},
        {"__address__": "web-lb.shop.svc:80", M + "service_port_name": "http", M + "service_port_number": "80",
         M + "service_port_protocol": "TCP", M + "service_type": "LoadBalancer",
         M + "service_cluster_ip": "10.96.40.2", M + "service_loadbalancer_ip": "203.0.113.10,203.0.113.11"}]
    assert [dict(t) for t in groups["svc/shop/legacy-db"].targets] == [
        {"__address__": "legacy-db.shop.svc:5432", M + "service_port_name": "pg", M + "service_port_number": "5432",
         M + "service_port_protocol": "TCP", M + "service_type": "ExternalName",
         M + "service_external_name": "db.legacy.example.com"}]
    assert groups["svc/monitoring/node-exporter"].targets[0][M + "service_cluster_ip"] == "None"


def _pod_labels_x2x9k() -> dict[str, str]:
    return {M + "pod_name": "web-7d4b9c8f6d-x2x9k", M + "pod_ip": "10.244.1.17", M + "pod_ready": "true",
            M + "pod_phase": "Running", M + "pod_node_name": "node-a", M + "pod_host_ip": "10.0.0.11",
            M + "pod_uid": "5f0c8b1e-1b7a-4d3e-9a51-0c2f7e9b1a01", M + "pod_controller_kind": "ReplicaSet",
            M + "pod_controller_name": "web-7d4b9c8f6d", M + "pod_label_app": "web", M + "pod_labelpresent_app": "true",
            M + "pod_label_app_kubernetes_io_name": "web", M + "pod_labelpresent_app_kubernetes_io_name": "true",
            M + "pod_label_pod_template_hash": "7d4b9c8f6d", M + "pod_labelpresent_pod_template_hash": "true",
            M + "pod_annotation_prometheus_io_scrape": "true", M + "pod_annotationpresent_prometheus_io_scrape": "true",
            M + "pod_annotation_prometheus_io_port": "9090", M + "pod_annotationpresent_prometheus_io_port": "true",
            M + "pod_annotation_kubectl_kubernetes_io_restartedAt": "",
            M + "pod_annotationpresent_kubectl_kubernetes_io_restartedAt": "true"}


def test_endpoints_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = by_source(groups_of(make({"role": "endpoints", "kubeconfig_file": kubeconfig(tmp_path, api)})))
    assert sorted(groups) == ["endpoints/shop/external-api", "endpoints/shop/web"]
    web = groups["endpoints/shop/web"]
    # group: the namespace, the service's labels (the service of the same name), the endpoints' own
    assert web.labels[M + "service_name"] == "web" and web.labels[M + "service_label_app_kubernetes_io_part_of"] == "shop"
    assert web.labels[M + "endpoints_name"] == "web" and web.labels[M + "namespace"] == "shop"
    assert web.labels[M + "endpoints_annotation_endpoints_kubernetes_io_last_change_trigger_time"] == \
        "2024-05-02T09:20:31Z"
    targets = [dict(t) for t in web.targets]
    assert targets[0] == {
        "__address__": "10.244.1.17:8080", M + "endpoint_port_name": "http", M + "endpoint_port_protocol": "TCP",
        M + "endpoint_ready": "true", M + "endpoint_address_target_kind": "Pod",
        M + "endpoint_address_target_name": "web-7d4b9c8f6d-x2x9k", M + "endpoint_node_name": "node-a",
        **_pod_labels_x2x9k(),
        M + "pod_container_name": "web", M + "pod_container_image": "registry.example.com/shop/web:1.42.0",
        M + "pod_container_port_name": "http", M + "pod_container_port_number": "8080",
        M + "pod_container_port_protocol": "TCP", M + "pod_container_init": "false"}
    assert targets[1]["__address__"] == "10.244.2.23:8080" and targets[1][M + "endpoint_ready"] == "false"
    assert targets[1][M + "pod_ready"] == "false"
    # each pod's container ports no endpoint port names are targets too, without endpoint labels
    assert targets[2] == {
        "__address__": "10.244.1.17:9090", **_pod_labels_x2x9k(), M + "pod_container_name": "web",
        M + "pod_container_image": "registry.example.com/shop/web:1.42.0", M + "pod_container_port_name": "metrics",
        M + "pod_container_port_number": "9090", M + "pod_container_port_protocol": "TCP",
        M + "pod_container_init": "false"}
    assert targets[3]["__address__"] == "10.244.2.23:9090" and len(targets) == 4
    external = groups["endpoints/shop/external-api"]
    assert M + "service_name" not in external.labels  # no service of that name
    assert [dict(t) for t in external.targets] == [
        {"__address__": "192.0.2.50:443", M + "endpoint_port_name": "https", M + "endpoint_port_protocol": "TCP",
         M + "endpoint_ready": "true", M + "endpoint_hostname": "api-1"},
        {"__address__": "[2001:db8::50]:443", M + "endpoint_port_name": "https", M + "endpoint_port_protocol": "TCP",
         M + "endpoint_ready": "true"}]
    # endpoints, services and pods are each listed and watched
    assert {r.path for r in api.watches()} == {"/api/v1/endpoints", "/api/v1/services", "/api/v1/pods"}


def test_endpointslice_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = by_source(groups_of(make({"role": "endpointslice", "kubeconfig_file": kubeconfig(tmp_path, api)})))
    assert sorted(groups) == ["endpointslice/shop/external-api-manual", "endpointslice/shop/web-8fn2k",
                              "endpointslice/shop/web-v6q9d"]
    web = groups["endpointslice/shop/web-8fn2k"]
    assert web.labels[M + "endpointslice_address_type"] == "IPv4"
    assert web.labels[M + "endpointslice_name"] == "web-8fn2k"
    assert web.labels[M + "endpointslice_label_kubernetes_io_service_name"] == "web"
    assert web.labels[M + "service_name"] == "web" and web.labels[M + "service_annotation_prometheus_io_probe"] == "true"
    targets = [dict(t) for t in web.targets]
    assert targets[0] == {
        "__address__": "10.244.1.17:8080", M + "endpointslice_port_name": "http",
        M + "endpointslice_port_protocol": "TCP", M + "endpointslice_port": "8080",
        M + "endpointslice_port_app_protocol": "http", M + "endpointslice_endpoint_conditions_ready": "true",
        M + "endpointslice_endpoint_conditions_serving": "true",
        M + "endpointslice_endpoint_conditions_terminating": "false",
        M + "endpointslice_address_target_kind": "Pod", M + "endpointslice_address_target_name": "web-7d4b9c8f6d-x2x9k",
        M + "endpointslice_endpoint_node_name": "node-a", M + "endpointslice_endpoint_zone": "eu-west-1a",
        **_pod_labels_x2x9k(),
        M + "pod_container_name": "web", M + "pod_container_image": "registry.example.com/shop/web:1.42.0",
        M + "pod_container_port_name": "http", M + "pod_container_port_number": "8080",
        M + "pod_container_port_protocol": "TCP", M + "pod_container_init": "false"}
    assert targets[1][M + "endpointslice_endpoint_conditions_ready"] == "false"
    assert [t["__address__"] for t in targets] == ["10.244.1.17:8080", "10.244.2.23:8080", "10.244.1.17:9090",
                                                   "10.244.2.23:9090"]
    # the service is dual-stack, IPv4 first: its IPv6 slice gives no targets (they would be duplicates)
    v6 = groups["endpointslice/shop/web-v6q9d"]
    assert v6.targets == () and v6.labels[M + "endpointslice_address_type"] == "IPv6"
    manual = groups["endpointslice/shop/external-api-manual"]
    assert [dict(t) for t in manual.targets] == [
        {"__address__": "[2001:db8::50]:443", M + "endpointslice_port_name": "", M + "endpointslice_port": "443",
         M + "endpointslice_endpoint_conditions_ready": "true", M + "endpointslice_endpoint_hostname": "api-1",
         M + "endpointslice_endpoint_topology_kubernetes_io_hostname": "edge-1",
         M + "endpointslice_endpoint_topology_present_kubernetes_io_hostname": "true"}]
    assert {r.path for r in api.watches()} == {"/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/services",
                                               "/api/v1/pods"}


def test_node_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = by_source(groups_of(make({"role": "node", "kubeconfig_file": kubeconfig(tmp_path, api),
                                       "namespaces": {"names": ["ignored-for-nodes"]}})))
    assert sorted(groups) == ["node/node-a", "node/node-b"]
    a = groups["node/node-a"]
    assert dict(a.labels) == {
        M + "node_name": "node-a", M + "node_provider_id": "aws:///eu-west-1a/i-0a1b2c3d4e5f60718",
        M + "node_condition_memorypressure": "false", M + "node_condition_diskpressure": "false",
        M + "node_condition_ready": "true",
        M + "node_label_kubernetes_io_hostname": "node-a", M + "node_labelpresent_kubernetes_io_hostname": "true",
        M + "node_label_kubernetes_io_os": "linux", M + "node_labelpresent_kubernetes_io_os": "true",
        M + "node_label_node_kubernetes_io_instance_type": "m6i.xlarge",
        M + "node_labelpresent_node_kubernetes_io_instance_type": "true",
        M + "node_label_topology_kubernetes_io_zone": "eu-west-1a",
        M + "node_labelpresent_topology_kubernetes_io_zone": "true",
        M + "node_annotation_node_alpha_kubernetes_io_ttl": "0",
        M + "node_annotationpresent_node_alpha_kubernetes_io_ttl": "true",
        M + "node_annotation_volumes_kubernetes_io_controller_managed_attach_detach": "true",
        M + "node_annotationpresent_volumes_kubernetes_io_controller_managed_attach_detach": "true"}
    assert [dict(t) for t in a.targets] == [{
        "__address__": "10.0.0.11:10250", "instance": "node-a", M + "node_address_InternalIP": "10.0.0.11",
        M + "node_address_ExternalIP": "198.51.100.11",
        M + "node_address_Hostname": "ip-10-0-0-11.eu-west-1.compute.internal",
        M + "node_address_InternalDNS": "ip-10-0-0-11.eu-west-1.compute.internal"}]
    b = groups["node/node-b"]
    assert b.labels[M + "node_condition_ready"] == "unknown" and b.labels[M + "node_provider_id"] == ""
    # InternalIP before Hostname whatever their order; the first address of each type
    assert dict(b.targets[0]) == {"__address__": "10.0.0.12:10250", "instance": "node-b",
                                  M + "node_address_Hostname": "node-b", M + "node_address_InternalIP": "10.0.0.12"}
    assert {r.path for r in api.requests} == {"/api/v1/nodes"}


def test_ingress_role(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = groups_of(make({"role": "ingress", "kubeconfig_file": kubeconfig(tmp_path, api)}))
    assert [g.source for g in groups] == ["ingress/shop/web"]
    web = groups[0]
    assert dict(web.labels) == {
        M + "namespace": "shop", M + "ingress_name": "web", M + "ingress_class_name": "nginx",
        M + "ingress_label_app": "web", M + "ingress_labelpresent_app": "true",
        M + "ingress_annotation_nginx_ingress_kubernetes_io_rewrite_target": "/",
        M + "ingress_annotationpresent_nginx_ingress_kubernetes_io_rewrite_target": "true"}

    def target(host: str, scheme: str, path: str) -> dict[str, str]:
        return {"__address__": host, M + "ingress_scheme": scheme, M + "ingress_host": host, M + "ingress_path": path}
    assert [dict(t) for t in web.targets] == [
        target("www.shop.example.com", "https", "/"), target("www.shop.example.com", "https", "/api"),
        target("status.example.org", "http", "/"), target("legacy.example.org", "http", "/")]
    assert {r.path for r in api.requests} == {"/apis/networking.k8s.io/v1/ingresses"}


def test_attach_metadata(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = by_source(groups_of(make({
        "role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api),
        "attach_metadata": {"node": True, "namespace": True, "deployment": True, "job": True, "cronjob": True},
        "selectors": [{"role": "node", "label": "kubernetes.io/hostname=node-a"}]})))
    web = groups["pod/shop/web-7d4b9c8f6d-x2x9k"]
    assert web.labels[M + "pod_deployment_name"] == "web"  # through the pod's ReplicaSet
    assert web.labels[M + "node_name"] == "node-a"
    assert web.labels[M + "node_label_topology_kubernetes_io_zone"] == "eu-west-1a"
    assert web.labels[M + "namespace_label_team"] == "payments"
    assert web.labels[M + "namespace_annotation_owner"] == "payments@example.com"
    assert web.labels[M + "namespace_labelpresent_kubernetes_io_metadata_name"] == "true"
    assert M + "node_label_kubernetes_io_os" in web.labels
    # node-b is not selected: its pods are not known to be on a node, so they have no targets
    assert groups["pod/shop/web-7d4b9c8f6d-q8z7m"].targets == ()
    assert groups["pod/shop/report-28519260-h4k2p"].targets == ()
    node_lists = api.lists("nodes")
    assert node_lists and all(r.query["labelSelector"] == "kubernetes.io/hostname=node-a" for r in node_lists)
    assert {r.path for r in api.watches()} == {"/api/v1/pods", "/api/v1/nodes", "/api/v1/namespaces",
                                               "/apis/apps/v1/replicasets", "/apis/batch/v1/jobs"}
    assert "selectors" not in str([r.query for r in api.lists("namespaces")])


def test_job_and_cronjob_metadata(api: FakeKubeAPI, tmp_path: Path) -> None:
    job_only = by_source(groups_of(make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api),
                                         "attach_metadata": {"job": True}})))
    labels = job_only["pod/shop/report-28519260-h4k2p"].labels
    assert labels[M + "pod_job_name"] == "report-28519260" and M + "pod_cronjob_name" not in labels
    cron = by_source(groups_of(make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api),
                                     "attach_metadata": {"cronjob": True}})))
    labels = cron["pod/shop/report-28519260-h4k2p"].labels
    assert labels[M + "pod_cronjob_name"] == "report" and M + "pod_job_name" not in labels


def test_namespaces_and_selectors_reach_the_api(api: FakeKubeAPI, tmp_path: Path) -> None:
    config = {"role": "endpoints", "kubeconfig_file": kubeconfig(tmp_path, api),
              "namespaces": {"names": ["shop", "monitoring", "shop"]},
              "selectors": [{"role": "endpoints", "label": "app in (web)", "field": "metadata.name!=kubernetes"},
                            {"role": "pod", "label": "app=web", "field": "status.phase=Running"},
                            {"role": "service", "label": "app"}]}
    groups = groups_of(make(config))
    assert [g.source for g in groups] == ["endpoints/shop/web"]
    seen = {(r.path, r.query.get("labelSelector"), r.query.get("fieldSelector")) for r in api.requests}
    assert seen == {
        ("/api/v1/namespaces/shop/endpoints", "app in (web)", "metadata.name!=kubernetes"),
        ("/api/v1/namespaces/shop/pods", "app=web", "status.phase=Running"),
        ("/api/v1/namespaces/shop/services", "app", None),
        ("/api/v1/namespaces/monitoring/endpoints", "app in (web)", "metadata.name!=kubernetes"),
        ("/api/v1/namespaces/monitoring/pods", "app=web", "status.phase=Running"),
        ("/api/v1/namespaces/monitoring/services", "app", None)}
    assert len(api.lists()) == 6  # a namespace named twice is watched once
    assert groups[0].labels[M + "service_name"] == "web"


def test_a_field_the_server_refuses_is_reported(api: FakeKubeAPI, tmp_path: Path) -> None:
    discoverer = make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api),
                       "selectors": [{"role": "pod", "field": "spec.nodename=node-a"}]})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert "cannot list and watch pods in all namespaces (fieldSelector 'spec.nodename=node-a')" in str(info.value)
        assert "400 Bad Request: field label not supported: spec.nodename" in str(info.value)
    run(discoverer, body)


def test_pages(api: FakeKubeAPI, tmp_path: Path) -> None:
    groups = groups_of(make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api)}, page_size=2))
    assert len(groups) == 5
    lists = api.lists("pods")
    assert [r.query.get("continue") for r in lists] == [None, "40190:2", "40190:4"]
    assert all(r.query["limit"] == "2" for r in lists)
    assert api.watches("pods")[0].query["resourceVersion"] == "40190"


# --- watch --------------------------------------------------------------------------------------------

def test_watch_events_update_the_groups_and_wake_wait(api: FakeKubeAPI, tmp_path: Path) -> None:
    discoverer = make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api), "namespaces": {"names": ["shop"]}},
                      refresh_interval=30.0)

    async def body(d: KubernetesDiscoverer) -> None:
        first = await d.refresh()
        assert len(first.groups) == 4
        await until(lambda: asyncio.sleep(0, bool(api.watches("pods"))))
        # MODIFIED: the not-ready pod becomes ready
        pod = api.get("pods", "shop/web-7d4b9c8f6d-q8z7m")
        pod["status"]["conditions"][1]["status"] = "True"
        api.modify("pods", pod)
        started = time.monotonic()
        await d.wait(30.0)
        assert time.monotonic() - started < 5, "wait() must return when an event arrives"
        groups = by_source((await d.refresh()).groups)
        assert groups["pod/shop/web-7d4b9c8f6d-q8z7m"].labels[M + "pod_ready"] == "true"
        # ADDED and DELETED; an object in another namespace is not watched here
        new = api.get("pods", "shop/web-7d4b9c8f6d-x2x9k")
        new["metadata"].update(name="web-7d4b9c8f6d-n3w00", uid="00000000-0000-4000-8000-000000000001")
        new["status"]["podIP"] = "10.244.1.40"
        api.add("pods", new)
        deleted = api.delete("pods", "shop/report-28519260-h4k2p")
        other = api.get("pods", "monitoring/node-exporter-5xk2t")
        other["metadata"]["name"] = "node-exporter-zzz"
        api.add("pods", other)

        async def settled() -> bool:
            sources = {g.source for g in (await d.refresh()).groups}
            return "pod/shop/web-7d4b9c8f6d-n3w00" in sources and "pod/shop/report-28519260-h4k2p" not in sources
        await until(settled)
        groups = by_source((await d.refresh()).groups)
        assert sorted(groups) == ["pod/shop/cache-0", "pod/shop/web-7d4b9c8f6d-n3w00", "pod/shop/web-7d4b9c8f6d-q8z7m",
                                  "pod/shop/web-7d4b9c8f6d-x2x9k"]
        assert groups["pod/shop/web-7d4b9c8f6d-n3w00"].addresses[0] == "10.244.1.40:8080"
        # wait() sleeps its full time when nothing changes
        started = time.monotonic()
        await d.wait(0.3)
        assert time.monotonic() - started >= 0.29
        states = d.reflector_states()
        # the version to resume from is the last event's of this namespace (the watch saw no other)
        assert states == [("pods in namespace shop", True, None, deleted["metadata"]["resourceVersion"])]
    run(discoverer, body)


def test_watch_resumes_from_the_last_version_and_relists_on_410(api: FakeKubeAPI, tmp_path: Path) -> None:
    discoverer = make({"role": "service", "kubeconfig_file": kubeconfig(tmp_path, api)}, watch_timeout=1)

    async def body(d: KubernetesDiscoverer) -> None:
        await d.refresh()
        await until(lambda: asyncio.sleep(0, bool(api.watches("services"))))
        svc = api.get("services", "shop/web")
        svc["metadata"]["labels"]["release"] = "canary"
        changed = api.modify("services", svc)
        # the watch ends at its timeoutSeconds (1-2 s); the next one resumes from the event's version
        await until(lambda: asyncio.sleep(0, len(api.watches("services")) >= 2))
        assert api.watches("services")[1].query["resourceVersion"] == changed["metadata"]["resourceVersion"]
        assert len(api.lists("services")) == 1
        # 410 Gone in the stream: a new list, then a watch from the new list's version; not a problem
        api.expire_watches()
        svc = api.get("services", "shop/web-lb")
        svc["spec"]["ports"] = svc["spec"]["ports"][:1]
        api.modify("services", svc)
        await until(lambda: asyncio.sleep(0, len(api.lists("services")) == 2))

        async def updated() -> bool:
            groups = by_source((await d.refresh()).groups)
            return len(groups["svc/shop/web-lb"].targets) == 1
        await until(updated)
        result = await d.refresh()
        assert result.problems == ()
        assert by_source(result.groups)["svc/shop/web"].labels[M + "service_label_release"] == "canary"
        # every watch carried the version of a list or of an event, and allowed bookmarks
        assert all(r.query["resourceVersion"].isdigit() and r.query["allowWatchBookmarks"] == "true"
                   and r.query["timeoutSeconds"] in ("1", "2") for r in api.watches())
    run(discoverer, body)


def test_errors_keep_the_last_good_groups_and_are_reported(api: FakeKubeAPI, tmp_path: Path) -> None:
    discoverer = make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api)})
    manager = DiscoveryManager([discoverer], job="shop")

    async def body(d: KubernetesDiscoverer) -> None:
        good = await manager.refresh_once()
        assert len(good) == 5
        await until(lambda: asyncio.sleep(0, bool(api.watches("pods"))))
        api.fail("pods", 503)
        api.drop_watches()

        async def failing() -> bool:  # the broken watch alone is no problem; the failed list is
            return any("503" in p for p in (await d.refresh()).problems)
        await until(failing)
        assert await manager.refresh_once() == good  # the last good list stays
        status = manager.status()[0]
        assert status.problems == ("cannot list and watch pods in all namespaces: the API server answered 503 "
                                   "Service Unavailable: pods is unavailable (injected)",)
        assert status.errors_total >= 1 and status.mechanism == "kubernetes"
        # what changed during the outage is there after the next successful list
        api.delete("pods", "shop/cache-0")
        api.heal()

        async def recovered() -> bool:
            result = await d.refresh()
            return not result.problems and "pod/shop/cache-0" not in {g.source for g in result.groups}
        await until(recovered)
        await manager.refresh_once()
        assert manager.status()[0].problems == ()
        assert len(api.lists("pods")) >= 2
    run(discoverer, body)


def test_first_list_refused(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.fail("ingresses", 403)
    discoverer = make({"role": "ingress", "kubeconfig_file": kubeconfig(tmp_path, api)})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert "403 Forbidden" in str(info.value)
        assert "needs RBAC permission to list and watch ingresses" in str(info.value)
        api.heal()

        async def listed() -> bool:
            try:
                return [g.source for g in (await d.refresh()).groups] == ["ingress/shop/web"]
            except DiscoveryError:
                return False
        await until(listed)
    run(discoverer, body)


def test_wrong_token_is_refused(api: FakeKubeAPI, tmp_path: Path) -> None:
    discoverer = make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api, token="stale")})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert "401 Unauthorized" in str(info.value) and "check the credentials" in str(info.value)
        assert "stale" not in str(info.value)
    run(discoverer, body)
    assert all(r.headers["authorization"] == "Bearer stale" for r in api.requests)


def test_unreachable_api_server(tmp_path: Path) -> None:
    with FakeKubeAPI() as gone:
        path = kubeconfig(tmp_path, gone)
    discoverer = make({"role": "pod", "kubeconfig_file": path})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert "cannot reach the API server at http://127.0.0.1:" in str(info.value)
    run(discoverer, body)


def test_bad_kubeconfig(tmp_path: Path) -> None:
    missing = make({"role": "pod", "kubeconfig_file": str(tmp_path / "nope.yaml")})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert f"cannot set up the Kubernetes client from kubeconfig_file {tmp_path / 'nope.yaml'}" in str(info.value)
    run(missing, body)


# --- access: in-cluster over TLS, api_server with Prometheus's HTTP client keys -------------------------

def test_in_cluster_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = make_cert(tmp_path, ["127.0.0.1"])
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    (sa / "ca.crt").write_text(Path(cert).read_text())
    (sa / "namespace").write_text("shop")
    with FakeKubeAPI(token=TOKEN, tls=tls_context(cert, key)) as server:
        server.load("pods")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
        discoverer = make({"role": "pod", "namespaces": {"own_namespace": True, "names": ["monitoring"]}},
                          service_account_dir=str(sa))
        groups = groups_of(discoverer)
        assert [g.source for g in groups] == ["pod/monitoring/node-exporter-5xk2t", "pod/shop/cache-0",
                                              "pod/shop/report-28519260-h4k2p", "pod/shop/web-7d4b9c8f6d-q8z7m",
                                              "pod/shop/web-7d4b9c8f6d-x2x9k"]
        assert discoverer.host == f"https://127.0.0.1:{server.port}"
        assert {r.path for r in server.requests} == {"/api/v1/namespaces/monitoring/pods",
                                                     "/api/v1/namespaces/shop/pods"}
        assert {r.headers["authorization"].lower() for r in server.requests} == {f"bearer {TOKEN}"}
        assert all(r.headers["user-agent"].startswith("promotel/") for r in server.requests)

        # a CA that did not sign the server's certificate: TLS fails, and says so
        other, _ = make_cert(tmp_path, ["10.9.9.9"])
        (sa / "ca.crt").write_text(Path(other).read_text())
        untrusted = make({"role": "pod"}, service_account_dir=str(sa))

        async def body(d: KubernetesDiscoverer) -> None:
            with pytest.raises(DiscoveryError) as info:
                await d.refresh()
            assert "TLS failed" in str(info.value) and "certificate verify failed" in str(info.value)
        run(untrusted, body)


def test_in_cluster_without_the_environment(tmp_path: Path) -> None:
    discoverer = make({"role": "pod"}, service_account_dir=str(tmp_path), environ={})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert "in-cluster config (KUBERNETES_SERVICE_HOST/PORT" in str(info.value)
        assert "Service host/port is not set" in str(info.value)
    run(discoverer, body)


def test_own_namespace_file_missing(tmp_path: Path) -> None:
    discoverer = make({"role": "pod", "namespaces": {"own_namespace": True}}, service_account_dir=str(tmp_path),
                      environ={})

    async def body(d: KubernetesDiscoverer) -> None:
        with pytest.raises(DiscoveryError) as info:
            await d.refresh()
        assert f"could not determine the pod's namespace from {tmp_path / 'namespace'}" in str(info.value)
    run(discoverer, body)


def test_api_server_with_http_client_keys(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, ["kube.test", "127.0.0.1"])
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    with FakeKubeAPI(token="first-token", tls=tls_context(cert, key)) as server:
        server.load("services")
        config = {"role": "service", "api_server": f"https://127.0.0.1:{server.port}/",
                  "bearer_token_file": str(token_file), "tls_config": {"ca_file": cert, "server_name": "kube.test"},
                  "namespaces": {"names": ["monitoring"]}}
        discoverer = make(config)

        async def body(d: KubernetesDiscoverer) -> None:
            assert [g.source for g in (await d.refresh()).groups] == ["svc/monitoring/node-exporter"]
            # the credential file is read at every request: a rotated token is used by the next one
            server.token = "second-token"
            token_file.write_text("second-token")
            server.drop_watches()

            async def reconnected() -> bool:
                return bool(server.requests) and server.requests[-1].headers.get("authorization") == \
                    "Bearer second-token" and not (await d.refresh()).problems
            await until(reconnected)
        run(discoverer, body)
        assert server.requests[0].headers["authorization"] == "Bearer first-token"
        assert {r.path for r in server.requests} == {"/api/v1/namespaces/monitoring/services"}


def test_api_server_without_scheme_is_http(api: FakeKubeAPI) -> None:
    groups = groups_of(make({"role": "ingress", "api_server": f"127.0.0.1:{api.port}",
                             "authorization": {"credentials": TOKEN}}))
    assert [g.source for g in groups] == ["ingress/shop/web"]


# --- into targets -----------------------------------------------------------------------------------------

def test_groups_through_relabeling(api: FakeKubeAPI, tmp_path: Path) -> None:
    """The usual Prometheus pod job: keep annotated pods, scrape the annotated port."""
    groups = groups_of(make({"role": "pod", "kubeconfig_file": kubeconfig(tmp_path, api)}))
    relabel = [RelabelConfig.model_validate(c) for c in [
        {"source_labels": [M + "pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
        {"source_labels": [M + "pod_container_port_number"], "target_label": M + "pod_annotation_prometheus_io_port",
         "action": "keepequal"},
        {"action": "labelmap", "regex": M + "pod_label_(.+)"},
        {"source_labels": [M + "namespace"], "target_label": "namespace"},
        {"source_labels": [M + "pod_name"], "target_label": "pod"},
    ]]
    targets = build_targets(groups, ScrapeDefaults(job="kubernetes-pods", scrape_interval=30, scrape_timeout=10),
                            relabel)
    active = [t for t in targets if t.state == "active"]
    assert [(t.target.labels["instance"], t.target.labels["pod"]) for t in active if t.target] == [
        ("10.244.2.23:9090", "web-7d4b9c8f6d-q8z7m"), ("10.244.1.17:9090", "web-7d4b9c8f6d-x2x9k")]
    assert active[0].target is not None and active[0].target.labels["app"] == "web"
    assert active[0].target.labels["namespace"] == "shop"
    assert len([t for t in targets if t.state == "dropped"]) == 6
    assert "__meta_kubernetes_pod_annotation_kubectl_kubernetes_io_restartedAt" not in active[1].discovered_labels


def test_discoverer_closes_its_threads(api: FakeKubeAPI, tmp_path: Path) -> None:
    discoverer = make({"role": "endpointslice", "kubeconfig_file": kubeconfig(tmp_path, api),
                       "attach_metadata": {"node": True, "namespace": True}})
    before = set(threading.enumerate())

    async def body(d: KubernetesDiscoverer) -> int:
        await d.refresh()
        return len(d.reflector_states())
    assert run(discoverer, body) == 5
    time.sleep(0.2)
    left = [t for t in threading.enumerate() if t.name.startswith("k8s-sd") and t not in before]
    assert left == []


def test_kubernetes_sd_keeps_its_names_as_the_package_objects() -> None:
    """``promotel.discovery.kubernetes_sd`` was the whole implementation; it now re-exports the package
    ``promotel.discovery.kubernetes``, and every name it had is still there, as the same object."""
    import importlib

    import promotel.discovery.kubernetes_sd as facade

    homes = {
        "config": ["INSTALL_HINT", "ROLES", "SERVICE_ACCOUNT_DIR", "AttachMetadataConfig", "KubernetesSDConfig",
                   "NamespaceDiscovery", "Role", "SelectorConfig", "client_installed"],
        "selectors": ["parse_field_selector", "parse_label_selector"],
        "objects": ["JSONObject", "object_key"],
        "roles": ["META", "NAMESPACE_LABEL", "PRESENT", "Stores", "build_groups", "endpoints_group",
                  "endpointslice_group", "ingress_group", "node_group", "pod_group", "sanitize_label_name",
                  "service_group"],
        "discoverer": ["KubernetesDiscoverer"],
    }
    assert facade.__all__ == ["INSTALL_HINT", "SERVICE_ACCOUNT_DIR", "AttachMetadataConfig", "KubernetesDiscoverer",
                              "KubernetesSDConfig", "NamespaceDiscovery", "SelectorConfig", "Stores", "build_groups",
                              "client_installed", "object_key", "parse_field_selector", "parse_label_selector",
                              "sanitize_label_name"]
    for module, names in homes.items():
        home = importlib.import_module(f"promotel.discovery.kubernetes.{module}")
        for name in names:
            assert getattr(facade, name) is getattr(home, name), (module, name)
    assert set(facade.__all__) <= {name for names in homes.values() for name in names}
