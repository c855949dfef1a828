"""Assemble Spaces, stores and models for the two modes.

Embedded: Spaces under a local directory (SpaceRegistry), LanceDB memory
beside them, llama.cpp in process. Cluster: the JSON configs the operator
renders (space.json, agent.json), Weaviate, model servers over gRPC.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .embedder import GrpcEmbedder, LocalEmbedder
from .generator import GrpcGenerator, LocalGenerator
from .memory import LanceStore, WeaviateStore
from .recall import SpaceMemory
from .space import Space, SpaceRegistry

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_GENERATION_MODEL = "qwen2.5-coder-0.5b-instruct"


# ---------------------------------------------------------------- embedded


@lru_cache(maxsize=None)
def local_embedder(model: str = DEFAULT_EMBEDDING_MODEL) -> LocalEmbedder:
    return LocalEmbedder(model)


def embedded_memory(registry: SpaceRegistry, name: str) -> SpaceMemory:
    space = registry.get(name)
    return SpaceMemory(space, LanceStore(str(registry.memory_dir(space))))


# ---------------------------------------------------------------- cluster


def space_from_config(config: dict) -> Space:
    source = config.get("source") or {}
    view = source.get("view") or {}
    return Space(
        name=config["name"],
        uri=config["storage"]["uri"],
        where=view.get("where", ""),
        collection=config.get("memoryCollection") or config["collection"],
        extra_patterns=list((config.get("index") or {}).get("redact", {}).get("extraPatterns", [])),
    )


def store_from_config(config: dict):
    store = config["vectorStore"]
    if store.get("kind", "weaviate") == "weaviate":
        return WeaviateStore(store["url"], int(store.get("grpcPort", 50051)))
    if store["kind"] == "lancedb":
        return LanceStore(store["uri"])
    raise ValueError(f"unknown vectorStore kind {store['kind']!r}")


def embedder_from_config(endpoint: dict | None):
    if endpoint and endpoint.get("endpoint"):
        return GrpcEmbedder(endpoint["endpoint"])
    return local_embedder()


def generator_from_config(endpoint: dict | None):
    if endpoint and endpoint.get("endpoint"):
        return GrpcGenerator(endpoint["endpoint"])
    return LocalGenerator(DEFAULT_GENERATION_MODEL)


def load_config(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: cannot read config {path}: {err}") from err
