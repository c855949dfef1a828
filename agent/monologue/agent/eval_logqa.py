"""LogQA evaluation: `monologue eval logqa --log FILE --qa QA.jsonl [--retrieval-only] [--json]`.

The log file is ingested into a fresh temporary embedded Space, every
question is asked through the Agent, and the figures are: recall@1/5/10 (the
QA's gold RawLog among the first k cited lines; the gold is the message part
of a raw line, so a line matches when it contains the whitespace-trimmed
gold), answer exact match and token F1 (skipped with --retrieval-only), and
latency percentiles. Data: LogQA (Huang et al. 2023) over Loghub 2k
(Zhu et al., ISSRE 2023).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

KS = (1, 5, 10)


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def token_f1(prediction: str, gold: str) -> float:
    pred, truth = _tokens(prediction), _tokens(gold)
    common = sum((Counter(pred) & Counter(truth)).values())
    if not pred or not truth or not common:
        return 0.0
    precision, recall = common / len(pred), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def first_match_rank(lines: list[str], gold: str) -> int | None:
    gold = " ".join(gold.split())
    for rank, line in enumerate(lines, 1):
        if gold and gold in " ".join(line.split()):
            return rank
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def evaluate(log: Path, qa: Path, retrieval_only: bool, misses=None) -> dict:
    """misses: a stream to write each question whose gold line is not cited first."""
    from .cli import embedded_agent
    from .indexer import Indexer
    from .ingest import ingest
    from .space import SpaceRegistry
    from . import wiring

    items = [json.loads(line) for line in qa.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="monologue-logqa-") as home:
        registry = SpaceRegistry(Path(home))
        space = registry.create("logqa")
        ingest(log, space.uri, show_progress=False)
        memory = wiring.embedded_memory(registry, "logqa")
        Indexer(memory.space, memory.store, wiring.local_embedder()).run_once()
        agent = embedded_agent(Path(home), ["logqa"], retrieval_only)
        ranks, exact, f1, latencies = [], [], [], []
        for item in items:
            started = time.perf_counter()
            answer = agent.ask(item["Question"], top_k=max(KS), retrieval_only=retrieval_only)
            latencies.append((time.perf_counter() - started) * 1000)
            ranks.append(first_match_rank([c.hit.text for c in answer.citations], item["RawLog"]))
            if misses is not None and ranks[-1] != 1:
                misses.write(json.dumps({"question": item["Question"], "gold": item["RawLog"], "rank": ranks[-1],
                                         "cited": [c.hit.text for c in answer.citations[:3]]}) + "\n")
            if not retrieval_only:
                exact.append(float(answer.text.strip().lower() == str(item["Answer"]).strip().lower()))
                f1.append(token_f1(answer.text, str(item["Answer"])))
    result = {
        "log": str(log), "qa": str(qa), "questions": len(items),
        **{f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / len(items) for k in KS},
        "latency_ms_p50": _percentile(latencies, 0.5), "latency_ms_p95": _percentile(latencies, 0.95),
    }
    if not retrieval_only:
        result["exact_match"] = statistics.fmean(exact)
        result["token_f1"] = statistics.fmean(f1)
    return result


def _run(args: argparse.Namespace) -> int:
    for path in (args.log, args.qa):
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    result = evaluate(args.log, args.qa, args.retrieval_only, sys.stderr if args.misses else None)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value:.3f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("logqa", help="question answering over a log file (LogQA format)",
                                   description=__doc__.split("\n\n")[1])
    parser.add_argument("--log", type=Path, required=True, help="raw log file, e.g. HDFS_2k.log")
    parser.add_argument("--qa", type=Path, required=True, help="JSON lines with Question, Answer, RawLog")
    parser.add_argument("--retrieval-only", action="store_true", help="recall figures only, no generation")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--misses", action="store_true",
                        help="write each question whose gold line is not cited first to stderr (JSON lines)")
    parser.set_defaults(run=_run)
    return parser
