"""Benchmark: the gRPC model server against llama.cpp called directly, same run.

Prints one JSON object per figure (bench, metric, value, unit, baseline, ratio,
target). Baselines: llama_cpp.Llama in this process, same model, prompt and
threads; the server runs as its own process, as it does in production. Both
sides run with the same OpenMP settings (the server's), set before llama.cpp
is loaded.
"""

from __future__ import annotations

import os

from monologue.model_server import openmp

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
openmp.configure()  # the server sets it for itself; the baseline gets the same

import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from llama_cpp import Llama  # noqa: E402
from monologue.agent.embedder import CHANNEL_OPTIONS  # noqa: E402
from monologue.api.v1 import model_pb2 as pb  # noqa: E402
from monologue.api.v1 import model_pb2_grpc  # noqa: E402
from monologue.model_server.catalog import path_of  # noqa: E402
from monologue.model_server.engine import GENERATION, Engine, GenerateParams  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness.process import free_port  # noqa: E402

PROMPT = "Summarize the incident: the payment service returned HTTP 503 for ten minutes because"
MAX_TOKENS = 96
# An agent's prompt is new each time (other lines, another question). A prompt
# that differs from its first word on is evaluated whole, as such a one is.
def fresh_prompt(i: int) -> str:
    return f"Case {i}. {PROMPT}"
ROUNDS = 15  # alternating pairs; fewer left the median ±3% from run to run
FRESH_ROUNDS = 21  # short generations: more rounds for a steadier median
CONCURRENT_ROUNDS = 5  # alternating one client / eight clients; batched steps vary run to run
SENTENCES = [
    f"worker-{i % 7} finished job {i} in {i % 97} ms after {i % 5} retries on node-{i % 13}"
    for i in range(512)
]


def emit(metric, value, unit, baseline, target, higher_is_better=True):
    ratio = value / baseline if higher_is_better else baseline / value
    print(json.dumps({"bench": "model-server", "metric": metric, "value": round(value, 3),
                      "unit": unit, "baseline": round(baseline, 3), "ratio": round(ratio, 3),
                      "target": target}), flush=True)


def direct_round(llm: Llama, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS) -> tuple[float, float]:
    """One generation by llama_cpp in this process: (tokens/s, seconds to the first token)."""
    started = time.perf_counter()
    first, parts = None, []
    for part in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, seed=1, stream=True):
        first = first or time.perf_counter()
        parts.append(part["choices"][0]["text"])
    ended = time.perf_counter()
    return (tokens_in(llm, "".join(parts)) - 1) / (ended - first), first - started


def tokens_in(llm: Llama, text: str) -> int:
    """Both sides' tokens are counted the same way: their text, tokenized
    (create_completion reports no usage when it streams)."""
    return len(llm.tokenize(text.encode(), add_bos=False, special=True))


def grpc_round(stub, llm: Llama, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS) -> tuple[float, float]:
    """The same generation through the server: (tokens/s, seconds to the first token)."""
    started = time.perf_counter()
    first, parts = None, []
    for r in stub.Generate(pb.GenerateRequest(prompt=prompt, max_tokens=max_tokens, temperature=0, seed=1)):
        if r.text and first is None:
            first = time.perf_counter()
        parts.append(r.text)
    ended = time.perf_counter()
    return (tokens_in(llm, "".join(parts)) - 1) / (ended - first), first - started


def generation(model: Path, stub) -> dict[str, tuple[float, float]]:
    """Medians (tokens/s, time to first token) of direct and gRPC rounds, with
    the same prompt each round (llama.cpp reuses the evaluated prompt: the
    first token is one decoding step) and with a fresh prompt each round (the
    prompt is evaluated first, as for an agent's question). The rounds
    alternate, so a change in the machine's load meets both sides."""
    llm = Llama(model_path=str(model), n_ctx=1024, n_threads=THREADS, verbose=False)
    rounds = {"direct": [], "grpc": [], "direct_fresh": [], "grpc_fresh": []}
    for _ in range(ROUNDS):
        rounds["direct"].append(direct_round(llm))
        rounds["grpc"].append(grpc_round(stub, llm))
    for i in range(FRESH_ROUNDS):
        rounds["direct_fresh"].append(direct_round(llm, fresh_prompt(2 * i), 8))
        rounds["grpc_fresh"].append(grpc_round(stub, llm, fresh_prompt(2 * i + 1), 8))
    del llm
    return {side: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            for side, rs in rounds.items()}


def direct_embedding(model: Path) -> float:
    llm = Llama(model_path=str(model), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                n_threads=THREADS, verbose=False)
    llm.embed(SENTENCES[:8])
    started = time.perf_counter()
    for i in range(0, len(SENTENCES), 64):
        llm.embed(SENTENCES[i : i + 64], normalize=True)
    return len(SENTENCES) / (time.perf_counter() - started)


