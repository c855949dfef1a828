"""Time ranges named in a question."""

from __future__ import annotations

import datetime as dt

import pytest
from monologue.agent.timewords import named_range

NOW = dt.datetime(2026, 11, 25, 12, 30, tzinfo=dt.timezone.utc)


def at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1e9)


@pytest.mark.parametrize("question, since, until, rest", [
    ("What failed in the last 15 minutes?", "2026-11-25T12:15", None, "What failed ?"),
    ("which pods restarted over the past two hours", "2026-11-25T10:30", None, "which pods restarted"),
    ("errors during the last hour?", "2026-11-25T11:30", None, "errors ?"),
    ("what broke the past 3 days", "2026-11-22T12:30", None, "what broke"),
    ("Why did logins fail today?", "2026-11-25T00:00", None, "Why did logins fail ?"),
    ("Why did logins fail yesterday?", "2026-11-24T00:00", "2026-11-25T00:00", "Why did logins fail ?"),
    ("errors since 2026-11-02T09:40Z?", "2026-11-02T09:40", None, "errors ?"),
    ("errors after 2026-11-02", "2026-11-03T00:00", None, "errors"),
    ("errors before 2026-11-02T09:40:30", None, "2026-11-02T09:40:30", "errors"),
    ("what failed on 2026-11-02?", "2026-11-02T00:00", "2026-11-03T00:00", "what failed ?"),
    ("errors between 2026-11-01 and 2026-11-02", "2026-11-01T00:00", "2026-11-03T00:00", "errors"),
    ("errors from 2026-11-02T09:00Z until 2026-11-02T10:00Z", "2026-11-02T09:00", "2026-11-02T10:00", "errors"),
])
def test_a_named_range_bounds_the_lines_and_leaves_the_search(question, since, until, rest):
    named = named_range(question, NOW)
    assert (named.since_ns, named.until_ns) == (since and at(since), until and at(until))
    assert named.rest == rest


@pytest.mark.parametrize("question", [
    "What is the last block received?",      # "last" names no span of time
    "How long did the last task take?",
    "What happened since 09:40?",            # a time of day names no day
    "errors since 2026-13-45",               # no such date
    "errors in the last several hours",      # no count it knows
])
def test_no_range_is_made_up(question):
    assert named_range(question, NOW) is None
