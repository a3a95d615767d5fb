"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (offline, strict), runs
locked down, and carries promotel commands and configs that promotel itself accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, NamedTuple

import kubernetes_validate
import pytest
import yaml

from promotel.cli import build_parser
from promotel.scrape.shard import assign, shard_from_env
from support.paths import REPO

K8S = REPO / "deploy" / "kubernetes"
COLLECTOR_DIR = REPO / "otel-collector"
# The documents that tell users to `kubectl apply -f` these folders.
DOCS = [REPO / "README.md", K8S / "README.md"]
NAMESPACE = "promotel"
SECRET = "promotel-secrets"
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
    # No Secret: the documented `kubectl create secret` makes it (test_documented_kubectl_steps).
    assert set(objects("sidecar")) == {
        ("Namespace", NAMESPACE),
        ("Deployment", "promotel"), ("ConfigMap", "promotel-config"), ("ConfigMap", "otelcol-config")}
    assert set(objects("scale-out")) == {
        ("Namespace", NAMESPACE),
        ("StatefulSet", "promotel"), ("Service", "promotel"), ("ConfigMap", "promotel-config"),
        ("ConfigMap", "otelcol-gateway-config"), ("Deployment", "otelcol-gateway"), ("Service", "otelcol-gateway"),
        ("ConfigMap", "otelcol-backend-config"), ("Deployment", "otelcol-backend"), ("Service", "otelcol-backend")}
    assert set(objects("target-allocator")) == {
        ("Namespace", NAMESPACE),
        ("StatefulSet", "promotel"), ("Service", "promotel"), ("ConfigMap", "promotel-config"),
        ("ServiceAccount", "target-allocator"), ("ClusterRole", "promotel-target-allocator"),
        ("ClusterRoleBinding", "promotel-target-allocator"), ("ConfigMap", "target-allocator-config"),
        ("Deployment", "target-allocator"), ("Service", "target-allocator")}


FOLDERS = ["sidecar", "scale-out", "target-allocator"]
# The one workload that talks to the Kubernetes API (pods, service discovery) and needs its token.
NEEDS_TOKEN = {("target-allocator", "target-allocator")}


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_container_is_locked_down(folder: str) -> None:
    for obj in workloads(folder):
        spec = pod_spec(obj)
        assert spec["automountServiceAccountToken"] is ((folder, obj["metadata"]["name"]) in NEEDS_TOKEN)
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


@pytest.mark.parametrize("folder", FOLDERS)
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


@pytest.mark.parametrize("folder", FOLDERS)
def test_promotel_config_in_configmap(folder: str) -> None:
    config = promotel_config(folder)
    assert set(config) <= {"sources", "exporters", "state_dir", "health"}
    assert config["state_dir"] == "/var/lib/promotel"
    assert config["health"]["listen"].endswith(":8888")
    for source in config["sources"]:
        if folder == "target-allocator":    # every target comes from the allocator (a pasted Prometheus job)
            assert {"name", "mapping", "http_sd_configs", "scrape_interval"} <= set(source)
        else:
            assert {"name", "mapping", "url", "interval"} <= set(source)
    # API keys only as ${VAR}, each provided to the container from the Secret
    text = objects(folder)[("ConfigMap", "promotel-config")]["data"]["promotel.yaml"]
    needed = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text))
    obj = next(o for o in workloads(folder) if o["metadata"]["name"] == "promotel")
    env = {e["name"]: e for e in container(obj, "promotel")["env"]}
    assert needed and needed <= set(env)
    # Secrets come from the Secret; the only other variable is the pod's name (the downward API), which the
    # Target Allocator's collector_id needs.
    from_secret = {name for name in needed if "secretKeyRef" in env[name].get("valueFrom", {})}
    assert needed - from_secret == ({"POD_NAME"} if folder == "target-allocator" else set())
    # ... and the documented `kubectl create secret` puts each of them in the Secret
    for doc in DOCS:
        for step in documented_steps(doc):
            if folder in step.applied_folders:
                assert from_secret <= step.secret_keys, \
                    f"{doc.name}: the Secret lacks {sorted(from_secret - step.secret_keys)}"


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

    for folder in FOLDERS:
        text = objects(folder)[("ConfigMap", "promotel-config")]["data"]["promotel.yaml"]
        path = tmp_path / f"{folder}.yaml"
        path.write_text(text)
        path.chmod(0o600)
        config = load_config(str(path), env={"BASETEN_API_KEY": "test-key", "POD_NAME": "promotel-1"})
        assert [s.name for s in config.sources] == [s["name"] for s in promotel_config(folder)["sources"]]


