"""File ingest: formats, timestamps, levels, edge cases, idempotence."""

from __future__ import annotations

import datetime as dt

import pyarrow.dataset as ds
import pytest
from monologue.agent import logschema
from monologue.agent.ingest import ingest, timestamp_of


def read(uri):
    return ds.dataset(uri, format="parquet").to_table().sort_by("timestamp").to_pylist()


def ns(text: str) -> int:
    moment = dt.datetime.fromisoformat(text)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def test_plain_json_and_logfmt_lines_become_rows_of_the_shared_schema(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(
        b"2026-11-02T09:00:00.123Z ERROR db: connection refused\r\n"
        b'{"time": "2026-11-02T09:00:01Z", "level": "warning", "msg": "slow query", "took_ms": 812}\r\n'
        b"ts=2026-11-02T09:00:02Z level=info msg=\"user logged in\" user=alice\r\n"
        b"2026-11-02 09:00:03,500 INFO started without final newline"
    )
    report = ingest(log, str(tmp_path / "space"), {"app": "shop"}, show_progress=False)
    assert report.lines == 4
    rows = read(tmp_path / "space")
    assert [r["line"] for r in rows][0] == "2026-11-02T09:00:00.123Z ERROR db: connection refused"
    assert [r["level"] for r in rows] == ["error", "warn", "info", "info"]
    assert rows[0]["timestamp"].isoformat() == "2026-11-02T09:00:00.123000+00:00"
    assert dict(rows[1]["fields"])["took_ms"] == "812"
    assert dict(rows[2]["fields"]) == {"ts": "2026-11-02T09:00:02Z", "level": "info",
                                       "msg": "user logged in", "user": "alice"}
    assert dict(rows[0]["labels"]) == {"app": "shop", "filename": "app.log"}
    labels = dict(rows[0]["labels"])
    assert rows[0]["line_id"] == logschema.line_id(labels, ns("2026-11-02T09:00:00.123+00:00"), rows[0]["line"])
    assert ds.dataset(tmp_path / "space", format="parquet").schema.equals(logschema.arrow_schema(),
                                                                          check_metadata=False)


def test_continuation_lines_take_the_timestamp_above_and_invalid_utf8_is_flagged(tmp_path):
    log = tmp_path / "trace.log"
    log.write_bytes(b"2026-11-02T09:00:00Z ERROR boom\n  at handler(app.js:10)\n\xff\xfe broken bytes\n\n")
    ingest(log, str(tmp_path / "s"), show_progress=False)
    rows = read(tmp_path / "s")
    assert len(rows) == 3
    assert len({r["timestamp"] for r in rows}) == 1
    assert [r["repaired_utf8"] for r in rows] == [False, False, True]
    assert "\ufffd" in rows[2]["line"]


def test_ingesting_the_same_file_twice_overwrites_instead_of_duplicating(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("".join(f"2026-11-02T09:00:{i:02d}Z INFO tick {i}\n" for i in range(30)))
    first = ingest(log, str(tmp_path / "s"), show_progress=False)
    second = ingest(log, str(tmp_path / "s"), show_progress=False)
    assert first.objects == second.objects
    assert len(read(tmp_path / "s")) == 30


def test_identical_lines_at_the_same_instant_are_both_kept(tmp_path):
    log = tmp_path / "dup.log"
    log.write_text("2026-11-02T09:00:00Z INFO retry\n2026-11-02T09:00:00Z INFO retry\n")
    ingest(log, str(tmp_path / "s"), show_progress=False)
    rows = read(tmp_path / "s")
    assert len({r["line_id"] for r in rows}) == 2


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        ingest(tmp_path / "nope.log", str(tmp_path / "s"))


@pytest.mark.parametrize("line,expected", [
    ("081109 203615 148 INFO dfs.DataNode: x", "2008-11-09T20:36:15+00:00"),
    ("17/06/09 20:10:40 INFO executor: x", "2017-06-09T20:10:40+00:00"),
    ("[Sun Dec 04 04:47:44 2005] [notice] x", "2005-12-04T04:47:44+00:00"),
    ("2015-10-18 18:01:47,978 INFO [main] x", "2015-10-18T18:01:47.978000+00:00"),
    ("2026-01-02T03:04:05+02:00 x", "2026-01-02T01:04:05+00:00"),
    ("Dec 10 06:55:46 LabSZ sshd[24200]: x", "2025-12-10T06:55:46+00:00"),
])
def test_timestamps_are_detected_in_common_formats(line, expected):
    latest = ns("2026-06-01T00:00:00+00:00")  # a year-less December date is last year's
    assert timestamp_of(line, None, latest) == ns(expected)
