"""ModelServer: a Deployment and a Service running monologue-model-server. ModelLoaded
comes from the Deployment's ready pods, whose readiness is the server's gRPC health
(NOT_SERVING until the model is loaded); the drift watch re-reconciles when the
Deployment's status changes."""

from __future__ import annotations

import logging
import posixpath
from typing import Mapping

import kopf

from . import naming, pods
from .conditions import condition
from .naming import GRPC_PORT, MODEL_HTTP_PORT
from .reconciling import Context, Outcome, Problem, apply_children, publish, status_of, worst
from .settings import Settings

KIND = "ModelServer"
MODEL_DIR = "/models"


def model_source(model: Mapping) -> tuple[str, str]:
    """(the server's --model argument, the model's display name)."""
    if "packaged" in model:
        return model["packaged"], model["packaged"]
    if "s3" in model:
        return model["s3"], posixpath.basename(model["s3"])
    path = posixpath.join(MODEL_DIR, model["volume"]["path"])
    return path, posixpath.basename(path)


def server_args(spec: Mapping) -> list[str]:
    model = spec["model"]
    source, _ = model_source(model)
    args = ["--model", source, "--role", spec["role"]]
    if model.get("sha256"):
        args += ["--sha256", model["sha256"]]
    args += [
        "--context-size", str(spec.get("contextSize", 4096)),
        "--threads", str(spec.get("threads", 2)),
        "--grpc-port", str(GRPC_PORT),
        "--http-port", str(MODEL_HTTP_PORT),
    ]
    if spec["role"] == "generation":
        args += ["--parallel", str(spec.get("parallel", 4))]
    return args


def deployment(body: Mapping, settings: Settings) -> dict:
    meta, spec = body["metadata"], body["spec"]
    name = meta["name"]
    model = spec["model"]
    volumes, mounts = [], []
    if "volume" in model:
        volumes.append({"name": "model", "persistentVolumeClaim": {
            "claimName": model["volume"]["claimName"], "readOnly": True}})
        mounts.append({"name": "model", "mountPath": MODEL_DIR, "readOnly": True})
    container = pods.container(
        "model-server", settings.model_server_image, settings,
        command=["monologue-model-server"], args=server_args(spec),
        ports=[{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
               {"name": "http", "containerPort": MODEL_HTTP_PORT, "protocol": "TCP"}],
        env=pods.s3_env(model.get("credentials"), settings) if "s3" in model else [],
        # Loading (or downloading) a model takes a while: readiness only, no liveness
        # probe that would kill a pod still loading.
        readinessProbe={"grpc": {"port": GRPC_PORT}, "periodSeconds": 5, "failureThreshold": 2},
        resources=spec.get("resources", {}),
        **({"volumeMounts": mounts} if mounts else {}),
    )
    return pods.deployment(
        naming.model(name), meta["namespace"], naming.labels(KIND, name, "model-server"),
        naming.selector(name, "model-server"), [container], replicas=spec.get("replicas", 1),
        volumes=volumes,
    )


def service(body: Mapping) -> dict:
    meta = body["metadata"]
    name = meta["name"]
    return pods.service(naming.model(name), meta["namespace"], naming.labels(KIND, name, "model-server"),
                        naming.selector(name, "model-server"),
                        [{"name": "grpc", "port": GRPC_PORT, "appProtocol": "grpc"},
                         {"name": "http", "port": MODEL_HTTP_PORT}])


def model_loaded(replicas: int, ready: int) -> dict:
    if replicas == 0:
        return condition("ModelLoaded", False, "ScaledToZero", "spec.replicas is 0")
    if ready == 0:
        return condition("ModelLoaded", False, "PodsNotReady",
                         f"0/{replicas} pods pass the gRPC health check (the model loads before it serves)")
    return condition("ModelLoaded", True, "PodsReady", f"{ready}/{replicas} pods serve the model")


def reconcile(body: Mapping, ctx: Context) -> Outcome:
    meta, spec = body["metadata"], body["spec"]
    name = meta["name"]
    _, display = model_source(spec["model"])
    problems: list[Problem] = []
    deployed, applied = apply_children(
        ctx, body, [deployment(body, ctx.settings), service(body)], "Deployed",
        f"Deployment and Service {naming.model(name)} are up to date", problems)
    parts = [deployed]
    # The apply response carries the Deployment's status: no extra read.
    ready = int(((applied[0] if applied else {}).get("status") or {}).get("readyReplicas") or 0)
    parts.append(model_loaded(spec.get("replicas", 1), ready))
    problem = worst(problems)
    status = status_of(body, parts, f"{display} served at {naming.model_endpoint(name, meta['namespace'])}",
                       problem=problem, endpoint=naming.model_endpoint(name, meta["namespace"]),
                       model=display, readyReplicas=ready)
    return Outcome(status, problem)


def handle(body: Mapping, patch: kopf.Patch, memo, retry: int, logger: logging.Logger, **_) -> None:
    """kopf handler: create, resume, spec update and periodic resync."""
    publish(reconcile(body, memo.ctx), body, patch, retry, logger)
