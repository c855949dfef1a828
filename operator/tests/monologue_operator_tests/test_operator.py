"""The operator against the real kube-apiserver + etcd and the real Weaviate.

No kubelet and no controller-manager run here: Deployments are stored but get
no pods, and owner references are not garbage-collected, so deletion tests
assert what the operator itself does (the collection) and that the owner
references are right.
"""

from __future__ import annotations

import json
import time

import pytest

from monologue_operator_tests.conftest import condition, wait_for
from monologue_operator_tests.manifests import agent, modelserver, space, view
from monologue.operator.naming import collection_name


def owned_by(obj, owner: dict) -> bool:
    refs = obj.metadata.owner_references or []
    return any(r.uid == owner["metadata"]["uid"] and r.controller and r.kind == owner["kind"] for r in refs)


def ready(cluster, plural, namespace, name, status="True", reason=None):
    obj = cluster.get(plural, namespace, name)
    cond = condition(obj, "Ready")
    if cond.get("status") == status and (reason is None or cond.get("reason") == reason) \
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


def test_space_gets_its_collection_and_children_within_two_seconds(cluster, namespace, operator, weaviate_client):
    started = time.monotonic()
    cluster.apply(space("checkout"), namespace)
    collection = collection_name(namespace, "checkout")

    def everything_there():
        return (weaviate_client.collections.exists(collection)
                and cluster.configmap(namespace, "checkout-space")
                and cluster.deployment(namespace, "checkout-indexer")
                and cluster.deployment(namespace, "checkout-shipper"))

    wait_for(everything_there, 2.0, "the collection, ConfigMap, indexer and shipper")
    elapsed = time.monotonic() - started
    obj = wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "Ready=True")
    assert elapsed < 2.0
    assert obj["status"]["collection"] == collection
    assert obj["status"]["linesIndexed"] == 0
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]} == {
        "Ready": "True", "CollectionReady": "True", "ShipperReady": "True", "IndexerReady": "True"}
    # Retain needs no finalizer: deleting the Space never waits for the operator.
    assert not obj["metadata"].get("finalizers")

    config = json.loads(cluster.configmap(namespace, "checkout-space").data["space.json"])
    assert config == {
        "name": "checkout",
        "namespace": namespace,
        "storage": {"uri": f"s3://logs/prod/spaces/{namespace}/checkout"},
        "source": {"loki": {"query": '{app="checkout"} |= "error"', "start": "2025-01-01T00:00:00Z"}},
        "collection": collection,
        "memoryCollection": collection,
        "vectorStore": {"kind": "weaviate", "url": operator.env["WEAVIATE_URL"],
                        "grpcPort": int(operator.env["WEAVIATE_GRPC_PORT"])},
        "embedder": {"endpoint": f"minilm-model.{namespace}.svc:50051"},
        "index": {"redact": {"extraPatterns": []}},
        "retention": {"days": 30},
    }

    indexer = cluster.deployment(namespace, "checkout-indexer")
    shipper = cluster.deployment(namespace, "checkout-shipper")
    for child in (indexer, shipper, cluster.configmap(namespace, "checkout-space")):
        assert owned_by(child, obj), child.metadata.name
    pod = indexer.spec.template.spec
    assert pod.containers[0].command == ["monologue", "indexer", "--config", "/etc/monologue/space.json",
                                         "--http-port", "8080"]
    assert pod.volumes[0].config_map.name == "checkout-space"
    assert pod.containers[0].volume_mounts[0].mount_path == "/etc/monologue"
    # its --http-port, probed by the kubelet
    assert pod.containers[0].ports[0].container_port == 8080
    assert pod.containers[0].liveness_probe.http_get.path == "/healthz"
    assert pod.containers[0].readiness_probe.http_get.path == "/readyz"
    env = {e.name: e for e in pod.containers[0].env}
    assert env["AWS_ACCESS_KEY_ID"].value_from.secret_key_ref.name == "s3-keys"
    assert env["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref.key == "AWS_SECRET_ACCESS_KEY"
    assert env["AWS_ENDPOINT_URL"].value == "http://s3.test:9000"
    assert env["AWS_REGION"].value == "eu-west-1"
    container = shipper.spec.template.spec.containers[0]
    assert container.image == "monologue/loki-shipper:0.1.0"
    assert container.command == ["/loki-shipper"]
    assert container.args == [
        "--loki.url=http://loki.test:3100", '--loki.query={app="checkout"} |= "error"',
        "--start=2025-01-01T00:00:00Z", "--s3.bucket=logs", f"--s3.prefix=prod/spaces/{namespace}/checkout",
        "--s3.endpoint=http://s3.test:9000", "--s3.region=eu-west-1", "--s3.path-style=true",
        "--http.listen-address=:8080",
    ]
    assert container.readiness_probe.http_get.path == "/readyz"
    assert shipper.spec.strategy.type == "Recreate"

    schema = weaviate_client.collections.get(collection).config.get()
    assert {p.name for p in schema.properties} == {
        "text", "terms", "template_id", "template", "level", "labels", "timestamp", "line_id", "space"}


def test_a_view_gets_no_shipper_and_reads_its_parents_storage(cluster, namespace, operator, weaviate_client):
    cluster.apply(view("errors", "checkout"), namespace)
    missing = wait_for(lambda: ready(cluster, "spaces", namespace, "errors", "False", "SpaceNotFound"),
                       5, "the view waiting for its parent")
    assert "checkout" in condition(missing)["message"]

    cluster.apply(space("checkout"), namespace)  # the parent appears: the view recovers by itself
    obj = wait_for(lambda: ready(cluster, "spaces", namespace, "errors"), 5, "the view Ready")
    assert condition(obj, "ShipperReady")["reason"] == "NotNeeded"
    assert cluster.deployment(namespace, "errors-shipper") is None
    assert cluster.deployment(namespace, "errors-indexer") is not None
    assert weaviate_client.collections.exists(collection_name(namespace, "errors"))
    config = json.loads(cluster.configmap(namespace, "errors-space").data["space.json"])
    assert config["storage"] == {"uri": f"s3://logs/prod/spaces/{namespace}/checkout"}  # the parent's data
    assert config["memoryCollection"] == collection_name(namespace, "checkout")
    assert config["source"] == {"view": {"space": "checkout", "where": "level = 'error'"}}
    assert config["embedder"] is None
    env = {e.name: e for e in cluster.deployment(namespace, "errors-indexer").spec.template.spec.containers[0].env}
    assert env["AWS_ACCESS_KEY_ID"].value_from.secret_key_ref.name == "s3-keys"  # the parent's keys


def test_a_spec_update_reaches_the_children(cluster, namespace, operator):
    cluster.apply(space("checkout"), namespace)
    wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "Ready")
    hash_before = cluster.deployment(namespace, "checkout-indexer").spec.template.metadata.annotations

    cluster.apply(space("checkout", query='{app="checkout"} |= "timeout"', index={"redact": {"extraPatterns": ["tok-[0-9]+"]}}), namespace)
    obj = wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "Ready after the update")
    assert obj["metadata"]["generation"] == 2
    args = cluster.deployment(namespace, "checkout-shipper").spec.template.spec.containers[0].args
    assert '--loki.query={app="checkout"} |= "timeout"' in args
    config = json.loads(cluster.configmap(namespace, "checkout-space").data["space.json"])
    assert config["index"]["redact"]["extraPatterns"] == ["tok-[0-9]+"]
    assert config["embedder"] is None
    # The indexer restarts on a new config: its pod template carries the config's hash.
    assert cluster.deployment(namespace, "checkout-indexer").spec.template.metadata.annotations != hash_before

    # Turning the Space into a view removes its shipper.
    cluster.kubectl("patch", "space", "checkout", "-n", namespace, "--type=json", "-p", json.dumps([
        {"op": "remove", "path": "/spec/storage"},
        {"op": "replace", "path": "/spec/source", "value": {"view": {"space": "other", "where": "true"}}},
    ]))
    wait_for(lambda: ready(cluster, "spaces", namespace, "checkout", "False", "SpaceNotFound"), 5, "SpaceNotFound")
    cluster.apply(space("other"), namespace)
    wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "the view Ready")
    assert cluster.deployment(namespace, "checkout-shipper") is None


