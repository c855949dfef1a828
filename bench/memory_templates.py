"""Benchmark: template mining throughput and grouping accuracy against Drain3 (defaults).

Input: the raw lines of all 16 Loghub 2k systems (32,000 lines; Loghub, Zhu et al.,
ISSRE 2023), read from $MONOLOGUE_DATA/loghub_2k (default: ../shared/data beside the
checkout). Each round mines every system with a fresh miner, ours and Drain3's in turn, so
both see the same machine load; the figure is the median round. Prints one JSON object per
figure:

- template_mining_lines_per_s: lines/s of monologue's TemplateMiner, baseline Drain3 with
  its default configuration on the same lines in the same run;
- template_ga_mean: mean grouping accuracy over the 16 systems, baseline Drain3 default.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from monologue.agent.eval_templates import (
    default_data_dir,
    drain3_default_ids,
    grouping_accuracy,
    loghub_systems,
    read_log,
    read_truth,
)
from monologue.agent.templates import TemplateMiner

ROUNDS = 5


def _ours(lines: list[str]) -> list[str]:
    return [m.template_id for m in TemplateMiner().add_many(lines)]


def _lines_per_s(mine, corpora: list[list[str]]) -> float:
    total = sum(len(c) for c in corpora)
    start = time.perf_counter()
    for lines in corpora:
        mine(lines)
    return total / (time.perf_counter() - start)


def main() -> int:
    root = default_data_dir() / "loghub_2k"
    systems = loghub_systems(root) if root.is_dir() else []
    if not systems:
        print(f"skipped: no Loghub 2k data under {root} (set MONOLOGUE_DATA)", file=sys.stderr)
        return 0
    corpora = [read_log(log) for _, log, _ in systems]
    truths = [read_truth(truth) for _, _, truth in systems]

    ours, drain3 = [], []
    for _ in range(ROUNDS):
        ours.append(_lines_per_s(_ours, corpora))
        drain3.append(_lines_per_s(drain3_default_ids, corpora))
    value, baseline = statistics.median(ours), statistics.median(drain3)
    print(json.dumps({
        "bench": "memory", "metric": "template_mining_lines_per_s", "value": round(value),
        "unit": "lines/s", "baseline": round(baseline), "ratio": round(value / baseline, 3),
        "target": 1.0,
    }))

    ga = statistics.mean(grouping_accuracy(_ours(c), t) for c, t in zip(corpora, truths))
    ga_drain3 = statistics.mean(
        grouping_accuracy(drain3_default_ids(c), t) for c, t in zip(corpora, truths)
    )
    print(json.dumps({
        "bench": "memory", "metric": "template_ga_mean", "value": round(ga, 4), "unit": "GA",
        "baseline": round(ga_drain3, 4), "ratio": round(ga / ga_drain3, 3), "target": 0.9,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
