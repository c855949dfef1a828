"""The benchmark scripts still run, on small inputs, and print the figures they promise.

Benchmarks are scripts, not timed tests, so nothing else runs them between
measurements; an API they call can change under them unnoticed. The figures
here are not checked against targets: on such inputs they mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str, timeout: float = 600) -> dict[str, dict]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for figure in figures:
        assert {"bench", "metric", "value", "unit"} <= figure.keys(), figure
    return {figure["metric"]: figure for figure in figures}


def test_bench_memory_indexes_every_line():
    figures = run_bench("memory.py", "--lines", "5000", "--naive-sample", "50", "--indexer-only")
    assert figures["indexer_lines_per_s"]["value"] > 0
    assert figures["indexer_lines_per_s"]["target"] == 20000


def test_bench_agents_measures_both_stores_and_concurrent_asks():
    figures = run_bench("agents.py", "--lines", "3000", "--asks", "3", "--concurrent-asks", "3")
    for store in ("embedded", "weaviate"):
        assert figures[f"recall_ms_p50_{store}"]["value"] > 0
        assert figures[f"search_ms_p50_{store}"]["baseline"] > 0  # grep, the same run
    assert figures["concurrent_asks_errors"]["value"] == 0
    assert figures["concurrent_asks_errors"]["asks"] == 3


def test_bench_weaviate_index_compares_both_indexes_with_and_without_related_lines():
    figures = run_bench("weaviate_index.py", "--lines", "3000", "--asks", "3")
    for metric in ("embedded_with_related", "weaviate_blockmax_with_related", "weaviate_classic_with_related",
                   "weaviate_classic_without_related"):
        figure = figures[f"recall_ms_p50_{metric}"]
        assert figure["value"] > 0 and figure["baseline"] > 0  # the baseline measured in the same run


def test_bench_compaction_compares_with_no_merging():
    figures = run_bench("compaction.py", "--objects", "140", "--lines-per-object", "10", "--s3-objects", "200",
                        "--range-objects", "30", "--following-lines", "2000")
    assert figures, "no figures printed"
    assert all(figure["value"] is not None for figure in figures.values())



def test_bench_answers_checks_facts_against_the_prompt():
    figures = run_bench("answers.py", "--lines", "5000", "--questions", "2", "--causes", "1")
    assert figures["facts_in_prompt"]["of"] == 3  # a count, then a count and a time
    assert 0 <= figures["facts_stated"]["value"] <= 3
    assert figures["causes_in_prompt"]["of"] == 1 and 0 <= figures["causes_in_prompt"]["baseline"] <= 1
    assert figures["answer_s_p50"]["value"] > 0