def test_drift_is_repaired(cluster, namespace, operator):
    cluster.apply(space("checkout"), namespace)
    cluster.apply(agent("sre", ["checkout"]), namespace)
    wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "the Space Ready")
    wait_for(lambda: ready(cluster, "agents", namespace, "sre"), 5, "the Agent Ready")

    cluster.kubectl("set", "image", "-n", namespace, "deployment/checkout-shipper", "shipper=evil:latest")
    wait_for(lambda: cluster.deployment(namespace, "checkout-shipper").spec.template.spec.containers[0].image
             == "monologue/loki-shipper:0.1.0", 5, "the shipper image restored")

    cluster.kubectl("scale", "-n", namespace, "deployment/checkout-indexer", "--replicas=3")
    wait_for(lambda: cluster.deployment(namespace, "checkout-indexer").spec.replicas == 1, 5, "one indexer again")

    cluster.kubectl("delete", "configmap", "-n", namespace, "checkout-space")
    wait_for(lambda: cluster.configmap(namespace, "checkout-space"), 5, "the ConfigMap re-created")

    cluster.kubectl("delete", "service", "-n", namespace, "sre-agent")
    service = wait_for(lambda: cluster.service(namespace, "sre-agent"), 5, "the Agent's Service re-created")
    assert service.spec.ports[0].port == 50051 and service.spec.ports[0].name == "grpc"

    cluster.kubectl("patch", "configmap", "-n", namespace, "sre-agent", "--type=merge",
                    "-p", json.dumps({"data": {"agent.json": "{}"}}))
    wait_for(lambda: cluster.configmap(namespace, "sre-agent").data["agent.json"] != "{}", 5, "agent.json restored")


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_honours_the_deletion_policy(cluster, namespace, operator, weaviate_client, policy):
    cluster.apply(space("checkout", policy=policy), namespace)
    obj = wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "Ready")
    collection = obj["status"]["collection"]
    assert weaviate_client.collections.exists(collection)
    assert bool(obj["metadata"].get("finalizers")) == (policy == "Delete")

    cluster.kubectl("delete", "space", "checkout", "-n", namespace, "--wait=false")
    wait_for(lambda: cluster.get("spaces", namespace, "checkout") is None, 10, "the Space gone")
    assert weaviate_client.collections.exists(collection) == (policy == "Retain")
    if policy == "Retain":
        weaviate_client.collections.delete(collection)


