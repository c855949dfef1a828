"""The OpenAI-compatible HTTP API, metrics, and model sources (S3, packaged names)."""

from __future__ import annotations

import urllib.request

import boto3
import grpc
import numpy as np
import openai
import pytest
from monologue.api.v1 import model_pb2 as pb
from monologue.api.v1 import model_pb2_grpc
from monologue.model_server.catalog import ModelError, sha256_of
from monologue.model_server.openai_http import start_http
from monologue.model_server.service import ModelServer, Settings, create_server
from monologue.model_server.sources import resolve


def serve_http(model_path, role, context_size):
    model = ModelServer(Settings(model=str(model_path), role=role, context_size=context_size))
    model.load()
    httpd, port = start_http("127.0.0.1", 0, model)
    yield model, f"http://127.0.0.1:{port}"
    httpd.shutdown()
    model.stop()


@pytest.fixture(scope="module")
def http_gen(generation_model):
    yield from serve_http(generation_model, "generation", 1024)


@pytest.fixture(scope="module")
def http_emb(embedding_model):
    yield from serve_http(embedding_model, "embedding", 512)


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_chat_completion_streams(http_gen):
    _, url = http_gen
    stream = client(url).chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Say hi"}], max_tokens=12,
        temperature=0, stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_chat_completion_whole_and_completions(http_gen):
    _, url = http_gen
    c = client(url)
    whole = c.chat.completions.create(model="any", messages=[{"role": "user", "content": "Hi"}],
                                      max_tokens=8, temperature=0)
    assert whole.choices[0].message.content and whole.usage.completion_tokens <= 8
    done = c.completions.create(model="any", prompt="The sky is", max_tokens=6, temperature=0)
    assert done.choices[0].text and done.usage.prompt_tokens > 0


def test_openai_models_and_bad_request(http_gen):
    _, url = http_gen
    c = client(url)
    assert [m.id for m in c.models.list().data]
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="any", messages=[], max_tokens=4)


def test_openai_embeddings_match_grpc(http_emb):
    model, url = http_emb
    got = client(url).embeddings.create(model="any", input=["disk full", "login ok"])
    assert [len(d.embedding) for d in got.data] == [384, 384]
    server, port = create_server("127.0.0.1:0", model)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            direct = stub.Embed(pb.EmbedRequest(texts=["disk full"])).embeddings[0].values
        assert float(np.dot(direct, got.data[0].embedding)) > 0.999
    finally:
        server.stop(0)


def test_metrics_report_queue_depth_and_generation(http_gen):
    _, url = http_gen
    client(url).completions.create(model="any", prompt="One", max_tokens=4)
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    for name in ("model_server_queue_depth", "model_server_time_to_first_token_seconds",
                 "model_server_tokens_per_second", "model_server_request_seconds"):
        assert name in metrics


def test_model_from_s3_is_downloaded_once_and_verified(s3_env, embedding_model, tmp_path):
    boto3.client("s3").create_bucket(Bucket="models")
    boto3.client("s3").upload_file(str(embedding_model), "models", "minilm.gguf")
    digest = sha256_of(embedding_model)

    path, sha = resolve("s3://models/minilm.gguf", digest, tmp_path)
    assert sha == digest and sha256_of(path) == digest
    boto3.client("s3").delete_object(Bucket="models", Key="minilm.gguf")
    again, _ = resolve("s3://models/minilm.gguf", digest, tmp_path)  # cached: no download
    assert again == path

    with pytest.raises(ModelError, match="does not match"):
        boto3.client("s3").upload_file(str(embedding_model), "models", "other.gguf")
        resolve("s3://models/other.gguf", "0" * 64, tmp_path / "fresh")
    with pytest.raises(ModelError, match="cannot download"):
        resolve("s3://models/missing.gguf", "", tmp_path / "fresh")


def test_unknown_model_source_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="neither a file"):
        resolve(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelError, match="does not match"):
        resolve("smollm2-135m-instruct", "f" * 64)
