"""What bench/*.py share (not a benchmark itself): a figure as the JSON line each prints,
and the baseline of recall without related lines."""

from __future__ import annotations

import contextlib
import json


def emit_ratio(bench: str, metric: str, value: float, unit: str, baseline: float, target, digits: int = 3) -> None:
    """A figure whose ratio is value / baseline (lower is better: times)."""
    print(json.dumps({"bench": bench, "metric": metric, "value": round(value, 3), "unit": unit,
                      "baseline": round(baseline, 3), "ratio": round(value / baseline, digits),
                      "target": target}), flush=True)


@contextlib.contextmanager
def related_lines(enabled: bool):
    """Recall with related lines (recall.related) as it is, or without any: the baseline."""
    from monologue.agent import recall

    kept = recall.related
    recall.related = kept if enabled else (lambda *_args, **_kwargs: [])
    try:
        yield
    finally:
        recall.related = kept
