"""Redaction: secrets and personal data become typed placeholders before storage.

Every line is redacted before it becomes memory (vector store text, the text
that is embedded, the index files); what an agent can quote is only redacted
text. The placeholders keep their type ("[REDACTED:email]") so an answer can
still say *that* a credential leaked without repeating it.

All patterns run as one compiled alternation, one pass per line. A Space adds
its own patterns (spec.index.redact.extraPatterns), typed "custom".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# (type, pattern, trigger). A pattern may define groups `keep` and `keep2`: the
# text they match stays (a key name, a URL's user), the rest is replaced. A
# pattern runs only on lines that pass its trigger: one of some substrings (of
# the lower-cased line), or a cheap regex. Most lines pass none, and a
# substring test is far cheaper than the full pattern's scan.
Trigger = tuple[str, ...] | re.Pattern
BUILTIN_PATTERNS: list[tuple[str, str, Trigger]] = [
    ("private_key",
     r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
     ("private key",)),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", ("eyj",)),
    ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b",
     ("akia", "asia", "agpa", "aida", "aroa", "anpa")),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("slack_token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", ("xox",)),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", ("aiza",)),
    ("stripe_key", r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b", ("k_live_", "k_test_")),
    ("bearer_token", r"(?i)(?P<keep>\b(?:bearer|token)\s+)[A-Za-z0-9._~+/-]{12,}=*", ("bearer", "token")),
    ("basic_auth", r"(?i)(?P<keep>\bbasic\s+)[A-Za-z0-9+/]{12,}=*", ("basic",)),
    ("url_password", r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?P<keep2>@)", ("://",)),
    # Starts at the keyword, not at the key's first character: a leading
    # [\w.-]* before an alternation backtracks at every word (50 µs a line).
    ("secret",
     r"(?i)(?P<keep>(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
     r"access[_-]?key|private[_-]?key|credentials?|auth[_-]?key|session[_-]?id)[\w.-]*"
     r"[\"']?\s*[=:]\s*[\"']?)(?!\[REDACTED)[^\s\"',;&}]{3,}",
     ("pass", "pwd", "secret", "token", "key", "credential", "session")),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", ("@",)),
    # Card brands' prefixes and a Luhn check keep ids and counters out.
    ("card_number", r"(?<![\w-])(?:4\d{3}|5[1-5]\d{2}|3[47]\d{2}|6(?:011|5\d{2}))(?:[ -]?\d){9,15}(?![\w-])",
     re.compile(r"\d{4}[ -]?\d{4}[ -]?\d{4}")),
    ("us_ssn", r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])",
     re.compile(r"\d{3}-\d\d-\d{4}")),
]


BATCH_MIN = 256  # below this, line by line is as fast


def _luhn(digits: str) -> bool:
    total, double = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        double = not double
    return total % 10 == 0


@dataclass
class Redactor:
    extra_patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._rules: list[tuple[str, re.Pattern, Trigger]] = [
            (kind, re.compile(pattern, re.DOTALL), triggers)
            for kind, pattern, triggers in BUILTIN_PATTERNS
        ]
        for pattern in self.extra_patterns:
            try:
                self._rules.append(("custom", re.compile(pattern), ("",)))
            except re.error as err:
                raise ValueError(f"redaction pattern {pattern!r} is not a valid regex: {err}") from err

    @staticmethod
    def _replacer(kind: str, pattern: re.Pattern):
        keep, keep2 = "keep" in pattern.groupindex, "keep2" in pattern.groupindex

        def replace(match: re.Match) -> str:
            if kind == "card_number" and not _luhn(re.sub(r"\D", "", match.group(0))):
                return match.group(0)
            head = match.group("keep") if keep else ""
            tail = match.group("keep2") if keep2 else ""
            return f"{head}[REDACTED:{kind}]{tail}"

        return replace

    def redact(self, text: str) -> str:
        # Triggers test the line as it came (as redact_many does), patterns the line so far.
        original, low = text, text.lower()
        for kind, pattern, trigger in self._rules:
            hit = trigger.search(original) if isinstance(trigger, re.Pattern) else any(t in low for t in trigger)
            if hit:
                text = pattern.sub(self._replacer(kind, pattern), text)
        return text

    def redact_many(self, texts: list[str]) -> list[str]:
        """redact() of each text. A batch tests the triggers in Arrow, all lines
        at once, and runs each pattern only on the lines that passed its trigger."""
        if len(texts) < BATCH_MIN:
            return [self.redact(t) for t in texts]
        try:
            lines = pa.array(texts, pa.string())
        except (pa.ArrowException, UnicodeError):  # e.g. lone surrogates
            return [self.redact(t) for t in texts]
        lower = pc.utf8_lower(lines)
        out = list(texts)
        for kind, pattern, trigger in self._rules:
            if isinstance(trigger, re.Pattern):
                passed = pc.match_substring_regex(lines, trigger.pattern)
            elif "" in trigger:
                passed = pa.array(np.ones(len(texts), bool))
            else:  # one pass for all the rule's substrings (RE2: linear time)
                passed = pc.match_substring_regex(lower, "|".join(re.escape(t) for t in trigger))
            replace = self._replacer(kind, pattern)
            for i in np.flatnonzero(passed.to_numpy(zero_copy_only=False)).tolist():
                out[i] = pattern.sub(replace, out[i])
        return out
