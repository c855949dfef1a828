"""Small builders of the custom resources the tests apply."""

from __future__ import annotations


def space(name: str, query: str = '{app="checkout"} |= "error"', policy: str = "Retain", **spec) -> dict:
    return {
        "apiVersion": "monologue.dev/v1alpha1",
        "kind": "Space",
        "metadata": {"name": name},
        "spec": {
            "source": {"loki": {"query": query, "start": "2025-01-01T00:00:00Z"}},
            "storage": {"uri": "s3://logs/prod", "credentials": {"secretRef": {"name": "s3-keys"}}},
            "index": {"embedder": "minilm"},
            "deletionPolicy": policy,
            **spec,
        },
    }


def view(name: str, parent: str, where: str = "level = 'error'") -> dict:
    return {
        "apiVersion": "monologue.dev/v1alpha1",
        "kind": "Space",
        "metadata": {"name": name},
        "spec": {"source": {"view": {"space": parent, "where": where}}},
    }


def agent(name: str, spaces: list[str], **spec) -> dict:
    return {
        "apiVersion": "monologue.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"spaces": spaces, "model": "smollm", "embedder": "minilm", **spec},
    }


def modelserver(name: str, role: str = "generation", **model) -> dict:
    return {
        "apiVersion": "monologue.dev/v1alpha1",
        "kind": "ModelServer",
        "metadata": {"name": name},
        "spec": {"role": role, "model": model or {"packaged": "smollm2-135m-instruct"}},
    }
