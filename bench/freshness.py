"""make bench-freshness: seconds from pushing a line into Loki until the Agent cites it.

Runs the end-to-end test (tests/e2e): the operator's Deployments (model servers,
shipper, indexer, agent) as local processes with default settings, the real Loki,
S3, Weaviate and kube-apiserver of the harness. Each sample pushes a line with a
unique word and asks the Agent (retrieval only, every 0.2 s) until a citation holds
it. Baseline, same run and same lines: until Loki's own query_range returns the line.
Prints one JSON object per figure (bench, metric, value, unit, baseline, ratio, target).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from figures import emit_ratio

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 5
TARGET_SECONDS = 10.0


def emit(metric, value, unit, baseline, target):
    emit_ratio("freshness", metric, value, unit, baseline, target, digits=1)


def main() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MONOLOGUE_E2E_FRESHNESS_SAMPLES": str(SAMPLES)},
    )
    line = next((l for l in result.stdout.splitlines() if l.startswith("freshness_seconds=")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"the end-to-end test failed ({result.returncode}):\n{result.stdout[-5000:]}")
    figures = dict(pair.split("=", 1) for pair in line.split())
    loki = float(figures["loki_seconds"])
    emit(f"seconds_from_push_to_answerable_median_of_{SAMPLES}", float(figures["freshness_seconds"]), "s",
         loki, TARGET_SECONDS)
    emit(f"seconds_from_push_to_answerable_max_of_{SAMPLES}", float(figures["max_seconds"]), "s",
         loki, TARGET_SECONDS)
    emit(f"seconds_from_push_to_s3_median_of_{SAMPLES}", float(figures["shipped_seconds"]), "s", loki, None)


if __name__ == "__main__":
    main()
