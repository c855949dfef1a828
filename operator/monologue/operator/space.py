"""Space: its Weaviate collection, its ConfigMap (space.json), its indexer, and for a
loki source its shipper. A view (source.view) reads its parent's Parquet, so it
gets no shipper and inherits the storage of the Space its chain of views ends in.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping
from urllib.parse import urlparse

import kopf

from . import naming, pods
from .conditions import condition
from .k8s import KubeError
from .naming import API_VERSION
from .reconciling import (
    Context, InvalidSpec, Outcome, Problem, Unavailable, Waiting, apply_children,
    publish, retry_delay, status_of, worst,
)
from .settings import Settings
from .vectorstore import VectorStoreUnavailable

KIND = "Space"
SHIPPER_HTTP_PORT = 8080  # the shipper's /metrics, /healthz and /readyz
INDEXER_HTTP_PORT = 8080  # the indexer's /metrics, /healthz and /readyz


class SpaceNotFound(Waiting):
    reason = "SpaceNotFound"


# ---------------------------------------------------------------- validation and lookups


def validate(spec: Mapping) -> None:
    """What the CRD schema cannot check."""
    patterns = spec.get("index", {}).get("redact", {}).get("extraPatterns", [])
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as e:
            raise InvalidSpec(
                f"spec.index.redact.extraPatterns[{i}] {pattern!r} is not a valid regular expression: {e}"
            ) from None


def root_storage(body: Mapping, ctx: Context) -> Mapping:
    """The storage of a Space: its own, or for a view the storage of the loki Space its
    chain of views ends in (all in the Space's namespace)."""
    namespace = body["metadata"]["namespace"]
    chain = [body["metadata"]["name"]]
    current = body
    while "view" in current["spec"]["source"]:
        parent_name = current["spec"]["source"]["view"]["space"]
        if parent_name in chain:
            raise InvalidSpec(f"views form a cycle: {' -> '.join([*chain, parent_name])}")
        parent = ctx.kube.get(API_VERSION, KIND, namespace, parent_name)
        if parent is None:
            raise SpaceNotFound(f"Space {namespace}/{parent_name}, the source of view {chain[-1]}, does not exist")
        chain.append(parent_name)
        current = parent
    # "space" names whose objects these are: the data lives under its prefix.
    return {**current["spec"]["storage"], "space": current["metadata"]["name"]}


def s3_location(uri: str, namespace: str, space: str) -> tuple[str, str]:
    """(bucket, key prefix) of a Space's objects: <uri>/spaces/<namespace>/<space>."""
    parsed = urlparse(uri)
    root = parsed.path.strip("/")
    return parsed.netloc, "/".join(p for p in (root, "spaces", namespace, space) if p)


# ---------------------------------------------------------------- rendering (pure)


def space_config(body: Mapping, storage: Mapping, settings: Settings) -> dict:
    """space.json: what the indexer and the Agents read about a Space."""
    meta, spec = body["metadata"], body["spec"]
    source = spec["source"]
    if "loki" in source:
        rendered_source = {"loki": {"query": source["loki"]["query"], "start": source["loki"].get("start")}}
    else:
        rendered_source = {"view": {"space": source["view"]["space"], "where": source["view"]["where"]}}
    index = spec.get("index", {})
    embedder = index.get("embedder")
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        # The Space's own data root, so readers need no layout rules of their own.
        "storage": {"uri": "s3://{}/{}".format(*s3_location(
            storage["uri"], meta["namespace"], storage.get("space", meta["name"])))},
        "source": rendered_source,
        "collection": naming.collection_name(meta["namespace"], meta["name"]),
        # Where the Space's lines are remembered: a view recalls from the memory
        # of the Space whose objects it reads, filtered by its SQL.
        "memoryCollection": naming.collection_name(meta["namespace"], storage.get("space", meta["name"])),
        "vectorStore": {"kind": "weaviate", "url": settings.weaviate_url, "grpcPort": settings.weaviate_grpc_port},
        "embedder": {"endpoint": naming.model_endpoint(embedder, meta["namespace"])} if embedder else None,
        "index": {
            "redact": {"extraPatterns": list(index.get("redact", {}).get("extraPatterns", []))},
        },
        "retention": {"days": spec.get("retention", {}).get("days", 30)},
    }


