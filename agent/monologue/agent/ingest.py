"""File ingest without Loki: a log file becomes Parquet objects of a Space.

Plain text, JSON lines and logfmt are recognised line by line; timestamps and
levels are detected; CRLF and a missing final newline are handled. Rows get
the shipper's schema (logschema), so a Space cannot tell a file from Loki.
Objects are named from the file's content, so ingesting the same file twice
overwrites instead of duplicating.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from . import logschema, storage

BATCH_LINES = 100_000
MAX_LINE_BYTES = 64 * 1024

_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s?(Z|[+-]\d{2}:?\d{2})?"
)
_SLASHED = re.compile(r"(\d{2}|\d{4})/(\d{2})/(\d{2})[ -](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?")
_COMPACT = re.compile(r"^(\d{2})(\d{2})(\d{2}) (\d{2})(\d{2})(\d{2})\b")  # yyMMdd HHmmss
# "Dec 10 06:55:46" (syslog, no year) and "Dec 04 04:47:44 2005" (ctime)
_SYSLOG = re.compile(r"\b([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?: (\d{4}))?\b")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")  # logcat
_EPOCH = re.compile(r"(?<![\d.])(1\d{9})(?:\.(\d{1,9}))?(?![\d.])")  # seconds, 2001..2286
_TIME_KEYS = ("ts", "time", "timestamp", "@timestamp", "t", "datetime", "date")


@dataclass
class IngestReport:
    lines: int
    objects: list[str]
    bytes: int


def _ns(year, month, day, hour, minute, second, fraction="", tz=None) -> int | None:
    try:
        moment = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                             tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    ns = int(moment.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        ns -= sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60) * 1_000_000_000
    return ns


def _epoch_ns(value: str) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    for scale in (1e9, 1e6, 1e3, 1):  # seconds, ms, µs, ns by magnitude
        if number * scale < 1e19 and number * scale > 1e17:
            return int(number * scale)
    return None


def _without_year(latest_ns: int, month, *rest) -> int | None:
    year = dt.datetime.fromtimestamp(latest_ns / 1e9, dt.timezone.utc).year
    ns = _ns(year, month, *rest)
    return _ns(year - 1, month, *rest) if ns and ns > latest_ns else ns


def timestamp_of(line: str, fields: dict[str, str] | None, latest_ns: int) -> int | None:
    """Nanoseconds since the epoch (UTC when the line names no zone), or None.

    latest_ns bounds dates written without a year (syslog): they fall in the
    year of latest_ns, or the year before when that would be later than it.
    """
    if fields:
        for key in _TIME_KEYS:
            if value := fields.get(key):
                return _epoch_ns(value) or timestamp_of(value, None, latest_ns)
    head = line[:80]
    if m := _ISO.search(head):
        return _ns(*m.groups())
    if m := _SLASHED.search(head):
        y, mo, d, h, mi, s, frac = m.groups()
        return _ns(int(y) + 2000 if len(y) == 2 else y, mo, d, h, mi, s, frac)
    if m := _COMPACT.match(head):
        y, mo, d, h, mi, s = m.groups()
        return _ns(int(y) + 2000, mo, d, h, mi, s)
    if (m := _SYSLOG.search(head)) and m.group(1).lower() in _MONTHS:
        mon, d, h, mi, s, frac, stated_year = m.groups()
        if stated_year:
            return _ns(stated_year, _MONTHS[mon.lower()], d, h, mi, s, frac)
        return _without_year(latest_ns, _MONTHS[mon.lower()], d, h, mi, s, frac)
    if m := _MONTH_DAY.match(head):
        return _without_year(latest_ns, *m.groups())
    if m := _EPOCH.search(head[:40]):
        return _epoch_ns(m.group(0))
    return None


def _lines(f: BinaryIO, progress: tqdm) -> Iterator[tuple[str, bool, bool]]:
    """(line, truncated, repaired_utf8) for each line; CRLF and a missing final newline handled."""
    for raw in f:
        progress.update(len(raw))
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        truncated = len(raw) > MAX_LINE_BYTES
        raw = raw[:MAX_LINE_BYTES] if truncated else raw
        try:
            yield raw.decode("utf-8"), truncated, False
        except UnicodeDecodeError:
            yield raw.decode("utf-8", errors="replace"), truncated, True


def parse(path: Path, labels: dict[str, str], progress: tqdm) -> Iterator[pa.Table]:
    """Tables of up to BATCH_LINES rows in the shared schema, in file order."""
    latest_ns = int((path.stat().st_mtime + 86400) * 1e9)
    prefix = logschema.label_prefix(labels)
    label_items = list(labels.items())
    previous_ts: int | None = None
    pending: list[tuple] = []  # lines before the first timestamp in the file
    rows: list[tuple] = []
    with open(path, "rb") as f:
        for line, truncated, repaired in _lines(f, progress):
            fields = logschema.parse_fields(line)
            ts = timestamp_of(line, fields, latest_ns)
            row = [ts, line, fields or {}, logschema.level_of(line, fields), truncated, repaired]
            if ts is None and previous_ts is None:
                pending.append(row)
                continue
            if ts is None:
                # A continuation line (stack trace, wrapped message) belongs to the line above.
                row[0] = previous_ts
            else:
                previous_ts = ts
            if pending:
                for p in pending:
                    p[0] = previous_ts
                rows.extend(pending)
                pending = []
            rows.append(row)
            if len(rows) >= BATCH_LINES:
                yield _table(rows, prefix, label_items)
                rows = []
    if pending:  # no timestamp anywhere: the file's modification time
        mtime_ns = int(path.stat().st_mtime * 1e9)
        for p in pending:
            p[0] = mtime_ns
        rows.extend(pending)
    if rows:
        yield _table(rows, prefix, label_items)


def _table(rows: list[list], prefix: bytes, label_items: list[tuple[str, str]]) -> pa.Table:
    ts, lines, fields, levels, truncated, repaired = zip(*rows)
    ids, seen = [], {}
    for t, line in zip(ts, lines):
        lid = logschema.line_id(prefix, t, line)
        # The same line at the same instant twice is two events: the second gets
        # a counter so both are kept (Loki would have deduplicated them).
        if lid in seen:
            seen[lid] += 1
            lid = logschema.line_id(prefix, t, f"{line}\0{seen[lid]}")
        else:
            seen[lid] = 0
        ids.append(lid)
    n = len(rows)
    return pa.table(
        {
            "timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "labels": pa.array([label_items] * n, pa.map_(pa.string(), pa.string())),
            "line": pa.array(lines, pa.string()),
            "line_id": pa.array(ids, pa.string()),
            "level": pa.array(levels, pa.string()),
            "fields": pa.array([list(f.items()) for f in fields], pa.map_(pa.string(), pa.string())),
            "truncated": pa.array(truncated, pa.bool_()),
            "repaired_utf8": pa.array(repaired, pa.bool_()),
        },
        schema=logschema.arrow_schema(),
    )


def _stamp(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def write_objects(table: pa.Table, space_uri: str, tag: str) -> list[str]:
    """One Parquet object per day at <space>/dt=YYYY-MM-DD/<start>_<end>_<tag>.parquet."""
    fs, root = storage.filesystem(space_uri)
    table = table.sort_by("timestamp")
    days = pc.strftime(table["timestamp"], format="%Y-%m-%d")
    written = []
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, day))
        start, end = part["timestamp"][0].value, part["timestamp"][-1].value
        path = storage.join(root, f"dt={day}", f"{_stamp(start)}_{_stamp(end)}_{tag}.parquet")
        storage.ensure_parent(fs, path)
        pq.write_table(part, path, filesystem=fs, compression="zstd")
        written.append(path)
    return written


def ingest(path: Path, space_uri: str, labels: dict[str, str] | None = None,
           show_progress: bool | None = None) -> IngestReport:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    labels = {"filename": path.name, **(labels or {})}
    digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    size = path.stat().st_size
    objects, lines = [], 0
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"ingest {path.name}", file=sys.stderr,
              disable=not (sys.stderr.isatty() if show_progress is None else show_progress),
              mininterval=0.5) as progress:
        for i, table in enumerate(parse(path, labels, progress)):
            lines += table.num_rows
            objects += write_objects(table, space_uri, f"{digest.hexdigest()[:12]}-{i:04d}")
    return IngestReport(lines, objects, size)
