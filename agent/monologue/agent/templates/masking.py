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
_VARIABLE = re.compile(
    r"[0-9<>~/(-]"
    r"(?:"
    # A quantity with its unit, `5 ms`, `<1 sec`, `18.4 KB`: the unit is part of the value.
    rf"(?<=[<>~0-9])(?<![\w.][<>~])(?<=[<>~]|\d)\d*(?:\.\d+)?\s?(?:{_UNITS})(?![\w.])"
    # An absolute path or URL path, with its port and query string.
    r"|(?<=/)(?<![\w.]/)(?:[\w.\-@~%+]|:(?=\d))+(?:/[\w.\-@~%+]*)*(?:\?[^\s\"']*)?"
    # From a digit (or a sign before one) to the end of the run of identifier characters,
    # a colon between digits included: `blk_-42` -> `blk_<*>`, `10.0.0.1:8080` -> `<*>`.
    rf"|(?<=\d)(?:[{_ID_CHARS}]|:(?=\d))*"
    rf"|(?<=-)(?=\d)(?:[{_ID_CHARS}]|:(?=\d))+"
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
_REPEATED_MASKED = re.compile(r"(?<!\S)(\S*<\*>\S*)(?:\s+\1(?!\S))+")
# A run of tokens made only of masks and punctuation: `<*> <*>`, `@<*> @<*>`, `<*> (<*>)`.
_MASK_RUN = re.compile(r"(?<!\S)[^\w\s]*<\*>[^\w\s]*(?:\s+[^\w\s]*<\*>[^\w\s]*)+(?!\S)")


def mask(message: str) -> str:
    """The message with variables replaced by `<*>` and runs of spaces by one space."""
    if message[:1] == "{" and message[-1:] == "}":
        flat = _json_tokens(message)
        if flat is not None:
            return flat
    if _TWO_DOTS.search(message):
        message = _DOTTED.sub(MASK, message)
    masked = _VARIABLE.sub(MASK, _HEX_WORD.sub(MASK, message))
    if _MASKED_PAIR.search(masked):
        masked = _MASK_RUN.sub(MASK, _REPEATED_MASKED.sub(r"\1", masked))
    return " ".join(masked.split())


def _json_tokens(message: str) -> str | None:
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    parts: list[str] = []
    _flatten(document, "", parts)
    return " ".join(" ".join(parts).split())


def _flatten(value: object, key: str, parts: list[str]) -> None:
    """Append `key=value` parts, nested objects under dotted keys."""
    if isinstance(value, dict):
        for name, item in value.items():
            _flatten(item, f"{key}.{name}" if key else str(name), parts)
        return
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, (int, float)):
        text = MASK
    elif isinstance(value, str):
        text = mask(value) if value else ""
    else:  # a list: its length and items vary from line to line
        text = MASK
    parts.append(f"{key}={text}")
