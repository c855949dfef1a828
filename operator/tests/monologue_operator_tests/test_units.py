"""Pure functions of the operator: names, conditions, rendering, settings."""

from __future__ import annotations

import re

import pytest

from monologue.operator import conditions, modelserver, naming, space
from monologue.operator.settings import Settings, SettingsError


def test_collection_names_are_valid_weaviate_classes_deterministic_and_distinct():
    name = naming.collection_name("a-b", "c")
    assert re.fullmatch(r"[A-Z][_0-9A-Za-z]*", name)
    assert name == naming.collection_name("a-b", "c")
    # Both pairs read "a_b_c" once sanitised; the hash keeps them apart.
    assert name != naming.collection_name("a", "b-c")
    assert naming.collection_name("prod", "web.errors").startswith("Space_prod_web_errors_")


def test_a_condition_keeps_its_transition_time_while_its_status_holds():
    old = conditions.merge([], [conditions.condition("Ready", False, "Waiting")], 1, at="2025-01-01T00:00:00Z")
    same = conditions.merge(old, [conditions.condition("Ready", False, "StillWaiting", "x")], 2, at="2025-01-02T00:00:00Z")
    flipped = conditions.merge(same, [conditions.condition("Ready", True, "Reconciled")], 3, at="2025-01-03T00:00:00Z")
    assert same[0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2025-01-03T00:00:00Z"


def test_conditions_not_recomputed_are_kept_with_their_old_generation():
    old = conditions.merge([], [conditions.condition("Ready", True, "Reconciled"),
                                conditions.condition("CollectionReady", True, "CollectionExists")], 1)
    new = conditions.merge(old, [conditions.condition("Ready", False, "InvalidSpec")], 2)
    assert [(c["type"], c["observedGeneration"]) for c in new] == [("Ready", 2), ("CollectionReady", 1)]


def test_ready_takes_the_reason_of_the_first_false_condition():
    parts = [conditions.condition("CollectionReady", True, "CollectionExists"),
             conditions.condition("ShipperReady", False, "ApplyFailed", "boom")]
    assert conditions.ready(parts, "ok") == conditions.condition("Ready", False, "ApplyFailed", "boom")
    assert conditions.ready(parts[:1], "ok")["status"] == "True"


def test_an_unchanged_status_makes_an_empty_patch():
    status = {"observedGeneration": 1, "conditions": [{"type": "Ready"}], "collection": "C"}
    assert conditions.status_patch(status, dict(status)) == {}
    assert conditions.status_patch(status, {**status, "linesIndexed": 3}) == {"linesIndexed": 3}


@pytest.mark.parametrize("uri,bucket,prefix", [
    ("s3://logs", "logs", "spaces/ns/s"),
    ("s3://logs/", "logs", "spaces/ns/s"),
    ("s3://logs/team/a/", "logs", "team/a/spaces/ns/s"),
])
def test_the_s3_location_of_a_space(uri, bucket, prefix):
    assert space.s3_location(uri, "ns", "s") == (bucket, prefix)


def test_redaction_patterns_must_compile():
    space.validate({"index": {"redact": {"extraPatterns": [r"card=\d+"]}}})
    with pytest.raises(space.InvalidSpec, match=r"extraPatterns\[0\]"):
        space.validate({"index": {"redact": {"extraPatterns": ["[a-"]}}})


def test_model_sources():
    assert modelserver.model_source({"packaged": "all-minilm-l6-v2"}) == ("all-minilm-l6-v2", "all-minilm-l6-v2")
    assert modelserver.model_source({"s3": "s3://m/x/q4.gguf"}) == ("s3://m/x/q4.gguf", "q4.gguf")
    assert modelserver.model_source({"volume": {"claimName": "c", "path": "a/b.gguf"}}) == ("/models/a/b.gguf", "b.gguf")


def test_model_loaded_follows_ready_pods():
    assert modelserver.model_loaded(2, 0)["reason"] == "PodsNotReady"
    assert modelserver.model_loaded(2, 1)["status"] == "True"
    assert modelserver.model_loaded(0, 0)["reason"] == "ScaledToZero"


def test_settings_defaults_and_errors():
    s = Settings.from_env({})
    assert (s.agent_image, s.shipper_image, s.model_server_image) == (
        "monologue/agent:0.1.0", "monologue/loki-shipper:0.1.0", "monologue/model-server:0.1.0")
    assert s.weaviate_grpc_port == 50051 and not s.s3_path_style
    assert Settings.from_env({"AWS_ENDPOINT_URL": "http://minio:9000"}).s3_path_style
    assert Settings.from_env({"MONOLOGUE_IMAGE_TAG": "1.2.3"}).agent_image == "monologue/agent:1.2.3"
    for env, message in (({"WEAVIATE_URL": "weaviate:8080"}, "WEAVIATE_URL"),
                         ({"WEAVIATE_GRPC_PORT": "x"}, "WEAVIATE_GRPC_PORT"),
                         ({"MONOLOGUE_RESYNC_SECONDS": "0"}, "MONOLOGUE_RESYNC_SECONDS")):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(env)


def test_rbac_has_no_wildcards():
    import yaml

    from harness.process import ROOT

    docs = list(yaml.safe_load_all((ROOT / "deploy" / "operator" / "rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate"}
