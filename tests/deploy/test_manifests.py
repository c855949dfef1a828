"""deploy/ and crds/ against the real kube-apiserver of the harness: kustomize renders,
every manifest passes a server-side dry run (CRDs installed and the namespace created
first), the children the operator renders from the samples with deploy/'s settings do
too, and the addresses wired between the parts name Services that exist."""

from __future__ import annotations

import json
import re
import subprocess
import time
from urllib.parse import urlparse

import pytest
import yaml

from deploy import support
from deploy.support import (
    CRDS, DEPLOY, NAMESPACE, ROOT, env_of, find, kubectl, operator_children, operator_env, render,
)
from harness.process import binary, versions

from monologue.operator import naming
from monologue.operator.settings import Settings

PARTS = ["operator", "loki", "s3", "weaviate", "collector", "samples"]


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(DEPLOY)


# ---------------------------------------------------------------- rendering


def test_kustomize_renders_every_part_into_the_namespace(rendered):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    for expected in [("Namespace", NAMESPACE), ("Deployment", "monologue-operator"),
                     ("StatefulSet", "loki"), ("StatefulSet", "s3"), ("StatefulSet", "weaviate"),
                     ("DaemonSet", "log-collector"), ("Job", "s3-bucket"),
                     ("Space", "default-logs"), ("Agent", "default-sre"),
                     ("ModelServer", "minilm"), ("ModelServer", "smollm")]:
        assert expected in kinds
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for obj in rendered:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_top_level_is_exactly_its_parts(rendered):
    parts = [o for part in PARTS for o in render(DEPLOY / part)]
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, parts))


def test_no_credentials_in_the_manifests(rendered):
    assert not [o for o in rendered if o["kind"] == "Secret"], "Secrets are created by Deployment.sh, not kept here"
    for obj in rendered:
        for container in support.containers(obj):
            for name in env_of(container):
                assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN", name), f"{obj['metadata']['name']}: {name} has a literal value"


def test_every_workload_runs_as_non_root_without_privilege_escalation(rendered):
    for obj in rendered:
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        for container in support.containers(obj):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert container.get("resources", {}).get("limits", {}).get("memory"), container["name"]


# ---------------------------------------------------------------- the real API server


@pytest.fixture(scope="module")
def apiserver(kubernetes):
    """The CRDs installed and the namespace created for real: a server-side dry run of a
    namespaced object needs its namespace, of a custom resource its CRD."""
    config = kubernetes.kubeconfig
    kubectl("apply", "-f", str(CRDS), kubeconfig=config)
    deadline = time.monotonic() + 30
    for crd in ("spaces", "agents", "modelservers"):
        while kubectl("get", "crd", f"{crd}.monologue.dev", "-o",
                      'jsonpath={.status.conditions[?(@.type=="Established")].status}',
                      kubeconfig=config).stdout != "True":
            assert time.monotonic() < deadline, f"CRD {crd}.monologue.dev not established"
            time.sleep(0.2)
    kubectl("apply", "-f", str(DEPLOY / "operator" / "namespace.yaml"), kubeconfig=config)
    return config


@pytest.mark.parametrize("manifest", support.manifest_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_manifest_passes_a_server_side_dry_run(apiserver, manifest):
    result = kubectl("apply", "--dry-run=server", "-f", str(manifest), kubeconfig=apiserver, check=False)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


def test_the_whole_kustomization_passes_a_server_side_dry_run(apiserver, rendered):
    result = kubectl("apply", "--dry-run=server", "-k", str(DEPLOY), kubeconfig=apiserver)
    assert result.stdout.count("(server dry run)") == len(rendered)


def test_the_api_server_rejects_what_it_should(apiserver, tmp_path):
    # The dry run validates for real: a StatefulSet whose selector misses its pod labels fails.
    loki = next(d for d in yaml.safe_load_all((DEPLOY / "loki" / "loki.yaml").read_text()) if d["kind"] == "StatefulSet")
    loki["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "not-loki"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(loki))
    result = kubectl("apply", "--dry-run=server", "-f", str(broken), kubeconfig=apiserver, check=False)
    assert result.returncode != 0 and "selector" in result.stderr


def test_the_children_the_operator_renders_pass_a_server_side_dry_run(apiserver, rendered, tmp_path):
    children = operator_children(rendered)
    assert {c["kind"] for c in children} == {"ConfigMap", "Deployment", "Service"}
    path = tmp_path / "children.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": children}))
    result = kubectl("apply", "--dry-run=server", "-f", str(path), kubeconfig=apiserver)
    assert result.stdout.count("(server dry run)") == len(children)


