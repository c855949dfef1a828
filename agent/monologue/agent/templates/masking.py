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
"""

from __future__ import annotations

import json
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
    parts: list[str] = []
    pending: list[tuple[int, str, str]] = []  # (index in parts, key, string to mask)
    _flatten(document, "", parts, pending)
    if pending:
        _mask_strings(parts, pending)
    return " ".join(" ".join(parts).split())


def _flatten(
    document: dict, prefix: str, parts: list[str], pending: list[tuple[int, str, str]]
) -> None:
    """Append `key=value` parts, nested objects under dotted keys; non-empty strings are
    left as placeholders in `pending`, to be masked together by `_mask_strings`."""
    for name, value in document.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if type(value) is str:
            if value:
                pending.append((len(parts), key, value))
                parts.append("")
            else:
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


# The string values of a JSON line are masked in one pass of the regexes over all of them,
# joined by `_JOIN`, instead of four passes per value: masking each value alone costs
# mostly the calls, not the scanning. The joint pass is exactly the values masked one by
# one: no variable pattern starts at, ends in or looks through `_JOIN` differently from the
# start or end of a string. Its space after a value is what the end of a string is to every
# pattern (a quantity's optional space before the unit is followed by \x00, never a unit);
# its \x00 before a value is, like the start of a string, no word character, dot, dash,
# slash, space or `<>~(`, all that the look-behinds look for. Values that contain \x00, or
# that are JSON objects themselves, are masked alone.
_JOIN = " \x00"
# Masked strings remembered per JSON key, for the keys whose values repeat (level, service,
# a message without variables...): mask() is a pure function, so this only saves work. A key
# that shows more than `_MEMO_VALUES` distinct strings holds variables: it is no longer
# remembered. Bounded: at most `_MEMO_KEYS` keys, strings of at most `_MEMO_CHARS`.
_MEMO_KEYS = 256
_MEMO_VALUES = 128
_MEMO_CHARS = 256
_memo: dict[str, dict[str, str] | None] = {}


def _mask_strings(parts: list[str], pending: list[tuple[int, str, str]]) -> None:
    """Fill `parts[i]` with `key=<masked value>` for every pending (i, key, value)."""
    memo = _memo
    todo: list[tuple[int, str, str]] = []
    joined: list[str] = []
    for item in pending:
        index, key, value = item
        known = memo.get(key)
        if known is not None:
            masked = known.get(value)
            if masked is not None:
                parts[index] = f"{key}={masked}"
                continue
        if "\x00" in value or (value[0] == "{" and value[-1] == "}"):
            masked = mask(value)
            parts[index] = f"{key}={masked}"
            _remember(key, value, masked)
            continue
        if _TWO_DOTS.search(value):
            joined.append(_DOTTED.sub(MASK, value))
        else:
            joined.append(value)
        todo.append(item)
    if not todo:
        return
    masked_all = _VARIABLE.sub(MASK, _HEX_WORD.sub(MASK, _JOIN.join(joined)))
    pieces = masked_all.split(_JOIN) if len(todo) > 1 else [masked_all]
    for (index, key, value), masked in zip(todo, pieces):
        masked = _tidy(masked)
        parts[index] = f"{key}={masked}"
        _remember(key, value, masked)


def _remember(key: str, value: str, masked: str) -> None:
    known = _memo.get(key, False)
    if known is False:
        if len(_memo) >= _MEMO_KEYS:
            return
        known = _memo[key] = {}
    if known is None or len(value) > _MEMO_CHARS:
        return
    if len(known) >= _MEMO_VALUES:
        _memo[key] = None  # a variable: too many distinct values to be worth remembering
        return
    known[value] = masked