def configmap(body: Mapping, config_text: str) -> dict:
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": naming.space_configmap(meta["name"]), "namespace": meta["namespace"],
                     "labels": naming.labels(KIND, meta["name"], "space-config")},
        "data": {"space.json": config_text},
    }


def indexer(body: Mapping, storage: Mapping, config_text: str, settings: Settings) -> dict:
    meta = body["metadata"]
    name = meta["name"]
    volume, mount = pods.config_volume(naming.space_configmap(name))
    container = pods.container(
        "indexer", settings.agent_image, settings,
        command=["monologue", "indexer", "--config", f"{naming.CONFIG_DIR}/space.json",
                 "--http-port", str(INDEXER_HTTP_PORT)],
        env=pods.s3_env(storage.get("credentials"), settings),
        volumeMounts=[mount],
        ports=[{"name": "http", "containerPort": INDEXER_HTTP_PORT, "protocol": "TCP"}],
        # /healthz fails after 10 minutes without progress (a hung call); /readyz while an outage pauses it.
        livenessProbe={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        readinessProbe={"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
    )
    return pods.deployment(
        naming.indexer(name), meta["namespace"], naming.labels(KIND, name, "indexer"),
        naming.selector(name, "indexer"), [container], volumes=[volume],
        annotations={"monologue.dev/config-hash": pods.config_hash(config_text)},
        # One indexer per Space: two would embed and insert the same new lines twice.
        single=True,
    )


def shipper_args(body: Mapping, storage: Mapping, settings: Settings) -> list[str]:
    """The flags of /loki-shipper (loki-shipper-go/internal/*/RegisterFlags). `--flag=value`
    throughout, so that a value starting with '-' is never taken for a flag. Credentials
    come from the standard AWS variables, the checkpoint lives beside the data in S3."""
    meta, loki = body["metadata"], body["spec"]["source"]["loki"]
    bucket, prefix = s3_location(storage["uri"], meta["namespace"], meta["name"])
    args = [f"--loki.url={settings.loki_url}", f"--loki.query={loki['query']}"]
    if loki.get("start"):
        args.append(f"--start={loki['start']}")
    args += [f"--s3.bucket={bucket}", f"--s3.prefix={prefix}"]
    if settings.aws_endpoint_url:
        args.append(f"--s3.endpoint={settings.aws_endpoint_url}")
    if settings.aws_region:
        args.append(f"--s3.region={settings.aws_region}")
    args.append(f"--s3.path-style={'true' if settings.s3_path_style else 'false'}")
    args.append(f"--http.listen-address=:{SHIPPER_HTTP_PORT}")
    return args


def shipper(body: Mapping, storage: Mapping, settings: Settings) -> dict:
    meta = body["metadata"]
    name = meta["name"]
    container = pods.container(
        "shipper", settings.shipper_image, settings,
        command=["/loki-shipper"], args=shipper_args(body, storage, settings),
        env=pods.s3_env(storage.get("credentials"), settings),
        ports=[{"name": "http", "containerPort": SHIPPER_HTTP_PORT, "protocol": "TCP"}],
        livenessProbe={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        readinessProbe={"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 10},
    )
    return pods.deployment(
        naming.shipper(name), meta["namespace"], naming.labels(KIND, name, "shipper"),
        naming.selector(name, "shipper"), [container],
        # Two shippers of one Space would race on its checkpoint.
        single=True,
    )


# ---------------------------------------------------------------- reconcile


def reconcile(body: Mapping, ctx: Context) -> Outcome:
    """Bring the collection and children of one Space to its spec; never raises for
    expected failures, which become conditions and the outcome's problem."""
    meta, spec = body["metadata"], body["spec"]
    namespace, name = meta["namespace"], meta["name"]
    collection = naming.collection_name(namespace, name)
    try:
        validate(spec)
        storage = root_storage(body, ctx)
    except Problem as problem:
        return Outcome(status_of(body, [], problem=problem, collection=collection), problem)
    except KubeError as e:
        problem = Unavailable(f"cannot read the parent Space: {e}", reason="KubernetesUnavailable")
        return Outcome(status_of(body, [], problem=problem, collection=collection), problem)

    problems: list[Problem] = []
    fields: dict = {"collection": collection}

    try:
        ctx.store.ensure_collection(collection, f"monologue Space {namespace}/{name}")
        stats = ctx.store.stats(collection)
        fields["linesIndexed"] = stats.lines
        if stats.newest:
            fields["lastIndexedTime"] = stats.newest
        parts = [condition("CollectionReady", True, "CollectionExists", f"Weaviate collection {collection}")]
    except VectorStoreUnavailable as e:
        problems.append(Unavailable(str(e), reason="VectorStoreUnavailable"))
        parts = [condition("CollectionReady", False, "VectorStoreUnavailable", str(e))]

    config_text = pods.to_json(space_config(body, storage, ctx.settings))
    # The ConfigMap has no condition of its own: the indexer cannot run without it.
    ready, _ = apply_children(
        ctx, body, [configmap(body, config_text), indexer(body, storage, config_text, ctx.settings)],
        "IndexerReady", f"Deployment {naming.indexer(name)} is up to date", problems)
    parts.append(ready)

    if "loki" in spec["source"]:
        ready, _ = apply_children(ctx, body, [shipper(body, storage, ctx.settings)], "ShipperReady",
                                  f"Deployment {naming.shipper(name)} is up to date", problems)
        parts.append(ready)
    else:
        parts.append(_remove_shipper(ctx, namespace, name, problems))

    problem = worst(problems)
    what = "indexer" if "view" in spec["source"] else "shipper and indexer"
    status = status_of(body, parts, f"collection {collection}, {what} deployed", problem=problem, **fields)
    return Outcome(status, problem)


def _remove_shipper(ctx: Context, namespace: str, name: str, problems: list[Problem]) -> dict:
    """A Space that became a view keeps no shipper."""
    try:
        ctx.kube.delete("apps/v1", "Deployment", namespace, naming.shipper(name))
    except KubeError as e:
        problems.append(Unavailable(str(e), reason="KubernetesUnavailable"))
        return condition("ShipperReady", False, "DeleteFailed", str(e))
    return condition("ShipperReady", True, "NotNeeded", "a view reads its parent's Parquet; it has no shipper")


# ---------------------------------------------------------------- deletion


def deletes_collection(spec: Mapping, **_) -> bool:
    """Only Spaces with deletionPolicy Delete get a finalizer and a delete handler."""
    return spec.get("deletionPolicy") == "Delete"


def delete_collection(body: Mapping, memo, retry: int, logger: logging.Logger, **_) -> None:
    """kopf delete handler (Spaces with deletionPolicy Delete only): the collection lives
    outside the cluster, so no owner reference can remove it."""
    ctx: Context = memo.ctx
    collection = naming.collection_name(body["metadata"]["namespace"], body["metadata"]["name"])
    try:
        deleted = ctx.store.delete_collection(collection)
    except VectorStoreUnavailable as e:
        # The finalizer holds the Space until the collection is really gone.
        raise kopf.TemporaryError(f"cannot delete collection {collection} yet: {e}", delay=retry_delay(retry))
    logger.info("deletionPolicy Delete: collection %s %s", collection, "deleted" if deleted else "was already gone")


def handle(body: Mapping, patch: kopf.Patch, memo, retry: int, logger: logging.Logger, **_) -> None:
    """kopf handler: create, resume, spec update and periodic resync."""
    publish(reconcile(body, memo.ctx), body, patch, retry, logger)
