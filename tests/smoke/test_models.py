"""The packaged GGUF models load in llama.cpp and do their job."""

import math

from llama_cpp import Llama


def test_generation_model_writes_text(generation_model):
    llm = Llama(model_path=str(generation_model), n_ctx=512, n_threads=2, verbose=False, seed=7)
    out = llm.create_completion("The capital of France is", max_tokens=8, temperature=0)
    assert out["choices"][0]["text"].strip()
    assert out["usage"]["completion_tokens"] > 0


def test_minilm_gguf_gives_a_384_dimension_embedding(embedding_model):
    llm = Llama(model_path=str(embedding_model), embedding=True, n_ctx=512, verbose=False)
    disk = llm.embed("disk full on node 3", normalize=True)
    storage = llm.embed("no space left on device", normalize=True)
    login = llm.embed("user logged in successfully", normalize=True)
    assert len(disk) == 384
    assert math.isclose(sum(x * x for x in disk), 1.0, rel_tol=1e-3)
    cosine = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert cosine(disk, storage) > cosine(disk, login)
