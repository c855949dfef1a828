"""Agent: a ConfigMap (agent.json with its Spaces' space.json), a Deployment and a gRPC
Service. An Agent naming a missing Space is Ready=False (SpaceNotFound) and is
reconciled again when that Space appears (watches.wake_dependents)."""

from __future__ import annotations

import json
import logging
from typing import Mapping

import kopf

from . import naming, pods, space
from .conditions import condition
from .k8s import KubeError
from .naming import API_VERSION, GRPC_PORT
from .reconciling import (
    Context, InvalidSpec, Outcome, Problem, Unavailable, apply_children, publish,
    status_of, worst,
)
from .settings import Settings

AGENT_HTTP_PORT = 8080  # the agent's /metrics, /healthz and /readyz

KIND = "Agent"


def resolve_spaces(body: Mapping, ctx: Context) -> tuple[list[dict], Mapping | None]:
    """The space.json of each of the Agent's Spaces, and the S3 credentials they share."""
    namespace = body["metadata"]["namespace"]
    configs, missing, credentials = [], [], {}
    for name in body["spec"]["spaces"]:
        found = ctx.kube.get(API_VERSION, space.KIND, namespace, name)
        if found is None:
            missing.append(name)
            continue
        storage = space.root_storage(found, ctx)
        configs.append(space.space_config(found, storage, ctx.settings))
        credentials[name] = storage.get("credentials")
    if missing:
        raise space.SpaceNotFound(
            f"Space{'s' if len(missing) > 1 else ''} {', '.join(missing)} named in spec.spaces "
            f"{'do' if len(missing) > 1 else 'does'} not exist in namespace {namespace}"
        )
    # One pod has one set of AWS variables: all its Spaces must use the same keys.
    distinct = {json.dumps(c, sort_keys=True) for c in credentials.values()}
    if len(distinct) > 1:
        raise InvalidSpec(
            "the Spaces of one Agent must share their S3 credentials; these differ: "
            + ", ".join(f"{n}: {(c or {}).get('secretRef', {}).get('name', 'ambient')}" for n, c in credentials.items())
        )
    return configs, next(iter(credentials.values()), None)


def agent_config(body: Mapping, space_configs: list[dict]) -> dict:
    """agent.json: what `monologue agent serve` reads."""
    meta, spec = body["metadata"], body["spec"]
    namespace = meta["namespace"]
    embedder = spec.get("embedder")
    return {
        "name": meta["name"],
        "namespace": namespace,
        "spaces": space_configs,
        "model": {"endpoint": naming.model_endpoint(spec["model"], namespace)},
        "embedder": {"endpoint": naming.model_endpoint(embedder, namespace)} if embedder else None,
        "systemPrompt": spec.get("systemPrompt"),
        "topK": spec.get("topK", 8),
        "listen": f"0.0.0.0:{GRPC_PORT}",
    }


def configmap(body: Mapping, config_text: str) -> dict:
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": naming.agent(meta["name"]), "namespace": meta["namespace"],
                     "labels": naming.labels(KIND, meta["name"], "agent-config")},
        "data": {"agent.json": config_text},
    }


def deployment(body: Mapping, credentials: Mapping | None, config_text: str, settings: Settings) -> dict:
    meta, spec = body["metadata"], body["spec"]
    name = meta["name"]
    volume, mount = pods.config_volume(naming.agent(name))
    container = pods.container(
        "agent", settings.agent_image, settings,
        command=["monologue", "agent", "serve", "--config", f"{naming.CONFIG_DIR}/agent.json",
                 "--http-port", str(AGENT_HTTP_PORT)],
        ports=[{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
               {"name": "http", "containerPort": AGENT_HTTP_PORT, "protocol": "TCP"}],
        env=pods.s3_env(credentials, settings),
        volumeMounts=[mount],
        readinessProbe={"grpc": {"port": GRPC_PORT}, "periodSeconds": 5},
    )
    return pods.deployment(
        naming.agent(name), meta["namespace"], naming.labels(KIND, name, "agent"),
        naming.selector(name, "agent"), [container], replicas=spec.get("replicas", 1),
        volumes=[volume], annotations={"monologue.dev/config-hash": pods.config_hash(config_text)},
    )


def service(body: Mapping) -> dict:
    meta = body["metadata"]
    name = meta["name"]
    return pods.service(naming.agent(name), meta["namespace"], naming.labels(KIND, name, "agent"),
                        naming.selector(name, "agent"),
                        [{"name": "grpc", "port": GRPC_PORT, "appProtocol": "grpc"},
                         {"name": "http", "port": AGENT_HTTP_PORT}])


def reconcile(body: Mapping, ctx: Context) -> Outcome:
    meta = body["metadata"]
    endpoint = naming.agent_endpoint(meta["name"], meta["namespace"])
    try:
        space_configs, credentials = resolve_spaces(body, ctx)
    except Problem as problem:
        # The running Agent (if any) is left as it was: better stale Spaces than none.
        parts = [condition("SpacesResolved", False, problem.reason, problem.message)]
        return Outcome(status_of(body, parts, problem=problem, endpoint=endpoint), problem)
    except KubeError as e:
        problem = Unavailable(f"cannot read the Agent's Spaces: {e}", reason="KubernetesUnavailable")
        return Outcome(status_of(body, [], problem=problem, endpoint=endpoint), problem)

    problems: list[Problem] = []
    parts = [condition("SpacesResolved", True, "SpacesFound", f"{len(space_configs)} Space(s)")]
    config_text = pods.to_json(agent_config(body, space_configs))
    children = [configmap(body, config_text), deployment(body, credentials, config_text, ctx.settings), service(body)]
    deployed, _ = apply_children(ctx, body, children, "Deployed",
                                 f"Deployment and Service {naming.agent(meta['name'])} are up to date", problems)
    parts.append(deployed)
    problem = worst(problems)
    return Outcome(status_of(body, parts, f"deployed with {len(space_configs)} Space(s); gRPC at {endpoint}", problem=problem, endpoint=endpoint), problem)


def handle(body: Mapping, patch: kopf.Patch, memo, retry: int, logger: logging.Logger, **_) -> None:
    """kopf handler: create, resume, spec update and periodic resync."""
    publish(reconcile(body, memo.ctx), body, patch, retry, logger)
