"""Pieces shared by the children of every kind: Deployments, S3 credentials, security."""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

from .naming import CONFIG_DIR
from .settings import Settings


def s3_env(credentials: Mapping | None, settings: Settings) -> list[dict]:
    """The standard AWS variables every monologue component reads.

    The keys come from the referenced Secret through secretKeyRef: the kubelet
    reads the Secret, so the operator needs no access to Secrets at all."""
    env = []
    ref = (credentials or {}).get("secretRef")
    if ref:
        for variable, key_field, default in (
            ("AWS_ACCESS_KEY_ID", "accessKeyIdKey", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY"),
        ):
            env.append({"name": variable, "valueFrom": {
                "secretKeyRef": {"name": ref["name"], "key": ref.get(key_field) or default}}})
    if settings.aws_endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.aws_endpoint_url})
    if settings.aws_region:
        env.append({"name": "AWS_REGION", "value": settings.aws_region})
    return env


def config_hash(text: str) -> str:
    """Put on a pod template so that pods restart when their mounted config changes."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_json(config: Mapping) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def container(name: str, image: str, settings: Settings, **fields) -> dict:
    return {"name": name, "image": image, "imagePullPolicy": settings.image_pull_policy,
            "securityContext": CONTAINER_SECURITY, **fields}


def deployment(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    containers: list[dict],
    *,
    replicas: int = 1,
    volumes: list[dict] | None = None,
    annotations: Mapping[str, str] | None = None,
    single: bool = False,
) -> dict:
    """A Deployment; `single` for workers that must never run twice at once (a shipper
    writing one checkpoint), which a rolling update would do for a moment."""
    spec: dict = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(selector)},
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations or {})},
            "spec": {
                "securityContext": POD_SECURITY,
                "automountServiceAccountToken": False,
                "containers": containers,
                **({"volumes": volumes} if volumes else {}),
            },
        },
    }
    if single:
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def config_volume(configmap: str) -> tuple[dict, dict]:
    """The (volume, volumeMount) of a component's config, read-only at /etc/monologue."""
    return ({"name": "config", "configMap": {"name": configmap}},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})


def service(name: str, namespace: str, labels: Mapping, selector: Mapping, ports: list[dict]) -> dict:
    """A ClusterIP Service; each port targets the container port of the same name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": dict(selector),
            "ports": [{"targetPort": p["name"], "protocol": "TCP", **p} for p in ports],
        },
    }