# ---------------------------------------------------------------- wiring


def service_port(objects: list[dict], url: str) -> None:
    """The URL names a Service of deploy/ (<name>.<namespace>.svc) and one of its ports."""
    host, port = (urlparse(url).hostname, urlparse(url).port) if "://" in url else url.rsplit(":", 1)
    name, namespace, svc = host.split(".")[:3]
    assert (namespace, svc) == (NAMESPACE, "svc"), url
    ports = [p["port"] for p in find(objects, "Service", name)["spec"]["ports"]]
    assert int(port) in ports, f"{url}: Service {name} has ports {ports}"


def test_the_operator_settings_name_services_of_deploy(rendered):
    env = operator_env(rendered)
    settings = Settings.from_env(env)
    service_port(rendered, settings.weaviate_url)
    service_port(rendered, f"{settings.weaviate_host}:{settings.weaviate_grpc_port}")
    service_port(rendered, settings.loki_url)
    service_port(rendered, settings.aws_endpoint_url)
    # The defaults of the operator are the same addresses.
    defaults = Settings.from_env({})
    assert (defaults.weaviate_url, defaults.loki_url) == (settings.weaviate_url, settings.loki_url)


def test_the_collector_writes_to_the_loki_service(rendered):
    config = find(rendered, "ConfigMap", "log-collector")["data"]["config.alloy"]
    urls = re.findall(r'url\s*=\s*"([^"]+)"', config)
    assert urls == ["http://loki.monologue.svc:3100/loki/api/v1/push"]
    service_port(rendered, urls[0])
    # The Space sample selects by a label the collector sets.
    query = find(rendered, "Space", "default-logs")["spec"]["source"]["loki"]["query"]
    assert query == '{namespace="default"}' and 'target_label  = "namespace"' in config


