"""The embedded mode's models: llama.cpp in process, the real packaged models."""

from __future__ import annotations

import threading
import time

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from monologue.agent.embedder import LocalEmbedder
from monologue.agent.generator import LocalGenerator


@pytest.fixture(scope="module")
def generator(generation_model):
    return LocalGenerator(str(generation_model), context_size=1024, parallel=2)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_an_answer_streams_in_pieces(generator):
    pieces = list(generator.generate(ask("Name three fruits."), max_tokens=16))
    assert len(pieces) > 2 and "".join(pieces).strip()


def test_concurrent_asks_are_decoded_together_not_in_turn(generator):
    ended = {}
    started = threading.Event()

    def long_answer():
        for _ in generator.generate(ask("Count from 1 to 500, separated by commas."), max_tokens=200):
            started.set()
        ended["long"] = time.monotonic()

    reader = threading.Thread(target=long_answer)
    reader.start()
    assert started.wait(30)
    list(generator.generate(ask("Say hi."), max_tokens=2))
    ended["short"] = time.monotonic()
    reader.join(60)
    assert ended["short"] < ended["long"]


def test_an_answer_no_longer_read_stops_being_generated(generator):
    stream = generator.generate(ask("Write a long story."), max_tokens=400)
    next(stream)
    stream.close()
    # its slot is free again at once: the scheduler runs nothing
    deadline = time.monotonic() + 5
    while generator.scheduler._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not generator.scheduler._running


def test_concurrent_embeddings_each_get_their_own_vectors(embedding_model):
    embedder = LocalEmbedder(str(embedding_model))
    batches = [[f"worker-{i} finished job {j} in {i * j} ms" for j in range(3)] for i in range(8)]
    alone = [embedder.embed(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(embedder.embed, batches))
    for a, t in zip(alone, together):
        assert t.shape == (3, embedder.dimension)
        assert np.allclose(a, t, atol=1e-4)
    assert embedder.embed([]).shape == (0, embedder.dimension)
