"""The CRDs in the real kube-apiserver: the samples are accepted, invalid manifests are
rejected with a message that says what to fix, and `kubectl explain` documents them."""

from __future__ import annotations

import copy

import pytest
import yaml

from monologue_operator_tests.conftest import CRDS
from monologue_operator_tests.manifests import agent, modelserver, space, view


def test_the_samples_are_accepted(cluster, namespace):
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(CRDS / "samples"))
    assert result.stdout.count("created") == 4, result.stdout
    applied = cluster.get("spaces", namespace, "checkout-errors")
    # Defaults the schema fills in.
    assert applied["spec"]["storage"]["credentials"]["secretRef"]["accessKeyIdKey"] == "AWS_ACCESS_KEY_ID"
    assert cluster.get("agents", namespace, "checkout-sre")["spec"]["replicas"] == 1
    assert cluster.get("modelservers", namespace, "minilm")["spec"]["replicas"] == 1


def test_kubectl_explain_describes_the_fields(cluster):
    text = cluster.kubectl("explain", "space.spec.source.loki.query").stdout
    assert "LogQL" in text
    text = cluster.kubectl("explain", "modelserver.spec.model").stdout
    assert "exactly one of packaged, s3 or volume" in text
    text = cluster.kubectl("explain", "agent.status.endpoint").stdout
    assert "host:port" in text


def test_printer_columns(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(CRDS / "samples"))
    header = cluster.kubectl("get", "spaces", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "REASON", "LINES", "AGE"]
    header = cluster.kubectl("get", "modelservers", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "REASON", "MODEL", "ROLE", "AGE"]


def _without(manifest: dict, *path: str) -> dict:
    manifest = copy.deepcopy(manifest)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return manifest


def _with(manifest: dict, value, *path: str) -> dict:
    manifest = copy.deepcopy(manifest)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return manifest


BOTH_SOURCES = _with(space("s"), {"loki": {"query": '{app="a"}'}, "view": {"space": "p", "where": "true"}}, "spec", "source")
INVALID = [
    ("a Space with two sources", BOTH_SOURCES, "exactly one of loki or view"),
    ("a Space with no source", _with(space("s"), {}, "spec", "source"), "exactly one of loki or view"),
    ("a loki Space without storage", _without(space("s"), "spec", "storage"), "needs spec.storage"),
    ("a view with its own storage", _with(view("v", "p"), {"uri": "s3://b"}, "spec", "storage"), "leave spec.storage unset"),
    ("a view of itself", view("v", "v"), "cannot read from itself"),
    ("a query without a stream selector", space("s", query='|= "error"'), "starts with a stream selector"),
    ("a storage URI that is not s3", _with(space("s"), "gs://bucket", "spec", "storage", "uri"), "spec.storage.uri"),
    ("an unknown deletion policy", space("s", policy="Forget"), 'supported values: "Retain", "Delete"'),
    ("a retention of zero days", _with(space("s"), {"days": 0}, "spec", "retention"), "spec.retention.days"),
    ("a Space name too long for its children", _with(space("s"), "s" * 51, "metadata", "name"), "at most 50 characters"),
    ("an Agent without Spaces", agent("a", []), "spec.spaces"),
    ("an Agent with a topK of zero", agent("a", ["s"], topK=0), "spec.topK"),
    ("an Agent without a model", _without(agent("a", ["s"]), "spec", "model"), "spec.model: Required value"),
    ("an Agent name starting with a digit", _with(agent("a", ["s"]), "1agent", "metadata", "name"), "DNS label"),
    ("a ModelServer with two model sources",
     modelserver("m", packaged="smollm2-135m-instruct", s3="s3://b/m.gguf", sha256="a" * 64), "exactly one of packaged, s3 or volume"),
    ("an s3 model without sha256", modelserver("m", s3="s3://bucket/m.gguf"), "sha256 is required"),
    ("an unknown packaged model", modelserver("m", packaged="gpt-9"), "spec.model.packaged"),
    ("a short sha256", modelserver("m", s3="s3://bucket/m.gguf", sha256="abc"), "spec.model.sha256"),
    ("a volume path leaving the volume",
     modelserver("m", volume={"claimName": "c", "path": "../etc/x.gguf"}, sha256="a" * 64), "stay inside the volume"),
    ("an unknown role", _with(modelserver("m"), "chat", "spec", "role"), 'supported values: "generation", "embedding"'),
    ("a bad resource quantity", _with(modelserver("m"), {"limits": {"memory": "lots"}}, "spec", "resources"), "spec.resources.limits.memory"),
    ("an unknown field", _with(space("s"), "yes", "spec", "turbo"), 'unknown field "spec.turbo"'),
]


@pytest.mark.parametrize("manifest,message", [(m, msg) for _, m, msg in INVALID], ids=[case for case, _, _ in INVALID])
def test_invalid_manifests_are_rejected_with_a_useful_message(cluster, namespace, manifest, message):
    result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
                             input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, f"accepted: {manifest}"
    assert message in result.stderr, result.stderr


def test_the_packaged_models_are_the_model_servers_catalog():
    from monologue.model_server import catalog
    crd = yaml.safe_load((CRDS / "modelserver.yaml").read_text())
    model = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["model"]
    assert set(model["properties"]["packaged"]["enum"]) == set(catalog.CATALOG)