def grpc_embedding(stub) -> float:
    stub.Embed(pb.EmbedRequest(texts=SENTENCES[:8]))
    started = time.perf_counter()
    for i in range(0, len(SENTENCES), 64):
        stub.Embed(pb.EmbedRequest(texts=SENTENCES[i : i + 64]))
    return len(SENTENCES) / (time.perf_counter() - started)


def engine_batching(model: Path) -> tuple[float, float]:
    """The engine alone, no gRPC and no clients on the cores: medians of the
    tokens/s of 8 requests one after the other and of the same 8 on 4 slots."""
    engine = Engine(model, GENERATION, context_size=1024, threads=THREADS, parallel=4)
    decoder = engine.decoder

    def requests(k):
        return [GenerateParams(prompt=f"{PROMPT} ({k}.{i})", max_tokens=32, temperature=0) for i in range(8)]

    def serial(k):
        started, tokens = time.perf_counter(), 0
        for params in requests(k):
            tokens += sum(c.completion_tokens for c in engine.generate(params, lambda: False))
        return tokens / (time.perf_counter() - started)

    def batched(k):
        started, tokens, waiting = time.perf_counter(), 0, requests(k)
        while waiting or decoder.active:
            while waiting and decoder.free_slots():
                decoder.start(engine.prepare(waiting.pop(0)))
            running = list(decoder.active)
            decoder.step()
            tokens += sum(c.completion_tokens for g in running for c in g.take_chunks())
        return tokens / (time.perf_counter() - started)

    pairs = [(serial(2 * k), batched(2 * k + 1)) for k in range(CONCURRENT_ROUNDS)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def concurrency(stub) -> tuple[float, float, int]:
    """Medians of one client's and eight clients' tokens/s, and the errors."""
    ones, manys, errors = [], [], 0
    for _ in range(CONCURRENT_ROUNDS):
        ones.append(concurrent_generation(stub, 1, 8)[0])
        many, failed = concurrent_generation(stub, 8, 2)
        manys.append(many)
        errors += failed
    return statistics.median(ones), statistics.median(manys), errors


def concurrent_generation(stub, clients: int, requests_each: int) -> tuple[float, int]:
    errors = 0

    def client(i):
        nonlocal errors
        tokens = 0
        for j in range(requests_each):
            try:
                for r in stub.Generate(pb.GenerateRequest(prompt=f"{PROMPT} ({i}.{j})", max_tokens=32,
                                                          temperature=0), timeout=300):
                    tokens += r.usage.completion_tokens
            except grpc.RpcError:
                errors += 1
        return tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(client, range(clients)))
    return total / (time.perf_counter() - started), errors


class ServerProcess:
    def __init__(self, model: Path, role: str, context_size: int):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monologue.model_server.main", "--model", str(model), "--role", role,
             "--listen", "127.0.0.1", "--grpc-port", str(self.port), "--http-port", "0",
             "--context-size", str(context_size), "--threads", str(THREADS), "--log-level", "warning"],
        )
        # as the agent, the server's client, connects
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=CHANNEL_OPTIONS)
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit("model server exited while starting")
            time.sleep(0.2)
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)

    def close(self):
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(60)


def main() -> None:
    gen_model, emb_model = path_of("smollm2-135m-instruct"), path_of("all-minilm-l6-v2")

    server = ServerProcess(gen_model, "generation", 1024)
    try:
        medians = generation(gen_model, server.stub)
        one, many, errors = concurrency(server.stub)
    finally:
        server.close()
    (direct_tps, direct_ttft), (grpc_tps, grpc_ttft) = medians["direct"], medians["grpc"]
    emit("generate_tokens_per_s", grpc_tps, "tokens/s", direct_tps, 0.95)
    emit("generate_time_to_first_token", grpc_ttft * 1000, "ms", direct_ttft * 1000, 0.95,
         higher_is_better=False)
    emit("generate_time_to_first_token_fresh_prompt", medians["grpc_fresh"][1] * 1000, "ms",
         medians["direct_fresh"][1] * 1000, 0.95, higher_is_better=False)
    emit("concurrent8_tokens_per_s", many, "tokens/s", one, 1.0)
    print(json.dumps({"bench": "model-server", "metric": "concurrent8_errors", "value": errors,
                      "unit": "errors", "baseline": 0, "ratio": None, "target": 0}), flush=True)
    serial, batched = engine_batching(gen_model)
    emit("engine_8_requests_on_4_slots_tokens_per_s", batched, "tokens/s", serial, None)

    direct_sps = direct_embedding(emb_model)
    server = ServerProcess(emb_model, "embedding", 512)
    try:
        grpc_sps = grpc_embedding(server.stub)
    finally:
        server.close()
    emit("embed_sentences_per_s", grpc_sps, "sentences/s", direct_sps, 0.9)


if __name__ == "__main__":
    main()
