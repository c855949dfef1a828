"""The time range a question names: "in the last 15 minutes", "today", "since 2026-11-02T09:40Z".

An SRE asks "what failed in the last hour?" rather than passing a range. The
phrase becomes the question's time range (a request's own range wins) and is
taken out of what is searched: "last" and "hour" are no words of the event.
Relative phrases count back from now, in UTC, as log timestamps are. A time
of day without a date ("since 09:40") names no day, so it is left alone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_UNITS = {"second": 1, "sec": 1, "minute": 60, "min": 60, "hour": 3600, "hr": 3600, "day": 86400,
          "week": 7 * 86400}
_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10,
           "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "few": 3}
_LAST = re.compile(r"\b(?:(?:in|during|over|within|for)\s+)?the\s+(?:last|past)\s+(?:(\d+|[a-z]+)\s+)?"
                   rf"({'|'.join(_UNITS)})s?\b", re.I)
_DAY = re.compile(r"\b(?:(?:during|for|on)\s+)?(today|yesterday)\b", re.I)
_ISO = r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?(?:Z|[+-]\d\d:?\d\d)?"
_BETWEEN = re.compile(rf"\bbetween\s+({_ISO})\s+and\s+({_ISO})", re.I)
_BOUND = re.compile(rf"\b(since|after|from|before|until|till|on)\s+({_ISO})", re.I)


@dataclass
class NamedRange:
    since_ns: int | None
    until_ns: int | None
    rest: str  # the question without the phrase: what is searched


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1e9)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time; without a zone, UTC (as log timestamps are). ValueError if it is none."""
    moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def _moment(text: str) -> tuple[dt.datetime, bool]:
    """The time, and whether it is a whole day (a date alone)."""
    return parse_time(text), len(text) == 10


def named_range(question: str, now: dt.datetime | None = None) -> NamedRange | None:
    """The range the question names, or None."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if (found := _LAST.search(question)) and (count := _count(found.group(1))):
        seconds = count * _UNITS[found.group(2).lower()]
        return NamedRange(_ns(now - dt.timedelta(seconds=seconds)), None, _cut(question, found))
    if found := _DAY.search(question):
        day = dt.datetime.combine(now.date(), dt.time(), dt.timezone.utc)
        if found.group(1).lower() == "yesterday":
            return NamedRange(_ns(day - dt.timedelta(days=1)), _ns(day), _cut(question, found))
        return NamedRange(_ns(day), None, _cut(question, found))
    try:
        if found := _BETWEEN.search(question):
            (start, _), (end, whole_day) = _moment(found.group(1)), _moment(found.group(2))
            return NamedRange(_ns(start), _ns(end + dt.timedelta(days=whole_day)), _cut(question, found))
        since = until = None
        rest = question
        for found in _BOUND.finditer(question):
            moment, whole_day = _moment(found.group(2))
            word = found.group(1).lower()
            if word == "on":
                since, until = _ns(moment), _ns(moment + dt.timedelta(days=1))
            elif word in ("since", "from"):
                since = _ns(moment)
            elif word == "after":
                since = _ns(moment + dt.timedelta(days=whole_day))
            else:
                until = _ns(moment)
            rest = rest.replace(found.group(0), " ")
    except ValueError:  # not a real date (2026-13-45): left in the question
        return None
    return NamedRange(since, until, " ".join(rest.split())) if since or until else None


def _count(word: str | None) -> int:
    if word is None:
        return 1  # "the last hour"
    return int(word) if word.isdigit() else _COUNTS.get(word.lower(), 0)


def _cut(question: str, found: re.Match) -> str:
    return " ".join((question[:found.start()] + " " + question[found.end():]).split())
