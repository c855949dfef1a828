"""Masking of variable parts of a log message before grouping.

What varies between two lines of the same log statement is almost always one of: a number,
a hex identifier, an IP address with its port, a path, a uuid, a duration or size, a
timestamp, a host name. Generic rules, no per-format list:

- a quantity with a unit (`5 ms`, `<1 sec`, `18.4 KB`) is one value;
- from a digit (or a minus sign before one) to the end of its run of identifier characters
  (word characters and `. - / @ + % # ~`, and a colon between digits) is a value. What
  precedes the digit in the token is kept, so the constant part of a token survives:
  `onExtend:1514038530000` -> `onExtend:<*>`, `taskID[42]` -> `taskID[<*>]`,
  `uid=0` -> `uid=<*>`, `blk_-42` -> `blk_<*>`, `10.0.0.1:50010` -> `<*>`;
- a hex identifier starting with a letter (`c0000700`), a dotted name of three or more parts
  (`node3.example.org`, `org.apache.Foo`), an absolute or URL path with its query string, and
  an empty `()` are values too.

Other words without digits (user names, short host names) are left to the grouping, which
turns a position into `<*>` once it sees it vary.

A run of one masked token repeated collapses into one (`blk_<*> blk_<*>` -> `blk_<*>`), and
so does a run of tokens made only of masks and punctuation (`(stack @<*> @<*>)` ->
`(stack <*>`, `<*> (<*>) sent` -> `<*> sent`): a list of values
printed by one statement has no fixed length, and the grouping compares lines of equal token
count.

JSON objects are templated on their keys: `{"level": "info", "msg": "took 5 ms", "n": 3}`
-> `level=info msg=took <*> n=<*>`; numbers become `<*>`, strings are masked like any
message, booleans and null are kept (they are usually constants of the statement).

Speed (a third to a half of an application log is JSON lines): the string values of a JSON
object are masked in one regex pass over all of them, not one per value (`_mask_joined`),
and each shape of object (its keys in order and the types of its values) gets a `_Plan`,
a format string holding the strings that have been the same in every line of that shape so
far, already masked. These are pure shortcuts: `mask()` returns exactly what masking each
value alone returns, which agent/tests/test_templates_fast.py checks against the plain
algorithm.
"""

from __future__ import annotations

import json
import operator
import re

MASK = "<*>"

_ID_CHARS = r"\w.\-/@+%#~"
_UNITS = (
    r"ns|us|µs|ms|s|sec|secs|seconds?|mins?|minutes?|hrs?|hours?|days?"
    r"|[kKMGTP]i?B|bytes?|[kKMGT]bps"
)
# Every alternative starts with one character of the leading class and tells which by a
# look-behind: a pattern that opens with a character class lets the regex engine skip, in C,
# every position where no variable can start. That makes masking four times faster than
# the same alternatives written plainly, and masking is most of the cost of mining a line.
# Repetitions are possessive (`*+`): none of them ever needs to give a character back for
# the match to succeed (what follows is optional, or cannot start with what they take), so
# this only spares the engine backtracking into them: the matches are the same, faster.
_VARIABLE = re.compile(
    r"[0-9<>~/(-]"
    r"(?:"
    # A quantity with its unit, `5 ms`, `<1 sec`, `18.4 KB`: the unit is part of the value.
    rf"(?<=[<>~0-9])(?<![\w.][<>~])(?<=[<>~]|\d)\d*+(?:\.\d+)?+\s?+(?:{_UNITS})(?![\w.])"
    # An absolute path or URL path, with its port and query string.
    r"|(?<=/)(?<![\w.]/)(?:[\w.\-@~%+]++|:(?=\d))++(?:/[\w.\-@~%+]*+)*+(?:\?[^\s\"']*+)?+"
    # From a digit (or a sign before one) to the end of the run of identifier characters,
    # a colon between digits included: `blk_-42` -> `blk_<*>`, `10.0.0.1:8080` -> `<*>`.
    rf"|(?<=\d)[{_ID_CHARS}]*+(?::(?=\d)[{_ID_CHARS}]*+)*+"
    rf"|(?<=-)(?=\d)[{_ID_CHARS}]++(?::(?=\d)[{_ID_CHARS}]*+)*+"
    # An empty value `()`: `connection from 10.0.0.1 () at` is `(<*>)` in other lines.
    r"|(?<=\s\()(?=\)(?!\S))"
    r")"
)
# A dotted name of three or more parts: host names, Java classes, Android packages. Masked
# first, as a whole (`adsl-12.example.org`, not `adsl<*>`), and only when a cheap search
# finds two dots: it starts with a letter, so it cannot use the fast start above.
_DOTTED = re.compile(r"(?<![\w.\-])[A-Za-z_][\w\-]*(?:\.[\w\-]+){2,}")
_TWO_DOTS = re.compile(r"\.[A-Za-z_][\w\-]*\.")
# A hex identifier that starts with a letter (`c0000700`, `e3871ffd-5cd5-...`), masked before
# the digits inside it are. Kept out of `_VARIABLE`: a-f in its leading class would stop
# the fast skip at most letters of every message.
# Dash-joined hex groups are one value: a uuid is `<*>` whatever its first character.
_HEX_WORD = re.compile(
    r"[a-f](?<![\w.\-][a-f])(?=[0-9a-f]{7})[0-9a-f]*\d[0-9a-f]*(?:-[0-9a-f]+)*(?![\w.])"
)
# Two neighbouring tokens with masks: the only case the two collapses below can change.
_MASKED_PAIR = re.compile(r"<\*>\S*\s+\S*<\*>")
# A run of one masked token repeated: `blk_<*> blk_<*> blk_<*>`.
_REPEATED_MASKED = re.compile(r"(?<!\S)(\S*<\*>\S*+)(?:\s+\1(?!\S))+")
# A run of tokens made only of masks and punctuation: `<*> <*>`, `@<*> @<*>`, `<*> (<*>)`.
_MASK_RUN = re.compile(r"(?<!\S)[^\w\s]*<\*>[^\w\s]*(?:\s+[^\w\s]*<\*>[^\w\s]*)+(?!\S)")
# What every such run contains; found fast, as it starts with a literal `<`.
_MASK_RUN_PAIR = re.compile(r"<\*>[^\w\s]*\s+[^\w\s]*<\*>")


