"""Benchmark: an Agent's recall latency on a 1M-line Space, embedded and on Weaviate; 50 concurrent Asks.

A generated shop log (default 1M lines) is ingested into a Space and indexed
into LanceDB (embedded); the same memory objects (all of them, or the first
--weaviate-lines) are then imported into the real Weaviate of the test
harness (cluster), measured once it has settled after that bulk import (its
compactions done: under 5% of a core busy over 10 s; the wait is printed).
For each store, questions are asked without generation and the recall time (question embedding, hybrid
search, the DuckDB figures of the recalled templates) is measured per Ask.
Baseline in the same run: grep, i.e. what one does without memory: DuckDB
scanning every line of the Space for the question's words, best matches first.

Then 50 Asks at once through the gRPC Agent service (embedded Space, the
generation model in process, short answers): every one must be answered,
waiting its turn (back-pressure), none fail.

    .venv/bin/python bench/agents.py [--lines N] [--asks N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import servers  # noqa: E402

from figures import emit_ratio  # noqa: E402

from monologue.agent.answering import MAX_EXPANDED_WORDS, Agent  # noqa: E402
from monologue.agent.embedder import LocalEmbedder  # noqa: E402
from monologue.agent.generate import write_log  # noqa: E402
from monologue.agent.indexer import Indexer  # noqa: E402
from monologue.agent.ingest import ingest  # noqa: E402
from monologue.agent.memory import ROW_SCHEMA, LanceStore, WeaviateStore  # noqa: E402
from monologue.agent.recall import SpaceMemory, recall  # noqa: E402
from monologue.agent.space import Space  # noqa: E402
from monologue.agent.terms import content_words  # noqa: E402

QUESTIONS = [
    "why did checkout fail?",
    "how often did payment authorization time out?",
    "which users had a failed login?",
    "when was the database connection pool exhausted?",
    "what version of checkout was deployed?",
    "how long did the stock lookup of sku-1042 take?",
    "which pods returned 502 on /api/checkout?",
    "is the disk of postgres filling up?",
    "how many buffers did the checkpoint write?",
    "did the connection pool recover?",
    "what is the ttl of the inventory cache?",
    "which client ip failed to log in?",
]
TARGET_P50_MS = 30.0
CONCURRENT_ASKS = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def recall_latencies(agent: Agent, asks: int) -> list[float]:
    agent.ask(QUESTIONS[0], retrieval_only=True)  # warm: vocabulary, connections, caches
    return [agent.ask(QUESTIONS[i % len(QUESTIONS)], retrieval_only=True).recall_ms for i in range(asks)]


def search_latencies(agent: Agent, asks: int) -> list[float]:
    """The same recall without the DuckDB figures: question embedding and hybrid search only."""
    out = []
    for i in range(asks):
        question = QUESTIONS[i % len(QUESTIONS)]
        started = time.perf_counter()
        words = content_words(question)[:MAX_EXPANDED_WORDS]
        vectors = agent.embedder.embed([question, *words])
        recall(list(agent.memories.values()), question, vectors[0], agent.top_k, max_stats=0,
               word_vectors=dict(zip(words, vectors[1:])))
        out.append((time.perf_counter() - started) * 1000)
    return out


def grep_latencies(memory: SpaceMemory, asks: int) -> list[float]:
    """Without memory: every line scanned for the question's words, most words matched first."""
    out = []
    for i in range(asks):
        words = content_words(QUESTIONS[i % len(QUESTIONS)])
        score = " + ".join("(line ILIKE ?)::INT" for _ in words)
        started = time.perf_counter()
        memory.sql(f"SELECT line, {score} AS s FROM logs WHERE s > 0 ORDER BY s DESC LIMIT 10",
                   [f"%{w}%" for w in words], lines=True)
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(store: str, agent: Agent, asks: int, baseline: list[float]) -> None:
    base50, base99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    for name, latencies in (("recall", recall_latencies(agent, asks)), ("search", search_latencies(agent, asks))):
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        emit_ratio("agents", f"{name}_ms_p50_{store}", p50, "ms", base50, TARGET_P50_MS)
        emit_ratio("agents", f"{name}_ms_p99_{store}", p99, "ms", base99, None)
        print(f"{store}: {name} p50 {p50:.1f} ms, p99 {p99:.1f} ms; grep p50 {base50:.0f} ms", file=sys.stderr)


