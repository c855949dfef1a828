"""What every kind's reconcile shares: its context, its outcome, and how the outcome
is published (status written only when it changed; errors turned into kopf retries).

A reconcile runs from two places: the resource's own kopf handlers (which write
status through kopf's `patch`) and the watches of children and referenced
resources (which write status through the API, see watches.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import kopf

from . import conditions
from .conditions import condition
from .k8s import Kube, KubeError
from .naming import API_VERSION
from .settings import Settings
from .vectorstore import Weaviate

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 60.0


@dataclass
class Context:
    kube: Kube
    store: Weaviate
    settings: Settings


class Problem(Exception):
    """Why a reconcile could not finish. `reason` is one CamelCase word."""

    reason = "Error"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidSpec(Problem):
    """The spec cannot work as written: retrying the same spec cannot help."""

    reason = "InvalidSpec"


class Unavailable(Problem):
    """A system the operator depends on is down: retry with backoff."""

    reason = "Unavailable"


class Waiting(Problem):
    """Waiting for another resource (e.g. a Space an Agent names); its watch wakes us up."""

    reason = "Waiting"


@dataclass
class Outcome:
    status: dict
    problem: Problem | None = None


def retry_delay(retry: int) -> float:
    """Exponential backoff: 1, 2, 4, ... seconds, capped at a minute."""
    return min(2.0 ** retry, MAX_RETRY_DELAY)


def publish(outcome: Outcome, body: Mapping, patch: kopf.Patch, retry: int, logger: logging.Logger) -> None:
    """From a kopf handler: stage the changed status fields and raise what kopf should do."""
    changes = conditions.status_patch(body.get("status"), outcome.status)
    if changes:
        patch.setdefault("status", {}).update(changes)
    raise_for(outcome, retry, logger)


def raise_for(outcome: Outcome, retry: int, logger: logging.Logger) -> None:
    problem = outcome.problem
    if isinstance(problem, InvalidSpec):
        # Permanent: kopf does not retry until the spec changes (no retry storm).
        raise kopf.PermanentError(problem.message)
    if isinstance(problem, Unavailable):
        raise kopf.TemporaryError(problem.message, delay=retry_delay(retry))
    if problem is not None:
        logger.info("waiting: %s", problem.message)


def publish_via_api(ctx: Context, kind: str, body: Mapping, outcome: Outcome) -> None:
    """From a watch (outside the resource's handlers): write the changed status directly."""
    meta = body["metadata"]
    changes = conditions.status_patch(body.get("status"), outcome.status)
    if changes:
        ctx.kube.patch_status(API_VERSION, kind, meta["namespace"], meta["name"], changes)
    if outcome.problem is not None:
        log.info("%s %s/%s: %s", kind, meta["namespace"], meta["name"], outcome.problem.message,
                 extra={"reason": outcome.problem.reason})


def status_of(
    body: Mapping, parts: list[dict], ready_message: str = "", problem: Problem | None = None, **fields
) -> dict:
    """The status of a reconcile: Ready, the other conditions (`parts`), and extra fields.

    Ready is False with the problem's reason when there is a problem, else it
    summarises the parts."""
    generation = body["metadata"].get("generation", 0)
    if problem is not None:
        ready = conditions.condition("Ready", False, problem.reason, problem.message)
    else:
        ready = conditions.ready(parts, ready_message)
    new = [ready, *parts]
    old = (body.get("status") or {}).get("conditions")
    return {"observedGeneration": generation,
            "conditions": conditions.merge(old, new, generation), **fields}


def apply_children(
    ctx: Context, owner: Mapping, children: list[dict], kind: str, ok_message: str, problems: list[Problem]
) -> tuple[dict, list[dict]]:
    """Server-side apply owned children in order, stopping at the first failure.

    Returns the condition `kind` (True/Deployed, or False with why) and the
    applied objects as the API server returned them (with their status); a
    failure is also appended to `problems`."""
    applied = []
    for child in children:
        kopf.adopt(child, owner=owner)
        what = f"{child['kind']} {child['metadata']['name']}"
        try:
            applied.append(ctx.kube.apply(child))
        except KubeError as e:
            if e.invalid:
                problems.append(InvalidSpec(f"the API server rejected {what}: {e}"))
                return condition(kind, False, "InvalidSpec", str(e)), applied
            problems.append(Unavailable(str(e), reason="KubernetesUnavailable"))
            return condition(kind, False, "ApplyFailed", str(e)), applied
    return condition(kind, True, "Deployed", ok_message), applied


def worst(problems: list[Problem]) -> Problem | None:
    """An invalid spec outranks an outage: retrying cannot fix it."""
    for kind in (InvalidSpec, Unavailable):
        for problem in problems:
            if isinstance(problem, kind):
                return problem
    return problems[0] if problems else None
