"""Status conditions as pure functions (Kubernetes API conventions).

A condition keeps its lastTransitionTime while its status stays the same, so
that re-running a reconcile with nothing new produces an identical status and
no write.
"""

from __future__ import annotations

import datetime
from typing import Iterable, Mapping


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str, message: str = "") -> dict:
    """A condition without its times; `merge` adds them."""
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def merge(
    old: Iterable[Mapping] | None, new: Iterable[Mapping], generation: int, at: str | None = None
) -> list[dict]:
    """The new conditions, each with observedGeneration and a lastTransitionTime kept from
    the old condition of the same type when its status did not change. Old conditions of
    types not recomputed this time are kept as they were: their observedGeneration tells
    that they describe an older spec."""
    old = list(old or ())
    previous = {c.get("type"): c for c in old}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        unchanged = before is not None and before.get("status") == cond["status"]
        transition = before.get("lastTransitionTime") if unchanged else None
        merged.append(
            {**cond, "observedGeneration": generation, "lastTransitionTime": transition or at or now()}
        )
    recomputed = {c["type"] for c in merged}
    return merged + [dict(c) for c in old or () if c.get("type") not in recomputed]


def ready(parts: list[dict], ready_message: str) -> dict:
    """Ready summarises the other conditions: the first False one gives its reason and message."""
    for cond in parts:
        if cond["status"] != "True":
            return condition("Ready", False, cond["reason"], cond["message"])
    return condition("Ready", True, "Reconciled", ready_message)


def find(conditions: Iterable[Mapping] | None, kind: str) -> Mapping | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def status_patch(current: Mapping | None, desired: Mapping) -> dict:
    """The fields of `desired` that differ from `current` (empty: nothing to write)."""
    current = current or {}
    return {key: value for key, value in desired.items() if current.get(key) != value}