def test_target_allocator_jobs_are_the_promotel_sources(tmp_path: Path) -> None:
    from promotel.config import load_config
    from promotel.discovery.targetallocator import targets_url

    objs = objects("target-allocator")
    ta = yaml.safe_load(objs[("ConfigMap", "target-allocator-config")]["data"]["targetallocator.yaml"])
    assert ta["allocation_strategy"] == "consistent-hashing"
    sts = objs[("StatefulSet", "promotel")]
    # The allocator's collectors are exactly promotel's pods.
    assert ta["collector_selector"]["matchlabels"] == sts["spec"]["template"]["metadata"]["labels"]
    jobs = {job["job_name"]: job for job in ta["config"]["scrape_configs"]}
    sources = {s["name"]: s for s in promotel_config("target-allocator")["sources"]}
    assert set(jobs) == set(sources)
    for name, source in sources.items():
        job = jobs[name]
        assert source.get("relabel_configs", []) == job.get("relabel_configs", []), name
        assert source["scrape_interval"] == job["scrape_interval"], name
        assert source.get("scheme", "http") == job.get("scheme", "http"), name
    # Each pod asks for its own targets: collector_id is its name, from the downward API.
    text = objs[("ConfigMap", "promotel-config")]["data"]["promotel.yaml"]
    path = tmp_path / "promotel.yaml"
    path.write_text(text)
    path.chmod(0o600)
    config = load_config(str(path), env={"BASETEN_API_KEY": "k", "POD_NAME": "promotel-2"})
    for source in config.sources:
        (sd,) = source.http_sd_configs
        assert sd.url == targets_url("http://target-allocator", source.name, "promotel-2")
    env = {e["name"]: e for e in container(sts, "promotel")["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "PROMOTEL_SHARD_COUNT" not in env and "PROMOTEL_SHARD" not in env    # the allocator is the sharding
    # The allocator's Service answers on port 80 (the URL above), its account may read what it discovers.
    assert objs[("Service", "target-allocator")]["spec"]["ports"][0]["port"] == 80
    binding = objs[("ClusterRoleBinding", "promotel-target-allocator")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "target-allocator", "namespace": NAMESPACE}]
    dep = objs[("Deployment", "target-allocator")]
    assert pod_spec(dep)["serviceAccountName"] == "target-allocator"
    ta_container = container(dep, "target-allocator")
    assert ta_container["args"] == ["--config-file=/conf/targetallocator.yaml"]
    assert not ta_container["image"].endswith(":latest")


# ── the documented kubectl steps ────────────────────────────────────────────────────────────────────────

def sh_blocks(doc: Path) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", doc.read_text(), re.MULTILINE | re.DOTALL)


def kubectl_commands(block: str) -> list[list[str]]:
    """The kubectl commands of one sh block, in order (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", block)
    commands = []
    for line in joined.splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[0] == "kubectl":
            commands.append(argv)
    return commands


def option(argv: list[str], *names: str) -> list[str]:
    """Every value of the options ``names`` (``-f X``, ``-f=X``, ``--filename X``)."""
    found = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                found.append(argv[i + 1])
            elif arg.startswith(name + "="):
                found.append(arg[len(name) + 1:])
    return found


_KUBECTL_OPTIONS_WITH_VALUE = {"-n", "--namespace", "-f", "--filename", "-o", "--output", "-l", "--selector"}


def words(argv: list[str]) -> list[str]:
    """The command words of a kubectl line, options and their values left out: ``create secret generic NAME``."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _KUBECTL_OPTIONS_WITH_VALUE
        else:
            out.append(arg)
    return out


def applied_documents(target: str, repo: Path) -> list[dict[str, Any]]:
    path = repo / target
    assert path.exists(), f"kubectl apply -f {target}: no such file or folder in the repository"
    # kubectl reads a folder's .yaml, .yml and .json files
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
    return [doc for f in files for doc in documents(f)]


class Step(NamedTuple):
    """What one documented sh block does, as far as these tests care."""
    doc: str
    applied_folders: frozenset[str]     # folder names under deploy/kubernetes applied as a whole
    secret_keys: frozenset[str]         # keys of the `kubectl create secret generic promotel-secrets`


def documented_steps(doc: Path, repo: Path = REPO) -> list[Step]:
    """Walk each sh block's kubectl commands in order, asserting the order a fresh cluster needs:
    the namespace exists before anything is created in it; the Secret is created (not applied from a
    file) before the folder; no applied file holds a Secret with data."""
    steps = []
    for block in sh_blocks(doc):
        commands = kubectl_commands(block)
        if not commands:
            continue
        namespace_exists = False
        secret_keys: set[str] = set()
        folders: set[str] = set()
        for argv in commands:
            where = f"{doc.name}: {shlex.join(argv)}"
            verb = words(argv)
            if verb[:2] in (["create", "namespace"], ["create", "ns"]):
                assert verb[2:] == [NAMESPACE], where
                namespace_exists = True
                continue
            namespaced = option(argv, "-n", "--namespace")
            if namespaced:
                assert namespaced == [NAMESPACE], where
                assert namespace_exists, f"{where}: runs in namespace {NAMESPACE!r} before a step creates it"
            if verb[:1] == ["apply"]:
                for target in option(argv, "-f", "--filename"):
                    docs = applied_documents(target, repo)
                    for d in docs:
                        assert not (d["kind"] == "Secret" and (d.get("data") or d.get("stringData"))), \
                            f"{where}: {target} holds Secret {d['metadata']['name']} with values; applying it " \
                            "replaces the keys the user created"
                    if any(d["kind"] == "Namespace" and d["metadata"]["name"] == NAMESPACE for d in docs):
                        namespace_exists = True
                    path = repo / target
                    if path.is_dir():
                        assert path.parent == repo / "deploy" / "kubernetes", where
                        assert secret_keys, f"{where}: create the Secret before applying the folder"
                        folders.add(path.name)
            elif verb[:3] == ["create", "secret", "generic"]:
                assert verb[3:] == [SECRET], where
                literals = option(argv, "--from-literal")
                assert literals, where
                secret_keys |= {lit.partition("=")[0] for lit in literals}
        steps.append(Step(doc.name, frozenset(folders), frozenset(secret_keys)))
    return steps


def test_documented_kubectl_steps() -> None:
    applied: dict[str, set[str]] = {}
    for doc in DOCS:
        for step in documented_steps(doc):
            for folder in step.applied_folders:
                applied.setdefault(folder, set()).add(str(doc.relative_to(REPO)))
                # Everything the folder's workloads read from the Secret is in the one the step creates.
                for obj in workloads(folder):
                    for c in all_containers(obj):
                        for env in c.get("env", []):
                            ref = env.get("valueFrom", {}).get("secretKeyRef")
                            if ref:
                                assert ref["name"] == SECRET, f"{folder}/{c['name']}"
                                assert ref["key"] in step.secret_keys, \
                                    f"{doc.name}: the Secret for {folder}/ lacks {ref['key']} ({c['name']} needs it)"
    # Both folders are documented in both places, and this test walked each of those steps.
    everywhere = {str(d.relative_to(REPO)) for d in DOCS}
    assert applied == {"sidecar": everywhere, "scale-out": everywhere, "target-allocator": everywhere}


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_holds_its_namespace_first_and_no_secret(folder: str) -> None:
    files = sorted((K8S / folder).glob("*.yaml"))
    kinds = [[d["kind"] for d in documents(f)] for f in files]
    assert kinds[0] == ["Namespace"], f"{files[0].name}: kubectl applies a folder in name order, namespace first"
    assert documents(files[0])[0]["metadata"]["name"] == NAMESPACE
    assert not any("Secret" in k for k in kinds)
    # namespaced objects carry no namespace of their own: `-n promotel` decides, as documented
    for f in files[1:]:
        for d in documents(f):
            assert "namespace" not in d["metadata"], f"{folder}/{f.name}: {d['kind']} {d['metadata']['name']}"


def test_the_doc_check_catches_a_placeholder_secret_and_a_late_namespace(tmp_path: Path) -> None:
    # The walk above must be able to fail: the old sidecar steps (no namespace; a Secret in the folder),
    # on a copy of the folder so the checkout is not touched.
    folder = tmp_path / "deploy" / "kubernetes" / "sidecar"
    folder.mkdir(parents=True)
    (folder / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: promotel-secrets}\n"
                                        "stringData: {BASETEN_API_KEY: replace-me}\n")
    doc = tmp_path / "doc.md"
    steps = ("kubectl -n promotel create secret generic promotel-secrets --from-literal=BASETEN_API_KEY=…\n"
             "kubectl -n promotel apply -f deploy/kubernetes/sidecar/\n")
    doc.write_text(f"```sh\n{steps}```\n")
    with pytest.raises(AssertionError, match="before a step creates it"):
        documented_steps(doc, tmp_path)
    doc.write_text(f"```sh\nkubectl create namespace promotel\n{steps}```\n")
    with pytest.raises(AssertionError, match="replaces the keys"):
        documented_steps(doc, tmp_path)
    (folder / "secret.yaml").unlink()
    (folder / "deployment.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (step,) = documented_steps(doc, tmp_path)
    assert step == Step("doc.md", frozenset({"sidecar"}), frozenset({"BASETEN_API_KEY"}))
