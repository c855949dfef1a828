"""Masking of variable parts of a log message before grouping.

What varies between two lines of the same log statement is almost always one of: a number,
a hex or base-N identifier, an IP address with its port, a path, a uuid, a duration or size,
a timestamp, a host name. Generic rules, no per-format list:

- a quantity with a unit (`5 ms`, `<1 sec`, `18.4 KB`) is one value;
- a run of identifier characters (word characters and `. - / @ + % # ~`) that contains a
  digit is a value. Colons (unless between digits), `=`, brackets and quotes end a run, so
  the constant part of a token survives: `onExtend:1514038530000` -> `onExtend:<*>`,
  `taskID[42]` -> `taskID[<*>]`, `uid=0` -> `uid=<*>`, `10.0.0.1:50010` -> `<*>`;
- a dotted name of three or more parts (`node3.example.org`, `org.apache.Foo`) and an
  absolute path are values even without digits.

Other words without digits (user names, short host names) are left to the grouping, which
turns a position into `<*>` once it sees it vary.

A run of tokens made only of masks and punctuation collapses into one `<*>`
(`(stack @<*> @<*> @<*>)` -> `(stack <*>)`, `<*> (<*>) sent` -> `<*> sent`): a list of values
printed by one statement has no fixed length, and the grouping compares lines of equal token
count.

JSON objects are templated on their keys: `{"level": "info", "msg": "took 5 ms", "n": 3}`
-> `level=info msg=took <*> ms n=<*>`; numbers become `<*>`, strings are masked like any
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
_VARIABLE = re.compile(
    # A quantity with its unit, `5 ms`, `<1 sec`, `18.4 KB`: the unit is part of the value.
    rf"[<>~]?\d+(?:\.\d+)?\s?(?:{_UNITS})(?![\w.])"
    # An absolute path or URL path, with its query string.
    r"|(?<![\w.])/(?:[\w.\-@~%+]|:(?=\d))+(?:/[\w.\-@~%+]*)*(?:\?[^\s\"']*)?"
    # A run of identifier characters with a digit in it (a colon between digits too:
    # `12:30:01`, `10.0.0.1:8080`); the look-behind makes the engine try each run once from
    # its start instead of from every character.
    rf"|(?<![{_ID_CHARS}])(?<!\d:)[{_ID_CHARS}]*\d(?:[{_ID_CHARS}]|:(?=\d))*"
    # A dotted name of three or more parts: host names, Java classes, Android packages.
    r"|(?<![\w.\-])[A-Za-z_][\w\-]*(?:\.[\w\-]+){2,}"
    # An empty value: `connection from 10.0.0.1 () at ...` prints `(<*>)` for other lines.
    r"|(?<=\s\()(?=\)(?!\S))"
)
# A run of tokens made only of masks and punctuation: `<*> <*>`, `@<*> @<*>`, `<*> (<*>)`.
_MASK_RUN = re.compile(r"(?<!\S)[^\w\s]*<\*>[^\w\s]*(?:\s+[^\w\s]*<\*>[^\w\s]*)+(?!\S)")


def mask(message: str) -> str:
    """The message with variables replaced by `<*>` and runs of spaces by one space."""
    if message[:1] == "{" and message[-1:] == "}":
        flat = _json_tokens(message)
        if flat is not None:
            return flat
    masked = _VARIABLE.sub(MASK, message)
    if MASK + " " in masked:
        masked = _MASK_RUN.sub(MASK, masked)
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