def mask(message: str) -> str:
    """The message with variables replaced by `<*>` and runs of spaces by one space."""
    if message[:1] == "{" and message[-1:] == "}":
        flat = _json_tokens(message)
        if flat is not None:
            return flat
    if _TWO_DOTS.search(message):
        message = _DOTTED.sub(MASK, message)
    return _tidy(_VARIABLE.sub(MASK, _HEX_WORD.sub(MASK, message)))


def _tidy(masked: str) -> str:
    """Collapse the runs of masked tokens; one space between tokens."""
    tokens = masked.split()
    if _MASKED_PAIR.search(masked):
        # The collapses are slow regexes (a back-reference; no first character to skip
        # to), so each runs only when it can change something: a repeated token needs two
        # equal tokens, a run of masks and punctuation needs `_MASK_RUN_PAIR`.
        changed = False
        if len(set(tokens)) < len(tokens):
            masked = _REPEATED_MASKED.sub(r"\1", masked)
            changed = True
        if _MASK_RUN_PAIR.search(masked):
            masked = _MASK_RUN.sub(MASK, masked)
            changed = True
        if changed:
            tokens = masked.split()
    return " ".join(tokens)


def _json_tokens(message: str) -> str | None:
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    values = tuple(document.values())
    shape = (tuple(document), tuple(map(type, values)))
    plan = _plans.get(shape)
    if plan is None:
        if len(_plans) >= _MAX_PLANS:
            return _json_general(document)
        plan = _plans[shape] = _Plan.first(shape, values)
    if plan:
        if plan.constants != plan.get_constants(values):
            plan = _plans[shape] = plan.varying(values)
        flat = plan.apply(values)
        if flat is not None:
            return flat
    return _json_general(document)


# The string values of a JSON line are masked in one pass of the regexes over all of them,
# joined by `_JOIN`, instead of four passes per value: masking a short value costs mostly
# the calls, not the scanning. The joint pass is exactly the values masked one by one: no
# pattern starts at, ends in or looks through `_JOIN` differently from the start or end of
# a string. Its space after a value is what the end of a string is to every pattern (a
# quantity's optional space before the unit is followed by `^`, never a unit); its `^`
# before a value is, like the start of a string, no word character, dot, dash, slash, space
# or `<>~(`, all that the look-behinds look for. Values that contain `^`, or are JSON
# objects themselves (masked as JSON), are masked alone. `^` is printable, so that
# `isprintable()` finds whitespace other than spaces.
_SEPARATOR = "^"
_JOIN = " " + _SEPARATOR
# Masks in neighbouring tokens of one value (the separator stops `[^\s^]`): `_tidy` may
# collapse them.
_MASKED_PAIR_IN_VALUE = re.compile(r"<\*>[^\s^]*\s+[^\s^]*<\*>")


def _mask_joined(strings: tuple[str, ...] | list[str]) -> list[str] | None:
    """mask() of each string, in one pass; None if one of them must be masked alone."""
    joined = _JOIN.join(strings)
    if "{" in joined or joined.count(_SEPARATOR) != len(strings) - 1:
        return None
    if _TWO_DOTS.search(joined):  # the gate of `_DOTTED` is per value
        joined = _JOIN.join(
            [_DOTTED.sub(MASK, v) if _TWO_DOTS.search(v) else v for v in strings]
        )
    masked = _VARIABLE.sub(MASK, _HEX_WORD.sub(MASK, joined))
    if (
        # Each value has single spaces between words and none around them: `_tidy` would
        # not change it (the separator is a space, a `^`: doubled or beside another space
        # when a value starts or ends with one).
        masked.isprintable()
        and "  " not in masked
        and _SEPARATOR + " " not in masked
        and masked[:1] != " "
        and masked[-1:] != " "
        and not _MASKED_PAIR_IN_VALUE.search(masked)
    ):
        return masked.split(_JOIN)
    return [_tidy(piece) for piece in masked.split(_JOIN)]