def test_an_agent_naming_a_missing_space_recovers_when_it_appears(cluster, namespace, operator):
    cluster.apply(agent("sre", ["checkout", "payments"], topK=5, systemPrompt="Be brief."), namespace)
    obj = wait_for(lambda: ready(cluster, "agents", namespace, "sre", "False", "SpaceNotFound"), 5, "SpaceNotFound")
    assert "checkout, payments" in condition(obj)["message"]
    assert cluster.deployment(namespace, "sre-agent") is None

    cluster.apply(space("checkout"), namespace)
    obj = wait_for(lambda: ready(cluster, "agents", namespace, "sre", "False", "SpaceNotFound")
                   if "payments" in condition(cluster.get("agents", namespace, "sre"))["message"]
                   and "checkout" not in condition(cluster.get("agents", namespace, "sre"))["message"]
                   else None, 5, "only payments missing")
    cluster.apply(space("payments"), namespace)
    obj = wait_for(lambda: ready(cluster, "agents", namespace, "sre"), 5, "the Agent Ready")
    assert obj["status"]["endpoint"] == f"sre-agent.{namespace}.svc:50051"

    config = json.loads(cluster.configmap(namespace, "sre-agent").data["agent.json"])
    assert [s["name"] for s in config["spaces"]] == ["checkout", "payments"]
    assert config["spaces"][0]["collection"] == collection_name(namespace, "checkout")
    assert config["model"] == {"endpoint": f"smollm-model.{namespace}.svc:50051"}
    assert config["embedder"] == {"endpoint": f"minilm-model.{namespace}.svc:50051"}
    assert (config["systemPrompt"], config["topK"], config["listen"]) == ("Be brief.", 5, "0.0.0.0:50051")

    deployment = cluster.deployment(namespace, "sre-agent")
    container = deployment.spec.template.spec.containers[0]
    assert container.command == ["monologue", "agent", "serve", "--config", "/etc/monologue/agent.json",
                                 "--http-port", "8080"]
    assert container.readiness_probe.grpc.port == 50051
    assert {p.name: p.container_port for p in container.ports} == {"grpc": 50051, "http": 8080}
    assert {p.name: p.port for p in cluster.service(namespace, "sre-agent").spec.ports} == {"grpc": 50051, "http": 8080}
    assert owned_by(deployment, obj) and owned_by(cluster.service(namespace, "sre-agent"), obj)


