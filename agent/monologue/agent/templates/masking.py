"""Masking of variable parts of a log message before grouping.

What varies between two lines of the same log statement is almost always one of: a number,
a hex or base-N identifier, an IP address with its port, a path, a uuid, a duration, a
timestamp. All of these contain a digit, so the one generic rule is: a run of identifier
characters (word characters and `. - / @ + % # ~`) that contains a digit becomes `<*>`.
Colons, `=`, brackets and quotes end a run, so the constant part of a token survives:
`onExtend:1514038530000` -> `onExtend:<*>`, `taskID[42]` -> `taskID[<*>]`,
`10.0.0.1:50010` -> `<*>:<*>`, `uid=0` -> `uid=<*>`. Absolute paths of two or more
segments are masked even without digits.

Words without digits (user names, host names) are left to the grouping, which turns a
position into `<*>` once it sees it vary.

A run of identical masked tokens collapses into one (`(stack @<*> @<*> @<*>)` ->
`(stack @<*>)`): a list of values printed by one statement has no fixed length, and the
grouping compares lines of equal token count.

JSON objects are templated on their keys: `{"level": "info", "msg": "took 5 ms", "n": 3}`
-> `level=info msg=took <*> ms n=<*>`; numbers become `<*>`, strings are masked like any
message, booleans and null are kept (they are usually constants of the statement).
"""

from __future__ import annotations

import json
import re

MASK = "<*>"

_ID_CHARS = r"\w.\-/@+%#~"
_VARIABLE = re.compile(
    # A run of identifier characters with a digit in it; the look-behind makes the engine
    # try each run once from its start instead of from every character.
    rf"(?<![{_ID_CHARS}])[{_ID_CHARS}]*\d[{_ID_CHARS}]*"
    # An absolute path of two or more segments.
    r"|(?<![\w.])(?:/[\w.\-@~%+]+){2,}/?"
)
_REPEATED_MASKS = re.compile(r"(?<!\S)(\S*<\*>\S*)(?:\s+\1(?!\S))+")


def mask(message: str) -> str:
    """The message with variables replaced by `<*>` and runs of spaces by one space."""
    if message[:1] == "{" and message[-1:] == "}":
        flat = _json_tokens(message)
        if flat is not None:
            return flat
    masked = _VARIABLE.sub(MASK, message)
    if MASK + " " in masked:
        masked = _REPEATED_MASKS.sub(r"\1", masked)
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
