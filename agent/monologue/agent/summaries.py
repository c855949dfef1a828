"""Template summaries: the exact figures of recall, without scanning every line.

An answer carries figures for each recalled template: how many lines, first
and last seen, and the most frequent label and field values (which pods,
which users). Scanning the Space for them took 1.9 s per question at 1M lines.
So the indexer writes, beside each object's line index, a small table of that
object's figures per template; recall sums those tables (a few thousand rows).

One table shape serves both: per template, one row without a key (its lines,
first and last timestamp in the object) and one row per label/field value
(its count). A key with more than MAX_DISTINCT values (ids, times) says
little and is left out of the figures; its summary keeps one row with no value
that marks it, so summing objects leaves it out too. Values are redacted,
since fields carry secrets as much as lines do.

Summing the rows of objects whose lines all fall inside a question's time
range is exact; when an object straddles the range edge, recall scans instead
(`summarize` over the lines in range), so the figures stay exact either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from .redact import Redactor

MAX_DISTINCT = 20  # keys with more distinct values (ids, times) say little
TOP_VALUE_KEYS = 4
TOP_VALUES_PER_KEY = 3

SUMMARY_SCHEMA = pa.schema([
    ("template_id", pa.string()),
    ("key", pa.string()),  # null: the template's own row
    ("value", pa.string()),  # null on a key row: the key has more than MAX_DISTINCT values
    ("lines", pa.int64()),
    ("first_seen", pa.timestamp("ns", tz="UTC")),
    ("last_seen", pa.timestamp("ns", tz="UTC")),
])


@dataclass
class TemplateFigures:
    template_id: str
    count: int
    first_seen_ns: int
    last_seen_ns: int
    top_values: list[tuple[str, str, int]] = field(default_factory=list)


def summarize(con: duckdb.DuckDBPyConnection, source: str, redactor: Redactor) -> pa.Table:
    """The summary rows of `source` (a table with columns template_id,
    timestamp, labels, fields)."""
    totals = f"""SELECT template_id, NULL::VARCHAR AS key, NULL::VARCHAR AS value, count(*) AS lines,
                        min(timestamp) AS first_seen, max(timestamp) AS last_seen
                 FROM {source} s WHERE template_id IS NOT NULL GROUP BY template_id"""
    values = f"""
        WITH kv AS (SELECT template_id, timestamp, unnest(map_entries(labels)) AS e FROM {source} s
                    WHERE template_id IS NOT NULL
                    UNION ALL
                    SELECT template_id, timestamp, unnest(map_entries(fields)) AS e FROM {source} s
                    WHERE template_id IS NOT NULL),
             counted AS (SELECT template_id, e.key AS key, e.value AS value, count(*) AS lines,
                                min(timestamp) AS first_seen, max(timestamp) AS last_seen
                         FROM kv GROUP BY ALL),
             ranked AS (SELECT *, count(*) OVER w AS distinct_values,
                               row_number() OVER (w ORDER BY lines DESC, value) AS rank
                        FROM counted WINDOW w AS (PARTITION BY template_id, key))
        SELECT template_id, key, CASE WHEN distinct_values <= {MAX_DISTINCT} THEN value END AS value,
               lines, first_seen, last_seen
        FROM ranked WHERE distinct_values <= {MAX_DISTINCT} OR rank = 1"""
    total_rows = con.sql(totals).to_arrow_table()
    value_rows = con.sql(values).to_arrow_table()
    return pa.concat_tables([total_rows.cast(SUMMARY_SCHEMA), _redacted(value_rows.cast(SUMMARY_SCHEMA), redactor)])


def _redacted(rows: pa.Table, redactor: Redactor) -> pa.Table:
    """Values redacted as the line `key=value` would be; values that become the
    same placeholder are counted together."""
    merged: dict[tuple, list] = {}
    # Timestamps as int64 ns: Python's datetime has microseconds only.
    columns = [rows[c].cast(pa.int64()) if c.endswith("_seen") else rows[c] for c in SUMMARY_SCHEMA.names]
    for tid, key, value, lines, first, last in zip(*(c.to_pylist() for c in columns)):
        if value is not None:
            redacted = redactor.redact(f"{key}={value}")
            value = redacted[len(key) + 1:] if redacted.startswith(f"{key}=") else "[REDACTED]"
        slot = merged.get((tid, key, value))
        if slot is None:
            merged[(tid, key, value)] = [lines, first, last]
        else:
            slot[0] += lines
            slot[1], slot[2] = min(slot[1], first), max(slot[2], last)
    keys = list(merged)
    return pa.table({
        "template_id": [k[0] for k in keys], "key": [k[1] for k in keys], "value": [k[2] for k in keys],
        "lines": [merged[k][0] for k in keys],
        "first_seen": pa.array([merged[k][1] for k in keys], pa.int64()).cast(SUMMARY_SCHEMA.field("first_seen").type),
        "last_seen": pa.array([merged[k][2] for k in keys], pa.int64()).cast(SUMMARY_SCHEMA.field("last_seen").type),
    }, schema=SUMMARY_SCHEMA)


def figures(rows: list[tuple]) -> dict[str, TemplateFigures]:
    """Summary rows (template_id, key, value, lines, first_ns, last_ns) of any
    number of objects, summed into each template's figures."""
    out: dict[str, TemplateFigures] = {}
    counts: dict[str, dict[str, dict[str | None, int]]] = {}
    for tid, key, value, lines, first, last in rows:
        if key is None:
            fig = out.get(tid)
            if fig is None:
                out[tid] = TemplateFigures(tid, lines, first, last)
            else:
                fig.count += lines
                fig.first_seen_ns, fig.last_seen_ns = min(fig.first_seen_ns, first), max(fig.last_seen_ns, last)
        else:
            per_value = counts.setdefault(tid, {}).setdefault(key, {})
            per_value[value] = per_value.get(value, 0) + lines
    for tid, keys in counts.items():
        if tid not in out:
            continue
        useful = {k: vs for k, vs in keys.items() if None not in vs and len(vs) <= MAX_DISTINCT}
        # Keys that vary a little say most (which pods, which users); keys with
        # one value come next.
        chosen = sorted(useful, key=lambda k: (len(useful[k]) == 1, len(useful[k]), k))[:TOP_VALUE_KEYS]
        for k in chosen:
            ordered = sorted(useful[k].items(), key=lambda item: (-item[1], item[0]))
            out[tid].top_values += [(k, v, n) for v, n in ordered[:TOP_VALUES_PER_KEY]]
    return out
