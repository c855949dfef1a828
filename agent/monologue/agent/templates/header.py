"""Generic recognition of log line headers (timestamp, level, host, component, pid...).

Real log lines carry a header before the message: `2015-10-18 18:01:47,978 INFO [main] Foo:`,
`Jun 14 15:16:01 combo sshd[19939]:`, `[Sun Dec 04 04:47:44 2005] [notice]`... Templates must
be mined on the message only: header tokens either vary on every line (timestamps, pids), or
split one message into as many templates as there are components and levels.

No format is configured per system. A line is cut into units (whitespace-separated tokens, a
bracketed group counting as one unit) and each unit gets a token class: number or timestamp
piece, month or weekday name, severity level, host-like name, bracketed group, separator,
component (`name:`, `name[pid]:`), or plain word. The header is the longest leading run of
header-like units (`_scan`), where plain words only count when their position makes them
header fields: right before a component (`combo sshd[1]:`) or a dash (`chrome.exe *64 -`),
before a level (`RAS KERNEL INFO`), in a space-padded column after the level
(`Info     CBS    msg`), or sandwiched between numbers before any delimiter
(`node-17 action start 1074126278 1`).

Per stream, the class sequence of a recognised header becomes a compiled pattern; the next
lines of the stream are cut by the first pattern that matches them, which keeps the cut at the
same position for every line of a stream (a message that happens to start with a number is not
eaten by one line and kept by the next) and is several times faster than scanning. Patterns
are only ever appended, so a line is always cut by the same pattern after a restart.

Lines without a header match no pattern and are scanned each time; the scan stops after the
first units when the first one already ends it (logfmt lines, most plain messages), and
JSON lines are not scanned at all.
"""

from __future__ import annotations

import re

# Classes of header units. Single letters keep the persisted patterns short.
NUMBER = "n"  # starts with a digit: dates, times, epoch seconds, pids, sequence numbers
MONTH = "m"  # month or weekday name (syslog, ctime)
LEVEL = "l"  # severity
HOST = "h"  # a name with digits, dots, dashes or slashes: hosts, nodes, dotted classes
BRACKET = "b"  # [ ... ], possibly nested one level and containing spaces
SEPARATOR = "s"  # a lone dash between header and message (`- INFO [x] - message`)
COMPONENT = "c"  # a program or logger name closing the header with a colon
WORD = "w"  # a plain word that sits in a header position

_LEVELS = frozenset(
    "trace debug info information notice warn warning error err severe fatal critical crit "
    "alert emerg emergency failure panic".split()
)
# Android/logcat style one-letter levels.
_LETTER_LEVELS = frozenset("VDIWEFA")
_MONTHS = frozenset(
    "jan feb mar apr may jun jul aug sep oct nov dec mon tue wed thu fri sat sun".split()
)

_BRACKET = r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
# A unit is a bracketed group or a run of non-space characters.
_UNIT = re.compile(r"\s*(" + _BRACKET + r"|\S+)")
_HOST = re.compile(r"[A-Za-z_#][\w.\-:/@#]*")
# Anything ending in a colon without another colon or `=` before it: `sshd[42]:`,
# `org.apache.Foo:`, `([31211]):`; or a source location closing a klog header
# (`controller.go:123]`). Only ever looked at in header positions.
_COMPONENT_RE = r"(?:[^\s:={\"'][^\s:=]*:|[\w.\-/]+:\d+\])"
_COMPONENT = re.compile(_COMPONENT_RE)
# Per-class regexes for compiled stream patterns. Most are looser than `classify`: the
# position already tells the class, so they only need to reject units of another kind.
_PATTERN_PARTS = {
    NUMBER: r"-?\d\S*",
    MONTH: r"[A-Za-z]{3}",
    LEVEL: "(?:(?i:" + "|".join(sorted(_LEVELS)) + ")|[" + "".join(sorted(_LETTER_LEVELS)) + "])",
    HOST: r"[A-Za-z_]\S*",
    BRACKET: _BRACKET,
    SEPARATOR: r"-",
    COMPONENT: _COMPONENT_RE,
    WORD: r"[^\s\[]\S*",
}
# Pipe-delimited records (`time|component|pid|message`): see `_pipe_header`.
_PIPE_FIELD = re.compile(r"[^\s|]+\|")

