"""Benchmark: the indexer end to end, against embedding every line, in the same run.

A generated shop log (several services, JSON, logfmt and plain lines; default
1M lines) is ingested into an embedded Space, then indexed: redact, mine
templates, embed each new template once, write memory (LanceDB) and the SQL
index. Baseline: the naive indexer that embeds every line, whose rate is at
most the embedding rate measured here on a sample of the same lines.
Then the template-mining figures against Drain3 (bench/memory_templates.py).

    .venv/bin/python bench/memory.py [--lines N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from monologue.agent.embedder import LocalEmbedder
from monologue.agent.generate import write_log
from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore
from monologue.agent.space import Space

NAIVE_SAMPLE = 2000


def emit(metric, value, unit, baseline, target):
    print(json.dumps({"bench": "memory", "metric": metric, "value": round(value, 1), "unit": unit,
                      "baseline": round(baseline, 1), "ratio": round(value / baseline, 2), "target": target}),
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=NAIVE_SAMPLE,
                        help="lines embedded one by one for the naive baseline's rate")
    parser.add_argument("--indexer-only", action="store_true", help="without the template-mining figures on Loghub")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="monologue-bench-memory-"))
    try:
        log = work / "shop.log"
        write_log(log, "shop", args.lines, seed=11)
        print(f"generated {args.lines} lines ({log.stat().st_size / 1e6:.0f} MB); ingesting...", file=sys.stderr)
        space = Space("bench", str(work / "data"), collection="bench")
        ingest(log, space.uri, show_progress=False)

        embedder = LocalEmbedder()
        sample = log.read_text().splitlines()[:args.naive_sample]
        embedder.embed(sample[:16])
        started = time.perf_counter()
        embedder.embed(sample)
        naive = len(sample) / (time.perf_counter() - started)

        print("indexing...", file=sys.stderr)
        indexer = Indexer(space, LanceStore(str(work / "memory")), embedder)
        started = time.perf_counter()
        report = indexer.run_once()
        elapsed = time.perf_counter() - started
        assert report.lines == args.lines, report
        print(f"indexed {report.lines} lines, {report.new_templates} templates in {elapsed:.1f} s",
              file=sys.stderr)
        emit("indexer_lines_per_s", report.lines / elapsed, "lines/s", naive, 20000)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.indexer_only:
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    import memory_templates

    return memory_templates.main()


if __name__ == "__main__":
    sys.exit(main())
