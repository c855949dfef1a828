"""Benchmark: Weaviate's two BM25 indexes, and what related lines cost an Agent's recall.

Weaviate 1.35 creates collections with BlockMax WAND unless the server runs
with USE_INVERTED_SEARCHABLE=false (the classic index). BlockMax WAND ranks a
collection with nothing flushed yet by one query word alone (README); this
measures what the classic index would cost instead. A generated shop log
(default 1M lines) is indexed into LanceDB once, then imported into a fresh
Weaviate of each kind and measured once settled (as bench/agents.py does).
Each store's recall is measured with related lines (recall.related) and
without them, alternately, twice: the ratio of with to without is their cost.
Baseline for the classic index: BlockMax WAND, same run, same questions.

    .venv/bin/python bench/weaviate_index.py [--lines N] [--asks N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agents  # noqa: E402  (its harness, questions and helpers)
from figures import emit_ratio, related_lines  # noqa: E402


def p50(agent: agents.Agent, asks: int, related: bool) -> float:
    """Recall p50 over the questions, with or without related lines."""
    with related_lines(related):
        agent.ask(agents.QUESTIONS[0], retrieval_only=True)  # warm
        times = [agent.ask(agents.QUESTIONS[i % len(agents.QUESTIONS)], retrieval_only=True).recall_ms
                 for i in range(asks)]
    return agents.percentile(times, 0.5)


def with_and_without(agent: agents.Agent, asks: int) -> tuple[float, float]:
    """p50 with related lines and without, the lower of two runs each, alternated so drift hits both."""
    runs = {True: [], False: []}
    for related in (False, True, False, True):
        runs[related].append(p50(agent, asks, related))
    return min(runs[True]), min(runs[False])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--asks", type=int, default=60, help="asks per measurement")
    args = parser.parse_args()
    logs = agents.ROOT / "build" / "bench-logs" / time.strftime("weaviate-index-%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="monologue-bench-weaviate-index-"))
    try:
        log = work / "shop.log"
        agents.write_log(log, "shop", args.lines, seed=11)
        space = agents.Space("bench", str(work / "data"), collection="Space_bench")
        agents.ingest(log, space.uri, show_progress=False)
        embedder = agents.LocalEmbedder()
        lance = agents.LanceStore(str(work / "memory"))
        agents.Indexer(space, lance, embedder).run_once()
        related, alone = with_and_without(agents.Agent("bench", [agents.SpaceMemory(space, lance)], embedder, None),
                                          args.asks)
        emit_ratio("weaviate_index", "recall_ms_p50_embedded_with_related", related, "ms", alone, None)
        recalls = {}
        for index, setting in (("blockmax", "true"), ("classic", "false")):
            settings = {**agents.servers.WEAVIATE_MEMTABLES, "USE_INVERTED_SEARCHABLE": setting}
            server = agents.servers.start_weaviate(work / f"weaviate-{index}", logs, settings)
            try:
                weaviate = agents.WeaviateStore(f"http://{server.host}:{server.http_port}", server.grpc_port)
                agents.copy_memory(lance, weaviate, space.collection, None)
                agents.settle(server.server.process.pid)
                agent = agents.Agent("bench", [agents.SpaceMemory(space, weaviate)], embedder, None)
                recalls[index] = with_and_without(agent, args.asks)
                weaviate.close()
            finally:
                server.stop()
            print(f"{index}: recall p50 {recalls[index][0]:.1f} ms with related lines, "
                  f"{recalls[index][1]:.1f} without", file=sys.stderr)
        emit_ratio("weaviate_index", "recall_ms_p50_weaviate_blockmax_with_related", recalls["blockmax"][0], "ms",
                   recalls["blockmax"][1], None)
        for at, name in ((0, "with_related"), (1, "without_related")):
            emit_ratio("weaviate_index", f"recall_ms_p50_weaviate_classic_{name}", recalls["classic"][at], "ms",
                       recalls["blockmax"][at], None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