def test_agent_spaces_with_different_credentials_are_an_invalid_spec(cluster, namespace, operator):
    cluster.apply(space("a"), namespace)
    other = space("b")
    other["spec"]["storage"]["credentials"]["secretRef"]["name"] = "other-keys"
    cluster.apply(other, namespace)
    cluster.apply(agent("sre", ["a", "b"]), namespace)
    obj = wait_for(lambda: ready(cluster, "agents", namespace, "sre", "False", "InvalidSpec"), 5, "InvalidSpec")
    assert "other-keys" in condition(obj)["message"]


def test_model_server_children_and_model_loaded_from_pod_readiness(cluster, namespace, operator):
    cluster.apply(modelserver("smollm"), namespace)
    obj = wait_for(lambda: ready(cluster, "modelservers", namespace, "smollm", "False", "PodsNotReady"),
                   5, "ModelLoaded=False: no pods run here")
    assert obj["status"]["endpoint"] == f"smollm-model.{namespace}.svc:50051"
    assert obj["status"]["model"] == "smollm2-135m-instruct"
    deployment = cluster.deployment(namespace, "smollm-model")
    container = deployment.spec.template.spec.containers[0]
    assert container.command == ["monologue-model-server"]
    assert container.args == ["--model", "smollm2-135m-instruct", "--role", "generation", "--context-size", "4096",
                              "--threads", "2", "--grpc-port", "50051", "--http-port", "8080",
                              "--parallel", "4"]
    assert container.readiness_probe.grpc.port == 50051
    assert {p.name: p.port for p in cluster.service(namespace, "smollm-model").spec.ports} == {"grpc": 50051, "http": 8080}
    assert owned_by(deployment, obj)

    # What the deployment controller would write once a pod passes its gRPC health check.
    cluster.apps.patch_namespaced_deployment_status("smollm-model", namespace, {
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}})
    obj = wait_for(lambda: ready(cluster, "modelservers", namespace, "smollm"), 5, "ModelLoaded=True")
    assert condition(obj, "ModelLoaded")["reason"] == "PodsReady"
    assert obj["status"]["readyReplicas"] == 1


def test_a_volume_model_is_mounted_read_only(cluster, namespace, operator):
    sha = "a" * 64
    cluster.apply(modelserver("qwen", volume={"claimName": "models", "path": "qwen/q4.gguf"}, sha256=sha), namespace)
    deployment = wait_for(lambda: cluster.deployment(namespace, "qwen-model"), 5, "the Deployment")
    pod = deployment.spec.template.spec
    assert pod.volumes[0].persistent_volume_claim.claim_name == "models"
    assert pod.containers[0].volume_mounts[0].read_only
    args = pod.containers[0].args
    assert args[:2] == ["--model", "/models/qwen/q4.gguf"] and args[args.index("--sha256") + 1] == sha


def test_an_invalid_spec_is_reported_once_without_retries(cluster, namespace, operator):
    cluster.apply(space("bad", index={"redact": {"extraPatterns": ["ok", "(unclosed"]}}), namespace)
    obj = wait_for(lambda: ready(cluster, "spaces", namespace, "bad", "False", "InvalidSpec"), 5, "InvalidSpec")
    assert "extraPatterns[1]" in condition(obj)["message"] and "(unclosed" in condition(obj)["message"]
    assert cluster.deployment(namespace, "bad-indexer") is None

    # A retry storm would show as more handler runs and more writes: watch for a while.
    version = obj["metadata"]["resourceVersion"]
    time.sleep(3)  # an observation window, not a wait for something to happen
    assert cluster.get("spaces", namespace, "bad")["metadata"]["resourceVersion"] == version
    runs = [m for m in operator.messages_about("Space", namespace, "bad") if m.startswith("Handler 'reconcile'")]
    assert len(runs) == 1, runs

    # Fixing the spec is all it takes.
    cluster.apply(space("bad"), namespace)
    wait_for(lambda: ready(cluster, "spaces", namespace, "bad"), 5, "Ready after the fix")