def copy_memory(lance: LanceStore, weaviate: WeaviateStore, collection: str, rows: int | None) -> int:
    """The same memory objects, into Weaviate (indexing again would only repeat the same work)."""
    weaviate.drop(collection)
    weaviate.ensure(collection)
    table = lance._table(collection).to_arrow()
    table = table.slice(0, rows) if rows else table
    step = 50_000
    for start in range(0, table.num_rows, step):
        weaviate.upsert(collection, table.slice(start, step).select(ROW_SCHEMA.names), known_new=True)
        print(f"  weaviate: {min(start + step, table.num_rows)}/{table.num_rows} objects", file=sys.stderr)
    return table.num_rows


def settle(pid: int, busy_share: float = 0.05, window: float = 10.0, timeout: float = 900.0) -> float:
    """Wait until the process uses under busy_share of a core over a window
    (Weaviate flushing and compacting after a bulk import); seconds waited."""
    def cpu_seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        before = cpu_seconds()
        time.sleep(window)
        if cpu_seconds() - before < busy_share * window:
            break
    return time.perf_counter() - started


def concurrent_asks(space: Space, lance: LanceStore, embedder: LocalEmbedder, count: int) -> None:
    import grpc
    from monologue.agent.generator import LocalGenerator
    from monologue.agent.service import create_server
    from monologue.api.v1 import agent_pb2 as pb
    from monologue.api.v1 import agent_pb2_grpc

    agent = Agent("bench", [SpaceMemory(space, lance)], embedder, LocalGenerator("smollm2-135m-instruct"),
                  top_k=3, answer_tokens=8)
    server, port, _ = create_server("127.0.0.1:0", agent)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)

            def ask(i: int):
                started = time.perf_counter()
                try:
                    stub.Ask(pb.AskRequest(question=QUESTIONS[i % len(QUESTIONS)]), timeout=600)
                    return None, time.perf_counter() - started
                except grpc.RpcError as err:
                    return err.code().name, time.perf_counter() - started

            started = time.perf_counter()
            with ThreadPoolExecutor(count) as pool:
                results = list(pool.map(ask, range(count)))
            wall = time.perf_counter() - started
    finally:
        server.stop(grace=5).wait()
    errors = [code for code, _ in results if code]
    one = statistics.median(seconds for _, seconds in results)
    print(json.dumps({"bench": "agents", "metric": "concurrent_asks_errors", "value": len(errors),
                      "unit": "errors", "asks": count, "wall_s": round(wall, 1),
                      "median_ask_s": round(one, 2), "codes": sorted(set(errors)), "target": 0}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--asks", type=int, default=50, help="asks per store for the latency figures")
    parser.add_argument("--weaviate-lines", type=int, default=None,
                        help="memory objects imported into Weaviate (the first N of the Space; default: all)")
    parser.add_argument("--concurrent-asks", type=int, default=CONCURRENT_ASKS,
                        help="Asks sent at once through gRPC, each answered by the model")
    args = parser.parse_args()
    logs = ROOT / "build" / "bench-logs" / time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="monologue-bench-agents-"))
    weaviate_server = None
    try:
        log = work / "shop.log"
        write_log(log, "shop", args.lines, seed=11)
        print(f"generated {args.lines} lines; ingesting and indexing...", file=sys.stderr)
        space = Space("bench", str(work / "data"), collection="Space_bench")
        ingest(log, space.uri, show_progress=False)
        embedder = LocalEmbedder()
        lance = LanceStore(str(work / "memory"))
        Indexer(space, lance, embedder).run_once()

        memory = SpaceMemory(space, lance)
        grep = grep_latencies(memory, max(20, args.asks // 10))
        report("embedded", Agent("bench", [memory], embedder, None), args.asks, grep)

        print("starting Weaviate and importing the same memory...", file=sys.stderr)
        weaviate_server = servers.start_weaviate(work / "weaviate", logs)
        weaviate = WeaviateStore(f"http://{weaviate_server.host}:{weaviate_server.http_port}",
                                 weaviate_server.grpc_port)
        started = time.perf_counter()
        imported = copy_memory(lance, weaviate, space.collection, args.weaviate_lines)
        seconds = time.perf_counter() - started
        print(json.dumps({"bench": "agents", "metric": "weaviate_import_objects_per_s",
                          "value": round(imported / seconds, 1), "unit": "objects/s", "objects": imported}),
              flush=True)
        cluster = SpaceMemory(space, weaviate)
        # Right after a bulk import Weaviate flushes and compacts for a while; an
        # indexer keeping up with a live Space writes far less at a time.
        print(json.dumps({"bench": "agents", "metric": "weaviate_settle_s_after_import",
                          "value": round(settle(weaviate_server.server.process.pid), 1), "unit": "s"}), flush=True)
        report("weaviate", Agent("bench", [cluster], embedder, None), args.asks, grep)
        weaviate.close()

        concurrent_asks(space, lance, embedder, args.concurrent_asks)
    finally:
        if weaviate_server is not None:
            weaviate_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
