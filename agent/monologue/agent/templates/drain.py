"""Drain-style grouping of masked messages into templates.

As in Drain (He et al., ICWS 2017), messages are first routed by token count and first
token, then compared with the templates of that bucket by the fraction of positions that
agree; the most similar template above a threshold absorbs the message (positions that
differ become `<*>`), otherwise the message starts a new template. A first token that holds
a variable routes to a shared `<*>` bucket.

Differences from Drain: one prefix token instead of a configurable depth, and a template's
`<*>` positions count as agreeing, so a template that has generalised keeps attracting the
values it generalised over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .masking import MASK

# Share of agreeing positions for a message to join a template: one disagreeing position in
# five. Masking has already removed most variables, so what still differs is mostly a word
# that tells two statements apart (`VM Started` / `VM Paused`) or a name (`for user cyrus` /
# `for user news`). One value for every log source, chosen on the 16 Loghub 2k systems as a
# whole (see eval_templates): lower merges distinct statements, higher splits on names.
SIMILARITY_THRESHOLD = 0.8


@dataclass(slots=True)
class Cluster:
    """One template: a stable id, its current tokens and how many lines it absorbed."""

    id: str
    tokens: list[str]
    size: int = 0

    @property
    def template(self) -> str:
        return " ".join(self.tokens)


def bucket_key(tokens: list[str]) -> tuple[int, str]:
    first = tokens[0] if tokens else ""
    return len(tokens), MASK if MASK in first else first


class Drain:
    """Templates in buckets; `match` finds or creates the template of a token list."""

    def __init__(self, threshold: float = SIMILARITY_THRESHOLD) -> None:
        self.threshold = threshold
        self._buckets: dict[tuple[int, str], list[Cluster]] = {}

    def insert(self, cluster: Cluster) -> None:
        """Add an existing template (when loading state); keeps creation order."""
        self._buckets.setdefault(bucket_key(cluster.tokens), []).append(cluster)

    def match(self, tokens: list[str], new_id) -> tuple[Cluster, bool]:
        """The template absorbing `tokens` and whether its text changed or is new.

        `new_id(tokens)` names a template created for these tokens.
        """
        bucket = self._buckets.setdefault(bucket_key(tokens), [])
        best: Cluster | None = None
        # Agreeing positions needed, as an integer: 4 of 5 must pass at 0.8 despite floats.
        best_agree = math.ceil(self.threshold * len(tokens) - 1e-9) - 1
        for cluster in bucket:  # creation order: ties go to the older template
            agree = 0
            for t, x in zip(cluster.tokens, tokens):
                if t == x or t == MASK:
                    agree += 1
            if agree > best_agree:
                best, best_agree = cluster, agree
        if best is None:
            cluster = Cluster(new_id(tokens), list(tokens), 1)
            bucket.append(cluster)
            return cluster, True
        best.size += 1
        changed = False
        for i, (t, x) in enumerate(zip(best.tokens, tokens)):
            if t != x and t != MASK:
                best.tokens[i] = MASK
                changed = True
        return best, changed
