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

_LOGFMT_PAIR = re.compile(r'([A-Za-z_][\w.\-/]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def parse_fields(line: str) -> dict[str, str] | None:
    """Top-level keys of a JSON object or logfmt line; None for other lines."""
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
    pairs = _LOGFMT_PAIR.findall(stripped)
    # logfmt only when key=value pairs make up the line, not a stray "a=b" in prose
    if len(pairs) >= 2 and sum(len(k) + len(v) + 1 for k, v in pairs) >= 0.6 * len(stripped.replace(" ", "")):
        return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}
    return None


def level_of(line: str, fields: dict[str, str] | None) -> str | None:
    return (level_from_fields(fields) if fields else None) or level_from_prefix(line)
