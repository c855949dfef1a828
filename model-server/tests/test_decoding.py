"""Batched decoding with the real packaged generation model, engine in process."""

from __future__ import annotations

import pytest
from monologue.model_server.engine import GENERATION, Engine, GenerateParams


@pytest.fixture(scope="module")
def engine(generation_model):
    return Engine(generation_model, GENERATION, context_size=512, threads=2, parallel=3)


def run_together(engine: Engine, params: list[GenerateParams]) -> list[str]:
    """Decodes the requests in one batch until all are done; their texts."""
    decoder = engine.decoder
    generations = [decoder.start(engine.prepare(p)) for p in params]
    texts = [[] for _ in generations]
    while decoder.active:
        decoder.step()
        for text, generation in zip(texts, generations):
            text.extend(c.text for c in generation.take_chunks())
    return ["".join(t) for t in texts]


def alone(engine: Engine, params: GenerateParams) -> str:
    return "".join(c.text for c in engine.generate(params, lambda: False))


PROMPTS = ["The capital of France is", "Count: 1, 2, 3,", "Disk full on node-7 because"]


def test_requests_decoded_together_give_what_each_gives_alone(engine):
    params = [GenerateParams(prompt=p, max_tokens=12, temperature=0) for p in PROMPTS]
    assert run_together(engine, params) == [alone(engine, p) for p in params]


def test_a_seeded_request_samples_the_same_with_or_without_company(engine):
    seeded = GenerateParams(prompt="Once upon a time", max_tokens=12, temperature=0.9, seed=5)
    company = GenerateParams(prompt="Count: 1, 2, 3,", max_tokens=12, temperature=0.9)
    assert run_together(engine, [seeded, company])[0] == alone(engine, seeded)


def test_a_prompt_is_evaluated_only_from_where_it_differs_from_a_cached_one(engine):
    system = "You answer questions about logs. Be brief. " * 4
    alone(engine, GenerateParams(prompt=system + "Which pod failed?", max_tokens=2))
    # (the last token of the shared text may merge with the next word's)
    shared = len(engine.model.tokenize(system.encode(), add_bos=True, special=True)) - 1

    def fed(prompt: str) -> int:
        generation = engine.decoder.start(engine.prepare(GenerateParams(prompt=prompt, max_tokens=2)))
        engine.decoder.cancel(generation)
        return len(generation.pending)

    other = engine.prepare(GenerateParams(prompt=system + "Since when?", max_tokens=2))
    assert fed(system + "Since when?") <= len(other.tokens) - shared
    # the same prompt again: only its last token, whose logits give the first token
    alone(engine, GenerateParams(prompt=system + "Since when?", max_tokens=2))
    assert fed(system + "Since when?") == 1


def test_a_stop_string_split_across_tokens_is_never_sent(engine):
    free = alone(engine, GenerateParams(prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16, temperature=0))
    assert " 7, 8" in free, free
    stopped = list(engine.generate(
        GenerateParams(prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16, temperature=0, stop=[" 7, 8"]),
        lambda: False,
    ))
    assert "".join(c.text for c in stopped) == free[: free.index(" 7, 8")]
    assert stopped[-1].finish_reason == "stop"


def test_more_requests_than_slots_wait_for_a_free_one(engine):
    decoder = engine.decoder
    started = [decoder.start(engine.prepare(GenerateParams(prompt=p, max_tokens=4))) for p in PROMPTS]
    try:
        assert decoder.free_slots() == 0
        with pytest.raises(Exception, match="slots are decoding"):
            decoder.start(engine.prepare(GenerateParams(prompt="one more", max_tokens=4)))
    finally:
        for generation in started:
            decoder.cancel(generation)
    assert decoder.free_slots() == 3