# Units a header may have, and patterns a stream may learn: bounds on work and state.
MAX_HEADER_UNITS = 14
MAX_PATTERNS_PER_STREAM = 16


def classify(unit: str) -> str:
    """The token class of one header unit."""
    first = unit[0]
    if first.isdigit() or (first == "-" and unit[1:2].isdigit()):
        return NUMBER
    if first == "[" and unit[-1] == "]":
        return BRACKET
    if unit == "-":
        return SEPARATOR
    if "=" in unit:
        return WORD  # `key=value`: no level, month, component or host has a `=`
    lower = unit.lower()
    if lower in _LEVELS or unit in _LETTER_LEVELS:
        return LEVEL
    if lower in _MONTHS:
        return MONTH
    if unit[-1] in ":]" and _COMPONENT.fullmatch(unit):
        return COMPONENT
    if _HOST.fullmatch(unit) and any(c.isdigit() or c in ".-/@#" for c in unit):
        return HOST
    return WORD


def _units(
    line: str, limit: int = MAX_HEADER_UNITS + 3, pos: int = 0
) -> list[tuple[str, int, bool]]:
    """The first `limit` units of a line from `pos`: (text, offset where it ends, whether 2+
    spaces follow)."""
    units = []
    for _ in range(limit):
        m = _UNIT.match(line, pos)
        if m is None:
            break
        end = m.end()
        units.append((m.group(1), end, line.startswith("  ", end)))
        pos = end
    return units


# Units that decide whether a line's first unit ends the scan: the first unit, and what the
# scan looks ahead at from there (two classes, and up to five for `_sandwiched`).
_FIRST_UNITS = 6


# Three `key=value` units and a fourth starting with a letter (logfmt): no header, as the
# first unit is a plain word (a `=` in it) followed by neither a component, a dash nor a
# level, and not by words sandwiched before numbers (the fourth unit is no number).
_NO_HEADER = re.compile(r"\s*(?:[A-Za-z_][^\s=]*=\S*\s+){3}[A-Za-z_]")


def _scan(line: str) -> tuple[str, int]:
    """Recognise the header of one line: (class sequence, offset where the message starts)."""
    if _NO_HEADER.match(line):
        return "", 0
    # Most lines without a header (logfmt, plain messages) are told apart by their first
    # units: scan those first, and all of them only when the first one is not the end.
    units = _units(line, _FIRST_UNITS)
    classes = [classify(u) for u, _, _ in units]
    taken, stop = _take(units, classes)
    if stop != 0 and len(units) == _FIRST_UNITS:
        more = _units(line, MAX_HEADER_UNITS + 3 - _FIRST_UNITS, units[-1][1])
        units += more
        classes += [classify(u) for u, _, _ in more]
        taken, _ = _take(units, classes)
    n = len(units)
    if taken >= n:
        # Everything looked like a header: keep the last unit as the message rather than
        # mining an empty one.
        taken = n - 1
    if taken <= 0:
        return "", 0
    return "".join(classes[:taken]), units[taken - 1][1]


