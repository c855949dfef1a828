"""Which templates are instances of a more general one, for exact figures.

Template ids never change and templates are never merged (see `miner`), so a
pattern can be split over several ids: `order placed ... user=dave` was
created before its sibling generalised to `order placed ... <*>`, and the
miner's masked-message shortcut keeps sending every later `user=dave` line to
it (20k generated shop lines: 168 of the 1,940 orders). Counting the general
template alone answers "how many orders?" with 1,772. So figures are taken
over a template's group: itself and every template it covers, where
"covers" means same token count and, position by position, the same token or
a `<*>` that can stand for it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .masking import MASK


@lru_cache(maxsize=1 << 14)
def _token_pattern(token: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in token.split(MASK)), re.S)


def covers(general: str, specific: str) -> bool:
    """Every line of `specific` also fits `general` (equal texts cover each other)."""
    return _covers(general.split(), specific.split())


def _covers(general: list[str], specific: list[str]) -> bool:
    if len(general) != len(specific):
        return False
    for a, b in zip(general, specific):
        if a != b and (MASK not in a or _token_pattern(a).fullmatch(b) is None):
            return False
    return True


class PatternGroups:
    """Which templates cover which. `texts` maps template id -> text, oldest
    first: of two equal texts, the older covers the younger."""

    def __init__(self, texts: dict[str, str]):
        order = {tid: n for n, tid in enumerate(texts)}
        # A cover's first token is the line's own or holds a <*>: look only there, as Drain does.
        split = {tid: text.split() for tid, text in texts.items()}
        buckets: dict[tuple[int, str], list[str]] = {}
        for tid, tokens in split.items():
            # A template of wildcards alone (`<*> <*>`) is where the miner put what fitted
            # nowhere else: it says nothing of the lines of the same length elsewhere.
            if MASK in texts[tid] and any(token != MASK for token in tokens):
                buckets.setdefault((len(tokens), MASK if MASK in tokens[0] else tokens[0]), []).append(tid)
        self.covered: dict[str, list[str]] = {}  # template -> the templates it covers
        for tid, tokens in split.items():
            if not tokens:
                continue
            candidates = buckets.get((len(tokens), tokens[0]), []) + buckets.get((len(tokens), MASK), [])
            covering = [g for g in candidates if g != tid and _covers(split[g], tokens)
                        and (split[g] != tokens or order[g] < order[tid])]  # equal texts: the oldest covers
            for g in covering:
                self.covered.setdefault(g, []).append(tid)

    def group(self, template_ids: list[str]) -> dict[str, list[str]]:
        """For these templates, in their order, leaving out those that another
        of them covers: template -> it and every template it covers."""
        inside = {c for tid in template_ids for c in self.covered.get(tid, ())}
        return {tid: [tid, *self.covered.get(tid, ())] for tid in dict.fromkeys(template_ids) if tid not in inside}
