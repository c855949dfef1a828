"""One figure of a benchmark as the JSON line every bench/*.py prints (not a benchmark itself)."""

from __future__ import annotations

import json


def emit_ratio(bench: str, metric: str, value: float, unit: str, baseline: float, target, digits: int = 3) -> None:
    """A figure whose ratio is value / baseline (lower is better: times)."""
    print(json.dumps({"bench": bench, "metric": metric, "value": round(value, 3), "unit": unit,
                      "baseline": round(baseline, 3), "ratio": round(value / baseline, digits),
                      "target": target}), flush=True)
