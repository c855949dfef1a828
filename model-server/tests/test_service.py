"""The model server in process on port 0, with the real packaged models."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llama_cpp import Llama
from monologue.api.v1 import model_pb2 as pb
from monologue.api.v1 import model_pb2_grpc
from monologue.model_server.engine import GenerateParams
from monologue.model_server.scheduler import GenerateJob
from monologue.model_server.service import ModelServer, Settings, create_server

Code = grpc.StatusCode


class Running:
    def __init__(self, settings: Settings, load: bool = True):
        self.model = ModelServer(settings)
        self.server, self.port = create_server("127.0.0.1:0", self.model)
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        if load:
            self.model.load()

    def close(self):
        self.channel.close()
        self.server.stop(0).wait()
        self.model.stop()

    def generate(self, timeout=60, **fields):
        return list(self.stub.Generate(pb.GenerateRequest(**fields), timeout=timeout))


@pytest.fixture(scope="module")
def gen(generation_model):
    running = Running(Settings(model=str(generation_model), role="generation", context_size=1024, threads=2, max_queue=8))
    yield running
    running.close()


@pytest.fixture(scope="module")
def emb(embedding_model):
    running = Running(Settings(model=str(embedding_model), role="embedding", context_size=512, threads=2))
    yield running
    running.close()


def text_of(responses) -> str:
    return "".join(r.text for r in responses)


def status(health) -> int:
    return health.Check(health_pb2.HealthCheckRequest(service="monologue.api.v1.ModelService")).status


# ---------------------------------------------------------------- lifecycle


def test_health_is_not_serving_until_the_model_is_loaded(generation_model):
    running = Running(Settings(model=str(generation_model), role="generation", context_size=512), load=False)
    try:
        assert status(running.health) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as err:
            running.generate(prompt="hi", max_tokens=2)
        assert err.value.code() == Code.UNAVAILABLE
        running.model.load()
        assert status(running.health) == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.close()


def test_info_describes_the_model(gen, emb, generation_model):
    info = gen.stub.Info(pb.InfoRequest())
    assert info.role == "generation" and info.chat_template and info.context_size == 1024
    from monologue.model_server.catalog import sha256_of

    assert info.sha256 == sha256_of(generation_model)
    assert emb.stub.Info(pb.InfoRequest()).embedding_dimension == 384


def test_count_tokens_matches_the_tokenizer(gen, generation_model):
    counts = gen.stub.CountTokens(pb.CountTokensRequest(texts=["hello world", ""])).counts
    llm = Llama(model_path=str(generation_model), vocab_only=True, verbose=False)
    assert list(counts) == [len(llm.tokenize(b"hello world", add_bos=False)), 0]


# ---------------------------------------------------------------- generation


def test_generate_streams_tokens_and_reports_usage(gen):
    responses = gen.generate(
        messages=[pb.ChatMessage(role="user", content="Name three fruits.")],
        max_tokens=24, temperature=0,
    )
    assert len([r for r in responses if r.text]) > 3, "expected several streamed chunks"
    last = responses[-1]
    assert last.finish_reason in ("stop", "length")
    assert last.usage.prompt_tokens > 5 and 0 < last.usage.completion_tokens <= 24


def test_same_seed_gives_the_same_text(gen):
    ask = dict(prompt="Once upon a time", max_tokens=16, temperature=0.9, seed=42)
    assert text_of(gen.generate(**ask)) == text_of(gen.generate(**ask))


def test_stop_sequence_ends_the_text_before_it(gen):
    free = text_of(gen.generate(prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16, temperature=0))
    assert " 7" in free, free
    stopped = gen.generate(prompt="Count: 1, 2, 3, 4, 5,", max_tokens=16, temperature=0, stop=[" 7"])
    assert text_of(stopped) == free[: free.index(" 7")]
    assert stopped[-1].finish_reason == "stop"


def test_json_schema_output_parses_and_matches(gen):
    schema = {
        "type": "object",
        "properties": {"service": {"type": "string"}, "errors": {"type": "integer"}},
        "required": ["service", "errors"],
    }
    out = text_of(gen.generate(prompt="Report as JSON: the api service had 3 errors.\n",
                               max_tokens=48, temperature=0, json_schema=json.dumps(schema)))
    parsed = json.loads(out)
    assert isinstance(parsed["service"], str) and isinstance(parsed["errors"], int)


def test_grammar_constrains_the_output(gen):
    out = text_of(gen.generate(prompt="Is the disk full? Answer:", max_tokens=4, temperature=0,
                               grammar='root ::= " yes" | " no"'))
    assert out in (" yes", " no")


def test_cancelled_call_stops_generating_at_once(gen):
    call = gen.stub.Generate(pb.GenerateRequest(prompt="Write a long story:", max_tokens=900, temperature=0.8))
    next(call)  # generation has started
    call.cancel()
    # The worker is free again right away: a short request is answered quickly,
    # not after the 900 tokens the cancelled one asked for.
    started = time.monotonic()
    gen.generate(prompt="hi", max_tokens=2, timeout=30)
    assert time.monotonic() - started < 5
    assert gen.model.scheduler._size == 0


def test_a_reader_that_stops_reading_does_not_hold_the_model(gen):
    # The worker computes a token when the reader asks for it; one that stops
    # asking (without cancelling) must not keep the model from the others.
    job = GenerateJob(gen.model.engine.prepare(GenerateParams(prompt="Write a long story:", max_tokens=48, temperature=0.8)))
    gen.model.scheduler.submit("stuck-reader", job)
    stream = job.results()
    try:
        assert next(stream).text  # one token read, then no more
        assert gen.generate(prompt="hi", max_tokens=2, timeout=60)[-1].finish_reason in ("stop", "length")
        # the rest of the stuck job was generated, not dropped
        assert job.chunks.qsize() > 1
    finally:
        stream.close()


def test_deadline_is_honoured_in_the_middle_of_a_generation(gen):
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        # Greedy counting runs long: a sampled story may end on its own before the deadline.
        gen.generate(prompt="Count to 1000: 1, 2, 3, 4,", max_tokens=900, temperature=0, timeout=1.0)
    assert err.value.code() == Code.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3
    gen.generate(prompt="hi", max_tokens=2, timeout=10)  # and the model is free again


def test_concurrent_requests_all_succeed(gen):
    def one(i):
        return gen.generate(prompt=f"Number {i} is", max_tokens=8, temperature=0)[-1].finish_reason

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(one, range(6))) <= {"stop", "length"}


def test_a_request_is_answered_while_a_long_one_streams(gen):
    # Generations are decoded together: a short request does not wait for a long one to end.
    long_ended = {}
    started = threading.Event()

    def read_long():
        for r in gen.stub.Generate(pb.GenerateRequest(prompt="Count to 1000: 1, 2, 3, 4,", max_tokens=300,
                                                      temperature=0), timeout=60):
            started.set()
            long_ended["finish"] = r.finish_reason
        long_ended["at"] = time.monotonic()

    reader = threading.Thread(target=read_long)
    reader.start()
    assert started.wait(30)
    short = gen.generate(prompt="hi", max_tokens=2, timeout=30)
    short_ended = time.monotonic()
    reader.join(60)
    assert short[-1].finish_reason in ("stop", "length")
    assert long_ended["finish"] == "length"
    assert short_ended < long_ended["at"]


def test_full_queue_is_refused_with_resource_exhausted(generation_model):
    # one generation at a time, so the second request waits in the queue
    running = Running(Settings(model=str(generation_model), role="generation", context_size=512, max_queue=1,
                               parallel=1))
    try:
        busy = running.stub.Generate(pb.GenerateRequest(prompt="Tell a story:", max_tokens=400))
        next(busy)  # the worker is busy with this one
        queued = running.stub.Generate(pb.GenerateRequest(prompt="Second:", max_tokens=4))
        # wait until the second request sits in the queue
        deadline = time.monotonic() + 10
        while running.model.scheduler._size < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as err:
            running.generate(prompt="Third:", max_tokens=4)
        assert err.value.code() == Code.RESOURCE_EXHAUSTED
        busy.cancel()
        assert list(queued)[-1].finish_reason in ("stop", "length")
    finally:
        running.close()


BAD_GENERATE = [
    ("neither prompt nor messages", {"max_tokens": 4}),
    ("both prompt and messages", {"prompt": "a", "messages": [pb.ChatMessage(role="user", content="b")]}),
    ("unknown role", {"messages": [pb.ChatMessage(role="wizard", content="b")]}),
    ("negative max_tokens", {"prompt": "a", "max_tokens": -1}),
    ("temperature too high", {"prompt": "a", "temperature": 5}),
    ("top_p zero", {"prompt": "a", "top_p": 0}),
    ("max_tokens beyond the window", {"prompt": "a", "max_tokens": 5000}),
    ("schema that is not JSON", {"prompt": "a", "json_schema": "{nope"}),
    ("grammar that does not parse", {"prompt": "a", "grammar": "root ::= ("}),
]


@pytest.mark.parametrize("case,fields", BAD_GENERATE, ids=[c for c, _ in BAD_GENERATE])
def test_bad_generate_requests_get_invalid_argument(gen, case, fields):
    with pytest.raises(grpc.RpcError) as err:
        gen.generate(**fields)
    assert err.value.code() == Code.INVALID_ARGUMENT, case
    assert err.value.details()


def test_the_wrong_role_gets_failed_precondition(gen, emb):
    with pytest.raises(grpc.RpcError) as err:
        gen.stub.Embed(pb.EmbedRequest(texts=["x"]))
    assert err.value.code() == Code.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        emb.generate(prompt="x", max_tokens=2)
    assert err.value.code() == Code.FAILED_PRECONDITION


def test_model_without_chat_template_refuses_role_messages_only(generation_model, tmp_path):
    bare = tmp_path / "no-template.gguf"
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(generation_model), str(bare),
         "--remove-metadata", "tokenizer.chat_template", "--force"],
        check=True, capture_output=True,
    )
    running = Running(Settings(model=str(bare), role="generation", context_size=512))
    try:
        assert not running.stub.Info(pb.InfoRequest()).chat_template
        with pytest.raises(grpc.RpcError) as err:
            running.generate(messages=[pb.ChatMessage(role="user", content="hi")], max_tokens=2)
        assert err.value.code() == Code.INVALID_ARGUMENT
        assert "chat template" in err.value.details()
        assert running.generate(prompt="hi", max_tokens=2)[-1].finish_reason
    finally:
        running.close()


# ---------------------------------------------------------------- embeddings


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_embeddings_equal_direct_llama_cpp_output(emb, embedding_model):
    texts = ["disk full on node-3", "GET /api/v1/users 200 12ms", "connection refused by 10.0.0.7:5432"]
    got = emb.stub.Embed(pb.EmbedRequest(texts=texts)).embeddings
    direct = Llama(model_path=str(embedding_model), embedding=True, n_ctx=512, verbose=False)
    for e, text in zip(got, texts):
        assert len(e.values) == 384
        assert abs(np.linalg.norm(e.values) - 1) < 1e-4
        assert cosine(e.values, direct.embed(text, normalize=True)) > 0.999
        assert not e.truncated and e.chunks == 1


def test_long_input_is_truncated_or_split_explicitly(emb):
    long_text = " ".join(f"word{i}" for i in range(800))
    truncated = emb.stub.Embed(pb.EmbedRequest(texts=[long_text])).embeddings[0]
    assert truncated.truncated and truncated.tokens > 512 and truncated.chunks == 1
    split = emb.stub.Embed(pb.EmbedRequest(texts=[long_text], overflow=pb.OVERFLOW_SPLIT)).embeddings[0]
    assert not split.truncated and split.chunks >= 2
    with pytest.raises(grpc.RpcError) as err:
        emb.stub.Embed(pb.EmbedRequest(texts=["short", long_text], overflow=pb.OVERFLOW_ERROR))
    assert err.value.code() == Code.INVALID_ARGUMENT and "text 1" in err.value.details()


def test_empty_embed_request_is_invalid(emb):
    with pytest.raises(grpc.RpcError) as err:
        emb.stub.Embed(pb.EmbedRequest(texts=[]))
    assert err.value.code() == Code.INVALID_ARGUMENT


def test_concurrent_embed_requests_are_batched_and_each_gets_its_own(emb):
    texts = [f"request {i} failed with status {500 + i}" for i in range(24)]
    alone = {t: list(emb.stub.Embed(pb.EmbedRequest(texts=[t])).embeddings[0].values) for t in texts}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda t: emb.stub.Embed(pb.EmbedRequest(texts=[t])).embeddings[0].values, texts))
    for t, values in zip(texts, together):
        assert cosine(values, alone[t]) > 0.999


# ---------------------------------------------------------------- process


def test_process_serves_then_stops_cleanly_on_sigterm(generation_model):
    from harness.process import free_port

    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monologue.model_server.main", "--model", str(generation_model),
         "--listen", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port", str(http_port),
         "--context-size", "512"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if status(health) == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("model server never became SERVING")
        stream = model_pb2_grpc.ModelServiceStub(channel).Generate(
            pb.GenerateRequest(prompt="Tell me a story:", max_tokens=20)
        )
        first = next(stream)  # in flight when SIGTERM arrives: it must complete
        proc.terminate()
        rest = list(stream)
        assert rest[-1].finish_reason in ("stop", "length") and first is not None
        assert proc.wait(30) == 0
        logs = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
        assert any(entry["msg"] == "stopping" for entry in logs)
        channel.close()
    finally:
        proc.kill()
        proc.wait()