def test_the_samples_fit_together(rendered):
    space = find(rendered, "Space", "default-logs")
    job = find(rendered, "Job", "s3-bucket")
    container = support.containers(job)[0]
    bucket = urlparse(space["spec"]["storage"]["uri"]).netloc
    assert container["command"][-1] == bucket, "the bucket Job creates the sample Space's bucket"
    assert env_of(container)["AWS_ENDPOINT_URL"] == operator_env(rendered)["AWS_ENDPOINT_URL"]
    secret = space["spec"]["storage"]["credentials"]["secretRef"]["name"]
    script = subprocess.run(["bash", "-c", f". {support.SCRIPT} && echo $SECRET $AGENT_SERVICE"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert script[0] == secret, "Deployment.sh creates the Secret the Space reads"
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert refs == {secret}
    agent = find(rendered, "Agent", "default-sre")
    assert script[1] == naming.agent("default-sre"), "Deployment.sh prints the port-forward of the sample Agent"
    roles = {o["metadata"]["name"]: o["spec"]["role"] for o in rendered if o["kind"] == "ModelServer"}
    assert roles[agent["spec"]["model"]] == "generation" and roles[agent["spec"]["embedder"]] == "embedding"
    assert space["spec"]["index"]["embedder"] == agent["spec"]["embedder"]
    assert agent["spec"]["spaces"] == ["default-logs"]


# ---------------------------------------------------------------- Loki and Weaviate


def test_the_loki_configuration_is_valid_for_the_real_loki(rendered, tmp_path):
    config = tmp_path / "loki.yaml"
    config.write_text(find(rendered, "ConfigMap", "loki")["data"]["loki.yaml"])
    loki = binary("loki", "LOKI_VERSION")
    result = subprocess.run([str(loki), f"-config.file={config}", "-verify-config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # and it can fail: an unknown field is refused
    config.write_text(config.read_text().replace("retention_enabled", "retention_enabeld"))
    result = subprocess.run([str(loki), f"-config.file={config}", "-verify-config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_loki_and_weaviate_run_the_versions_the_tests_run_against(rendered):
    pinned = versions()
    images = {c["name"]: c["image"] for o in rendered for c in support.containers(o)}
    assert images["loki"].split("@")[0] == f"grafana/loki:{pinned['LOKI_VERSION'].lstrip('v')}"
    assert images["weaviate"].split("@")[0].endswith(f"/weaviate:{pinned['WEAVIATE_VERSION'].lstrip('v')}")


def test_weaviate_flushes_its_memtables_as_the_benchmarked_one_does(rendered):
    from harness.servers import WEAVIATE_MEMTABLES

    weaviate = find(rendered, "StatefulSet", "weaviate")
    env = env_of(next(c for c in support.containers(weaviate) if c["name"] == "weaviate"))
    assert {k: env.get(k) for k in WEAVIATE_MEMTABLES} == WEAVIATE_MEMTABLES


# ---------------------------------------------------------------- network

# Who may reach each store that deploy/ runs, by the pods' app.kubernetes.io/name: the
# stores take anonymous requests (Weaviate, Loki) or keys alone (S3).
CLIENTS = {
    "weaviate": {"monologue-operator", "indexer", "agent"},
    "loki": {"log-collector", "shipper"},
    "s3": {"s3-bucket", "shipper", "indexer", "agent", "model-server"},
}


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


def admitted(policy: dict, labels: dict, namespace: str) -> bool:
    """Whether a pod with these labels, in this namespace (of any labels), may reach the
    policy's pods: a peer without a namespaceSelector is the policy's own namespace."""
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            same = namespace == policy["metadata"]["namespace"]
            if (peer.get("namespaceSelector") == {} or ("namespaceSelector" not in peer and same)) \
                    and selects(peer.get("podSelector", {}), labels):
                return True
    return False


def pod_labels(objects: list[dict]) -> list[dict]:
    return [o["spec"]["template"]["metadata"]["labels"] for o in objects
            if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}]


def test_each_store_admits_exactly_the_parts_that_use_it(rendered):
    deployed, children = pod_labels(rendered), pod_labels(operator_children(rendered))
    name = lambda labels: labels["app.kubernetes.io/name"]  # noqa: E731
    policies = {p["metadata"]["name"]: p for p in rendered if p["kind"] == "NetworkPolicy"}
    assert set(policies) == set(CLIENTS)
    for store, clients in CLIENTS.items():
        spec = policies[store]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert [name(p) for p in deployed + children if selects(spec["podSelector"], p)] == [store]
        assert {name(p) for p in deployed + children if admitted(policies[store], p, NAMESPACE)} == clients
        # The operator runs a Space's and an Agent's parts in their own namespace.
        assert ({name(p) for p in children if admitted(policies[store], p, "shop")}
                == clients & {name(p) for p in children})


def test_the_parts_the_operator_runs_are_admitted_to_the_stores_they_are_configured_for(rendered):
    """A new child configured with a store's address fails here until the store admits it."""
    children = operator_children(rendered)
    configs = {c["metadata"]["name"]: json.dumps(c["data"]) for c in children if c["kind"] == "ConfigMap"}
    uses = set()
    for child in (c for c in children if c["kind"] == "Deployment"):
        pod = child["spec"]["template"]
        text = json.dumps(pod["spec"]["containers"]) + "".join(
            configs.get(v.get("configMap", {}).get("name"), "") for v in pod["spec"].get("volumes", []))
        uses |= {(pod["metadata"]["labels"]["app.kubernetes.io/name"], store) for store in CLIENTS
                 if f"{store}.{NAMESPACE}.svc" in text}
    assert uses == {("shipper", "loki"), ("shipper", "s3"), ("indexer", "s3"), ("indexer", "weaviate"),
                    ("agent", "s3"), ("agent", "weaviate")}
    assert all(part in CLIENTS[store] for part, store in uses)
