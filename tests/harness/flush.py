"""Waiting for a store to have written what it was given."""

from __future__ import annotations

import time


def wait_until_flushed(store, collection: str, timeout: float = 60.0) -> None:
    """Until Weaviate has flushed every object of the collection to disk (LanceDB writes to disk at once).

    Weaviate 1.35's BM25 (BlockMax WAND) ranks a collection that has nothing
    flushed yet by one query word alone (README, Weaviate): what these tests
    check is a Space that has been written before, as every following one has.
    Its nodes API counts only flushed objects."""
    from monologue.agent.memory import WeaviateStore

    if not isinstance(store, WeaviateStore):
        return
    wanted = store.count(collection)
    deadline = time.monotonic() + timeout
    while True:  # polled: Weaviate tells nothing when it flushes (10 s at most with the harness's settings)
        nodes = store.client.cluster.nodes(collection=collection, output="verbose")
        flushed = sum(shard.object_count for node in nodes for shard in node.shards or [])
        if flushed >= wanted:
            return
        assert time.monotonic() < deadline, f"Weaviate flushed {flushed} of {wanted} objects in {timeout} s"
        time.sleep(0.5)