def _getter(indexes: list[int]):
    """A function from a tuple to the tuple of its items at `indexes`."""
    if len(indexes) == 1:
        index = indexes[0]
        return lambda values: (values[index],)
    if not indexes:
        return lambda values: ()
    return operator.itemgetter(*indexes)


class _Plan:
    """How to template the JSON objects of one shape (their keys in order, and the type of
    each value), so that a line costs one regex pass and one format call.

    The strings that were the same in every line of the shape so far are in the template
    already, masked: `time={0} level=info msg=took <*> ok={b0} n=<*>`. A line whose
    constants differ makes a new plan in which they vary. Plans are immutable.
    """

    __slots__ = ("keys", "types", "constants", "get_constants", "_varying", "_get_varying",
                 "_booleans", "_format", "_constant_template")

    def __init__(self, keys, types, constant: dict[int, str]) -> None:
        self.keys, self.types = keys, types
        fields = []
        varying: list[int] = []
        self._booleans: list[int] = []
        for i, (key, kind) in enumerate(zip(keys, types)):
            name = key.replace("{", "{{").replace("}", "}}")
            if kind is str:
                if i in constant:
                    text = mask(constant[i]) if constant[i] else ""
                    fields.append(f"{name}=" + text.replace("{", "{{").replace("}", "}}"))
                else:
                    fields.append(f"{name}={{{len(varying)}}}")
                    varying.append(i)
            elif kind is bool:
                fields.append(f"{name}={{b{len(self._booleans)}}}")
                self._booleans.append(i)
            elif kind is type(None):
                fields.append(f"{name}=null")
            else:  # a number, or a list: its length and items vary from line to line
                fields.append(f"{name}={MASK}")
        template = " ".join(fields)
        indexes = sorted(constant)
        self.constants = tuple(constant[i] for i in indexes)
        self.get_constants = _getter(indexes)
        self._varying = varying
        self._get_varying = _getter(varying) if varying else None
        self._format = template.format
        self._constant_template = (
            template.format() if not varying and not self._booleans else None
        )

    @classmethod
    def first(cls, shape, values: tuple) -> _Plan | bool:
        """The plan of a shape from its first line, or False for the shapes left to
        `_json_general`: nested objects, and keys with whitespace (the template would
        respace them)."""
        keys, types = shape
        for key, kind in zip(keys, types):
            if kind is dict or not key or key.split() != [key]:
                return False
        return cls(keys, types, {i: v for i, v in enumerate(values) if types[i] is str})

    def varying(self, values: tuple) -> _Plan:
        """The plan in which the constants that `values` does not share vary."""
        constant = {
            i: v
            for i, v in zip(sorted(i for i, k in enumerate(self.types)
                                   if k is str and i not in self._varying), self.constants)
            if values[i] == v
        }
        return _Plan(self.keys, self.types, constant)

    def apply(self, values: tuple) -> str | None:
        """The template of a line of this shape with these constants; None if a string
        must be masked alone."""
        if self._constant_template is not None:
            return self._constant_template
        pieces: list[str] | tuple = ()
        if self._get_varying is not None:
            pieces = _mask_joined(self._get_varying(values))
            if pieces is None:
                return None
        if self._booleans:
            flags = {f"b{n}": "true" if values[i] else "false"
                     for n, i in enumerate(self._booleans)}
            return self._format(*pieces, **flags)
        return self._format(*pieces)


_plans: dict[tuple[tuple[str, ...], tuple[type, ...]], _Plan | bool] = {}
_MAX_PLANS = 4096


def _json_general(document: dict) -> str:
    parts: list[str] = []
    pending: list[tuple[int, str]] = []  # (index in parts, string to mask)
    _flatten(document, "", parts, pending)
    if pending:
        strings = [value for _, value in pending]
        masked = _mask_joined(strings)
        if masked is None:
            masked = [mask(value) for value in strings]
        for (index, _), text in zip(pending, masked):
            parts[index] += text
    return " ".join(" ".join(parts).split())


def _flatten(document: dict, prefix: str, parts: list[str], pending: list[tuple[int, str]]) -> None:
    """Append `key=value` parts, nested objects under dotted keys; a non-empty string is
    left as `key=` in `parts` and (index, string) in `pending`, to be masked."""
    for name, value in document.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if type(value) is str:
            if value:
                pending.append((len(parts), value))
            parts.append(key + "=")
        elif isinstance(value, dict):
            _flatten(value, key, parts, pending)
        elif value is True:
            parts.append(key + "=true")
        elif value is False:
            parts.append(key + "=false")
        elif value is None:
            parts.append(key + "=null")
        else:  # a number, or a list: its length and items vary from line to line
            parts.append(key + "=" + MASK)
