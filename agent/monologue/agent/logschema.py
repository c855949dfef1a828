"""The shared schema of shipped log lines (schema/logs.json), on the Python side.

The Go shipper writes these columns and the Python data plane reads and writes
them; both follow schema/logs.json and test against schema/line_id_vectors.json,
so a line gets the same line_id and level whichever side parsed it.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

SCHEMA_FILE = Path(__file__).with_name("logs_schema.json")

_ARROW_TYPES = {
    "timestamp[ns, tz=UTC]": pa.timestamp("ns", tz="UTC"),
    "map<string, string>": pa.map_(pa.string(), pa.string()),
    "string": pa.string(),
    "bool": pa.bool_(),
}


@lru_cache(maxsize=1)
def spec() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


@lru_cache(maxsize=1)
def arrow_schema() -> pa.Schema:
    return pa.schema(
        [pa.field(c["name"], _ARROW_TYPES[c["arrow_type"]], nullable=c["nullable"]) for c in spec()["columns"]]
    )


def label_prefix(labels: dict[str, str]) -> bytes:
    """The labels' part of a line_id, computed once per stream."""
    return b"".join(f"{k}\0{labels[k]}\0".encode() for k in sorted(labels))


def line_id(labels: dict[str, str] | bytes, timestamp_ns: int, line: str) -> str:
    prefix = labels if isinstance(labels, bytes) else label_prefix(labels)
    digest = hashlib.sha256(prefix + str(timestamp_ns).encode() + b"\0" + line.encode())
    return digest.hexdigest()[:32]


# ------------------------------------------------------------------ levels


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    return {alias: level for level, aliases in spec()["levels"].items() for alias in aliases}


def normalize_level(word: str) -> str | None:
    word = word.strip()
    return _aliases().get(word.lower()) or spec()["numeric_levels"].get(word)


def level_from_fields(fields: dict[str, str]) -> str | None:
    keys = spec()["level_keys"]
    for key in keys:
        if key in fields:
            return normalize_level(fields[key])
    lowered = {k.lower(): v for k, v in fields.items()}
    for key in keys:
        if key in lowered:
            return normalize_level(lowered[key])
    return None


_KLOG = re.compile(r"^[IWEF]\d{4}$")


def level_from_prefix(line: str) -> str | None:
    """A level word among the first 4 tokens (128 bytes) of a plain line.

    Lower-case words count only when decorated ("[info]", "info:"), so that a
    message like "fatal error avoided" is not read as a level.
    """
    for i, token in enumerate(line[:128].split(None, 4)[:4]):
        if i == 0 and _KLOG.match(token):
            return spec()["klog_prefixes"][token[0]]
        word = token.lstrip("[(<")
        trimmed = word.rstrip("])>:,|")
        decorated = len(word) != len(token) or len(trimmed) != len(word)
        if not trimmed or trimmed.isdigit() or not (decorated or trimmed == trimmed.upper()):
            continue
        if level := _aliases().get(trimmed.lower()):
            return level
    return None


# ------------------------------------------------------------------ fields
# As schema/README.md defines them, so the Go shipper and file ingest agree.

_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"
_LOGFMT_LINE = re.compile(r'[ \t]*(?:[^=\s"]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)(?:[ \t]+|$))+')
_LOGFMT_PAIR = re.compile(r'([^=\s"]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def _json_fields(line: str) -> dict[str, str] | None:
    """Top-level keys of a line that is exactly one JSON object; non-string values as written."""
    i = len(line) - len(line.lstrip(" \t"))
    if not line.startswith("{", i):
        return None
    fields: dict[str, str] = {}
    try:
        i = _skip(line, i + 1)
        if line.startswith("}", i):
            return fields if _skip(line, i + 1) == len(line) else None
        while True:
            if not line.startswith('"', i):
                return None
            key, i = json.decoder.scanstring(line, i + 1)
            i = _skip(line, i)
            if not line.startswith(":", i):
                return None
            i = _skip(line, i + 1)
            value, end = _DECODER.raw_decode(line, i)
            fields[key] = value if isinstance(value, str) else line[i:end]
            i = _skip(line, end)
            if line.startswith(",", i):
                i = _skip(line, i + 1)
            elif line.startswith("}", i):
                return fields if _skip(line, i + 1) == len(line) else None
            else:
                return None
    except (ValueError, IndexError):
        return None


def _skip(line: str, i: int) -> int:
    while i < len(line) and line[i] in _JSON_SPACE:
        i += 1
    return i


def _logfmt_fields(line: str) -> dict[str, str] | None:
    if "=" not in line or not _LOGFMT_LINE.fullmatch(line):
        return None
    fields = {}
    for key, value in _LOGFMT_PAIR.findall(line):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        fields[key] = value
    return fields


def parse_fields(line: str) -> dict[str, str] | None:
    """Top-level keys of a JSON object or logfmt line; None for other lines."""
    fields = _json_fields(line)
    return fields if fields is not None else _logfmt_fields(line)


def level_of(line: str, fields: dict[str, str] | None) -> str | None:
    """JSON and logfmt lines: their level key only; other lines: a level word up front."""
    return level_from_fields(fields) if fields is not None else level_from_prefix(line)
