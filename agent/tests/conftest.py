"""Fixtures shared by the data-plane tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def local_embedder(embedding_model):
    from monologue.agent.embedder import LocalEmbedder

    return LocalEmbedder(str(embedding_model))