def _take(units: list[tuple[str, int, bool]], classes: list[str]) -> tuple[int, int]:
    """How many units the header takes, and the unit the scan stopped at (-1: none).

    Stopping at the first unit only looked at the first `_FIRST_UNITS` units.
    """
    taken = 0  # units accepted into the header
    # A delimiter (level, component, bracket, mid-line dash) means the header has a clear
    # structure; after one, plain words no longer extend it.
    delimited = False
    n = len(units)
    for i in range(min(n, MAX_HEADER_UNITS)):
        cls = classes[i]
        if cls == COMPONENT:
            return i + 1, i
        if cls in (NUMBER, MONTH, HOST):
            if SEPARATOR in classes[1:i] and classes[i + 1 : i + 2] != [SEPARATOR]:
                # After `prog - `, values belong to the message, unless they are a field
                # between dashes: `ts - app.db - INFO - msg`.
                return taken, i
            taken = i + 1
        elif cls in (LEVEL, BRACKET) or (cls == SEPARATOR and i > 0):
            delimited = True
            taken = i + 1
        elif cls == SEPARATOR:
            taken = i + 1
        else:  # a plain word: part of the header only in a header position
            nxt = classes[i + 1 : i + 3]
            if not delimited and nxt[:1] == [COMPONENT]:
                taken = i + 1  # host before `program[pid]:`
            elif nxt[:1] == [SEPARATOR] and (
                SEPARATOR not in classes[1:i] or nxt[1:2] == [LEVEL]
            ):
                # The field before the ` - ` that ends the header, or between dashes
                # before the level: `ts - app - INFO - msg`.
                taken = i + 1
            elif classes[i - 1 : i] == [LEVEL] and units[i][2]:
                taken = i + 1  # a padded column right after the level: `Info  CBS   msg`
            elif LEVEL not in classes[:i] and LEVEL in nxt and all(
                c in (WORD, LEVEL) for c in nxt[: nxt.index(LEVEL)]
            ):
                taken = i + 1  # type/facility words before the level
            elif not delimited and _sandwiched(classes, i):
                taken = i + 1
            else:
                return taken, i
    return taken, -1


def _sandwiched(classes: list[str], i: int) -> bool:
    """Whether the words at i are header fields between numbers.

    Up to three words followed by two numbers or names, with a message after them:
    `2286759 full partition status 1061219795 -1 running`. A single number after words is
    not enough: `Took 5 ms` has no header.
    """
    j = i
    while j < len(classes) and classes[j] == WORD and j - i < 3:
        j += 1
    return (
        j + 2 < len(classes)
        and classes[j] == NUMBER
        and classes[j + 1] in (NUMBER, HOST, MONTH)
    )


def _pipe_header(line: str) -> int:
    """Offset of the message in a `time|component|pid|message` record, or 0.

    Leading pipe-terminated fields without spaces are header fields when the first one
    starts with a digit (a timestamp); the message follows the last of them.
    """
    if not line[:1].isdigit():
        return 0
    pos = 0
    while (m := _PIPE_FIELD.match(line, pos)) is not None:
        pos = m.end()
    return pos


def _compile(classes: str) -> re.Pattern[str]:
    parts = [_PATTERN_PARTS[c] for c in classes]
    return re.compile(r"\s*" + r"\s+".join(parts) + r"(?=\s|$)")


class HeaderModel:
    """Header patterns learned for one stream (a file, a pod's output...)."""

    __slots__ = ("_patterns", "_pipe")

    def __init__(self, patterns: list[str] | None = None) -> None:
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        self._pipe = False
        for classes in patterns or []:
            self._learn(classes)

    def _learn(self, classes: str) -> None:
        if classes == "|":
            self._pipe = True
        else:
            self._patterns.append((classes, _compile(classes)))

    @property
    def patterns(self) -> list[str]:
        """The learned class sequences, in the order they are tried (for persistence)."""
        return (["|"] if self._pipe else []) + [c for c, _ in self._patterns]

    def message(self, line: str) -> str:
        """The line without its header."""
        if line[:1] == "{":
            return line.strip()  # a JSON document: its fields say what is what
        for _, pattern in self._patterns:
            m = pattern.match(line)
            if m is not None:
                return line[m.end() :].strip()
        if self._pipe or (not self._patterns and "|" in line[:40]):
            start = _pipe_header(line)
            if start:
                self._pipe = True
                return line[start:].strip()
        classes, start = _scan(line)
        # A header that is the prefix of a known one is an odd line (a component name with
        # a space in it...), not a new format: cut it but do not learn from it.
        if (
            classes
            and len(self._patterns) < MAX_PATTERNS_PER_STREAM
            and not any(known.startswith(classes) for known, _ in self._patterns)
        ):
            self._learn(classes)
        return line[start:].strip()
