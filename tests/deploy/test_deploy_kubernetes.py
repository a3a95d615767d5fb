"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (offline, strict), runs
locked down, and carries promotel commands and configs that promotel itself accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from promotel.cli import build_parser
from promotel.scrape.shard import assign, shard_from_env
from support.paths import REPO

K8S = REPO / "deploy" / "kubernetes"
COLLECTOR_DIR = REPO / "otel-collector"
# The oldest Kubernetes the manifests target: 1.29 has native sidecars (initContainers with restartPolicy).
K8S_VERSION = "1.29"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.115.0"


def manifests() -> list[Path]:
    return sorted(K8S.glob("*/*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def objects(folder: str) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((K8S / folder).glob("*.yaml")):
        for doc in documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in out, f"{folder}: {key} defined twice"
            out[key] = doc
    return out


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def all_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def workloads(folder: str) -> list[dict[str, Any]]:
    return [o for (kind, _), o in objects(folder).items() if kind in ("Deployment", "StatefulSet")]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in all_containers(obj) if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_validator_works_offline_and_catches_errors() -> None:
    # The schemas ship inside the package (no network). A misspelt field must fail in strict mode.
    schema_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    assert any(schema_dir.glob(f"v{K8S_VERSION}*-local-strict"))
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {"a": "b"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    wrong_type = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"replicas": "two", "selector": {}, "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", manifests(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_manifest_validates_against_kubernetes_schema(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no objects"
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_expected_objects() -> None:
    assert set(objects("sidecar")) == {
        ("Deployment", "promotel"), ("ConfigMap", "promotel-config"), ("ConfigMap", "otelcol-config"),
        ("Secret", "promotel-secrets")}
    assert set(objects("scale-out")) == {
        ("StatefulSet", "promotel"), ("Service", "promotel"), ("ConfigMap", "promotel-config"),
        ("Secret", "promotel-secrets"),
        ("ConfigMap", "otelcol-gateway-config"), ("Deployment", "otelcol-gateway"), ("Service", "otelcol-gateway"),
        ("ConfigMap", "otelcol-backend-config"), ("Deployment", "otelcol-backend"), ("Service", "otelcol-backend")}


@pytest.mark.parametrize("folder", ["sidecar", "scale-out"])
def test_every_container_is_locked_down(folder: str) -> None:
    for obj in workloads(folder):
        spec = pod_spec(obj)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in all_containers(obj):
            where = f"{folder}/{obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged", False), where
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            assert not c["image"].endswith(":latest") and ":" in c["image"], f"{where}: pin the image"
            assert c["livenessProbe"] and c["readinessProbe"], where


@pytest.mark.parametrize("folder", ["sidecar", "scale-out"])
def test_promotel_container(folder: str) -> None:
    obj = next(o for o in workloads(folder) if o["metadata"]["name"] == "promotel")
    c = container(obj, "promotel")
    args = build_parser().parse_args(c["args"])
    assert (args.command, args.config, args.once) == ("run", "/etc/promotel/promotel.yaml", False)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {"name": "health", "containerPort": 8888} in c["ports"]
    res = c["resources"]
    assert res["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert res["limits"] == {"cpu": "1", "memory": "512Mi"}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/promotel"]["readOnly"] is True
    assert "/var/lib/promotel" in mounts   # writable state on a read-only root filesystem
    # secrets only by reference
    for env in c["env"]:
        if env["name"].endswith("API_KEY"):
            assert env["valueFrom"]["secretKeyRef"]["name"] == "promotel-secrets"
    # the grace period covers promotel's flush (service.GRACE_S)
    from promotel.service import GRACE_S

    assert pod_spec(obj)["terminationGracePeriodSeconds"] > GRACE_S


def promotel_config(folder: str) -> dict[str, Any]:
    cm = objects(folder)[("ConfigMap", "promotel-config")]
    config = yaml.safe_load(cm["data"]["promotel.yaml"])
    assert isinstance(config, dict)
    return config


@pytest.mark.parametrize("folder", ["sidecar", "scale-out"])
def test_promotel_config_in_configmap(folder: str) -> None:
    config = promotel_config(folder)
    assert set(config) <= {"sources", "exporters", "state_dir", "health"}
    assert config["state_dir"] == "/var/lib/promotel"
    assert config["health"]["listen"].endswith(":8888")
    for source in config["sources"]:
        assert {"name", "mapping", "url", "interval"} <= set(source)
    # API keys only as ${VAR}, each provided to the container from the Secret
    text = objects(folder)[("ConfigMap", "promotel-config")]["data"]["promotel.yaml"]
    needed = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text))
    obj = next(o for o in workloads(folder) if o["metadata"]["name"] == "promotel")
    provided = {e["name"] for e in container(obj, "promotel")["env"]}
    assert needed and needed <= provided
    secret_keys = set(objects(folder)[("Secret", "promotel-secrets")]["stringData"])
    assert needed <= secret_keys


def test_sidecar_pod_pairs_promotel_with_a_pinned_collector() -> None:
    dep = objects("sidecar")[("Deployment", "promotel")]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    otelcol = container(dep, "otelcol")
    assert otelcol["image"] == COLLECTOR_IMAGE
    assert otelcol["restartPolicy"] == "Always"   # native sidecar: outlives promotel's final flush
    state = next(v for v in pod_spec(dep)["volumes"] if v["name"] == "state")
    assert "emptyDir" in state
    exporters = promotel_config("sidecar")["exporters"]
    assert exporters == [{"name": "collector", "endpoint": "http://127.0.0.1:4317"}]
    # the collector config is the sidecar-datadog scenario (only the health endpoint moves to the pod IP)
    embedded = yaml.safe_load(objects("sidecar")[("ConfigMap", "otelcol-config")]["data"]["config.yaml"])
    scenario = yaml.safe_load((COLLECTOR_DIR / "sidecar-datadog" / "config.yaml").read_text())
    assert embedded["extensions"]["health_check"]["endpoint"] == "${env:MY_POD_IP}:13133"
    for key in ("receivers", "processors", "exporters", "service"):
        assert embedded[key] == scenario[key], key
    env = {e["name"] for e in otelcol["env"]}
    assert {"MY_POD_IP", "DD_API_KEY", "DD_SITE"} <= env


def test_scale_out_shards_by_pod_ordinal() -> None:
    sts = objects("scale-out")[("StatefulSet", "promotel")]
    replicas = sts["spec"]["replicas"]
    env = {e["name"]: e.get("value") for e in container(sts, "promotel")["env"]}
    assert env["PROMOTEL_SHARD_COUNT"] == str(replicas)
    assert sts["spec"]["serviceName"] == "promotel"
    assert objects("scale-out")[("Service", "promotel")]["spec"]["clusterIP"] == "None"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    # Every pod name of the StatefulSet resolves to a distinct shard, and together they cover all targets.
    shards = [shard_from_env({"PROMOTEL_SHARD_COUNT": env["PROMOTEL_SHARD_COUNT"]}, f"promotel-{i}")
              for i in range(replicas)]
    assert shards == [(i, replicas) for i in range(replicas)]
    urls = [s["url"] for s in promotel_config("scale-out")["sources"]]
    assignment = assign(urls, replicas)
    assert sorted(u for us in assignment.values() for u in us) == sorted(urls)
    # promotel pushes to the gateway Service, which load-balances onto the headless backend Service
    assert promotel_config("scale-out")["exporters"][0]["endpoint"] == "http://otelcol-gateway:4317"
    assert objects("scale-out")[("Service", "otelcol-backend")]["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in objects("scale-out")[("Service", "otelcol-gateway")]["spec"]


@pytest.mark.parametrize("tier, scenario_file", [("gateway", "config.yaml"), ("backend", "backend.yaml")])
def test_scale_out_collector_configs_match_the_scenario(tier: str, scenario_file: str) -> None:
    objs = objects("scale-out")
    embedded = objs[("ConfigMap", f"otelcol-{tier}-config")]["data"]["config.yaml"]
    scenario = (COLLECTOR_DIR / "gateway-loadbalancing" / scenario_file).read_text()
    assert yaml.safe_load(embedded) == yaml.safe_load(scenario)
    dep = objs[("Deployment", f"otelcol-{tier}")]
    c = container(dep, "otelcol")
    assert c["image"] == COLLECTOR_IMAGE
    # every ${env:NAME} the config uses is set on the container
    needed = set(re.findall(r"\$\{env:([A-Z_][A-Z0-9_]*)\}", embedded))
    assert needed <= {e["name"] for e in c["env"]}


def test_config_loads_with_promotel(tmp_path: Path) -> None:
    from promotel.config import load_config

    for folder in ("sidecar", "scale-out"):
        text = objects(folder)[("ConfigMap", "promotel-config")]["data"]["promotel.yaml"]
        path = tmp_path / f"{folder}.yaml"
        path.write_text(text)
        path.chmod(0o600)
        config = load_config(str(path), env={"BASETEN_API_KEY": "test-key"})
        assert [s.name for s in config.sources] == [s["name"] for s in promotel_config(folder)["sources"]]