def test_the_operator_resumes_after_a_restart_without_duplicate_work(
        cluster, namespace, start_operator, operator_env, weaviate_client):
    # A fast resync refreshes the line count before the restart (and must be a no-op after it).
    env = {**operator_env, "MONOLOGUE_RESYNC_SECONDS": "1"}
    first = start_operator(env)
    cluster.apply(space("checkout", policy="Delete"), namespace)
    cluster.apply(agent("sre", ["checkout"]), namespace)
    cluster.apply(modelserver("smollm"), namespace)
    wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 5, "the Space Ready")
    wait_for(lambda: ready(cluster, "agents", namespace, "sre"), 5, "the Agent Ready")
    wait_for(lambda: ready(cluster, "modelservers", namespace, "smollm", "False", "PodsNotReady"), 5, "ModelServer")
    collection = weaviate_client.collections.get(collection_name(namespace, "checkout"))
    collection.data.insert({"text": "a line indexed before the restart"}, vector=[0.1, 0.2, 0.3])

    def versions():
        return {
            **{f"{p}/{n}": cluster.get(p, namespace, n)["metadata"]["resourceVersion"]
               for p, n in (("spaces", "checkout"), ("agents", "sre"), ("modelservers", "smollm"))},
            **{f"deploy/{n}": cluster.deployment(namespace, n).metadata.resource_version
               for n in ("checkout-shipper", "checkout-indexer", "sre-agent", "smollm-model")},
            **{f"cm/{n}": cluster.configmap(namespace, n).metadata.resource_version
               for n in ("checkout-space", "sre-agent")},
            **{f"svc/{n}": cluster.service(namespace, n).metadata.resource_version
               for n in ("sre-agent", "smollm-model")},
        }

    wait_for(lambda: cluster.get("spaces", namespace, "checkout")["status"]["linesIndexed"] == 1, 5,
             "the resync counting the line")
    first.stop()
    before = versions()
    second = start_operator(env)
    for kind, name in (("Space", "checkout"), ("Agent", "sre"), ("ModelServer", "smollm")):
        wait_for(lambda: any(m.startswith("Resuming is processed") for m in second.messages_about(kind, namespace, name)),
                 10, f"the {kind} resumed")
    wait_for(lambda: any("resync" in r["message"] for r in second.records()), 5, "a resync pass")
    assert versions() == before
    assert not any(m.startswith("Creation") for m in second.messages_about("Space", namespace, "checkout"))
    assert len(collection) == 1  # the collection was neither re-created nor emptied


def test_a_weaviate_outage_is_a_condition_and_a_retry(cluster, namespace, start_operator, operator_env, weaviate):
    from harness.proxy import TcpProxy

    http, grpc = TcpProxy(weaviate.host, weaviate.http_port), TcpProxy(weaviate.host, weaviate.grpc_port)
    http.down(), grpc.down()  # Weaviate unreachable from the start
    env = {**operator_env, "WEAVIATE_URL": f"http://127.0.0.1:{http.port}", "WEAVIATE_GRPC_PORT": str(grpc.port)}
    start_operator(env)
    try:
        cluster.apply(space("checkout"), namespace)
        obj = wait_for(lambda: ready(cluster, "spaces", namespace, "checkout", "False", "VectorStoreUnavailable"),
                       5, "VectorStoreUnavailable")
        assert f"127.0.0.1:{http.port}" in condition(obj)["message"]
        assert condition(obj, "CollectionReady")["status"] == "False"
        # Everything that does not need Weaviate is in place already.
        assert cluster.deployment(namespace, "checkout-shipper") is not None

        http.up(), grpc.up()  # Weaviate is back: the retry (with backoff) succeeds
        wait_for(lambda: ready(cluster, "spaces", namespace, "checkout"), 15, "Ready after the outage")
    finally:
        http.close(), grpc.close()


def test_an_agent_follows_changes_of_its_spaces(cluster, namespace, operator):
    cluster.apply(space("checkout"), namespace)
    cluster.apply(agent("sre", ["checkout"]), namespace)
    wait_for(lambda: ready(cluster, "agents", namespace, "sre"), 5, "the Agent Ready")

    cluster.apply(space("checkout", index={"redact": {"extraPatterns": ["tok-[0-9]+"]}}), namespace)

    def agent_sees_it():
        config = json.loads(cluster.configmap(namespace, "sre-agent").data["agent.json"])
        return config["spaces"][0]["index"]["redact"]["extraPatterns"] == ["tok-[0-9]+"]

    wait_for(agent_sees_it, 5, "agent.json with the Space's new index settings")
    cluster.kubectl("delete", "space", "checkout", "-n", namespace)
    wait_for(lambda: ready(cluster, "agents", namespace, "sre", "False", "SpaceNotFound"), 5,
             "SpaceNotFound once the Space is gone")
