"""Benchmark: a following Space's many small objects, with compaction against without, in the same run.

A generated shop log is cut into --objects Parquet objects, as a shipper
following Loki writes one every 2 s, and indexed twice: as the indexer does
(its index files merged into segments, compaction.py) and with merging off
(the baseline: one line index and one summary per object; and the shipper's
objects not combined). Figures: what a reader pays at each new index version
(an agent reloads its figures then), the index files a reader opens, the
indexing rate (what merging and combining cost), the objects left in the
Space and what a `monologue sql` over all of its lines pays.
Then, on the harness's S3, what an indexer's poll pays to find new objects
among --s3-objects: a listing from the newest indexed key (what it does)
against a listing of every object (what it does every 5 minutes). Then a
question's time range over the last --range-objects objects, cutting a summary
bucket: summed where the summaries lie inside it, and only the cut bucket
scanned, from the objects the index names whose spans meet it (what recall
does), against the whole range scanned from a listing of every object. Last, a
poll of a following embedded Space of --following-lines (LanceDB) that brings
one small object: its new rows merged into the full-text index at most once a
minute (what it does) against at every poll.

    .venv/bin/python bench/compaction.py [--objects N] [--lines-per-object N] [--s3-objects N]
                                         [--following-lines N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import servers  # noqa: E402
from monologue.agent import compaction, memory, storage  # noqa: E402
from monologue.agent.embedder import LocalEmbedder  # noqa: E402
from monologue.agent.generate import write_log  # noqa: E402
from monologue.agent.indexer import Indexer  # noqa: E402
from monologue.agent.ingest import parse, write_objects  # noqa: E402
from monologue.agent.memory import LanceStore  # noqa: E402
from monologue.agent.recall import SpaceMemory  # noqa: E402
from monologue.agent.space import Space, object_span  # noqa: E402


def emit(metric, value, unit, baseline, target=None, higher_is_better=True):
    ratio = value / baseline if higher_is_better else baseline / value
    print(json.dumps({"bench": "compaction", "metric": metric, "value": round(value, 1), "unit": unit,
                      "baseline": round(baseline, 1), "ratio": round(ratio, 2), "target": target}), flush=True)


def ship(work: Path, name: str, objects: int, per_object: int) -> Space:
    log = work / f"shop-{objects * per_object}.log"
    if not log.exists():
        write_log(log, "shop", objects * per_object, seed=5)
    with tqdm(disable=True) as progress:
        lines = pa.concat_tables(list(parse(log, {"app": "shop"}, progress))).sort_by("timestamp")
    space = Space(name, str(work / name / "data"), collection=name)
    for i in range(objects):
        write_objects(lines.slice(i * per_object, per_object), space.uri, f"flush{i:06d}")
    return space


def reload_ms(space: Space, rounds: int = 5) -> float:
    """An agent's work at a new index version: connect, read template texts, vectors and figures."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        SpaceMemory(space, None)._index()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def index_files(space: Space) -> int:
    state = space.index_state()
    return len(state.files("lines")) + len(state.files("summaries"))


def spans_of(space: Space) -> list[tuple[int, int]]:
    return sorted(object_span(str(p.relative_to(space.uri))) for p in Path(space.uri).glob("dt=*/*.parquet"))


def checkpoint(space: Space) -> None:
    """What a shipper that wrote these objects leaves beside them: every one is complete."""
    until = max(end for _, end in spans_of(space)) // 10**9
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
    (Path(space.uri) / "_checkpoint.json").write_text(json.dumps({"version": 1, "complete_until": stamp}))


def sql_all_lines_ms(space: Space, rounds: int = 3) -> tuple[float, int]:
    """Median ms of `monologue sql` counting every line of the Space, and that count."""
    times, counts = [], set()
    for _ in range(rounds):
        started = time.perf_counter()
        with contextlib.closing(space.connect()) as con:
            counts.add(con.execute("SELECT count(*) FROM logs WHERE template_id IS NOT NULL").fetchone()[0])
        times.append((time.perf_counter() - started) * 1000)
    assert len(counts) == 1, counts
    return statistics.median(times), counts.pop()


def range_question_ms(space: Space, since: int, rounds: int = 5) -> tuple[float, float, int]:
    """Median ms of the figures of a question's range from `since` on, as recall
    gets them and (the baseline) scanned whole from a listing of all; lines counted."""
    memory = SpaceMemory(space, None)
    templates = list(memory._index().texts)
    def whole_scan() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(mock.patch.object(SpaceMemory, "_split_rows", lambda *args: None))
        stack.enter_context(mock.patch.object(SpaceMemory, "_scan",
                                              lambda self, intervals, work: self._with_connection(work, lines=True)))
        return stack

    timings: dict[str, list[float]] = {"meeting": [], "all": []}
    counts = set()
    for i in range(2 * rounds):
        way = list(timings)[i % 2]  # alternating
        with whole_scan() if way == "all" else contextlib.nullcontext():
            started = time.perf_counter()
            counts.add(sum(stat.count for stat in memory.stats(templates, since, None)))
            timings[way].append((time.perf_counter() - started) * 1000)
    assert len(counts) == 1, counts  # the same figures both ways
    return statistics.median(timings["meeting"]), statistics.median(timings["all"]), counts.pop()


def poll_listing(work: Path, objects: int) -> tuple[float, float]:
    """Median ms of a listing from the newest key, and of a full one, over `objects` on S3."""
    s3 = servers.start_s3(work / "s3", work / "logs")
    try:
        os.environ.update(s3.env)
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        body = io.BytesIO()
        pq.write_table(pa.table({"line": ["x"]}), body)
        print(f"s3: writing {objects} objects...", file=sys.stderr)
        keys = [f"default/app/dt=2026-11-24/{i:06d}.parquet" for i in range(objects)]
        for key in keys:
            client.put_object(Bucket="bench", Key=key, Body=body.getvalue())
        fs, root = storage.filesystem("s3://bench/default/app")
        newest = f"bench/{keys[-2]}"  # one new object to find

        def median_ms(after):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                storage.list_files(fs, root, after)
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)

        return median_ms(newest), median_ms(None)
    finally:
        s3.server.stop()


def following_poll(work: Path, lines: int, embedder) -> tuple[float, float]:
    """Median ms of a poll that indexes one 25-line object, folding at most once a minute / every poll."""
    space = ship(work, "following", 1, lines)
    store = LanceStore(str(work / "following" / "memory"))
    indexer = Indexer(space, store, embedder)
    print(f"following: indexing {lines} lines...", file=sys.stderr)
    indexer.run_once()
    table = pq.read_table(next(p for p in (work / "following" / "data").rglob("*.parquet") if "_index" not in str(p)))
    timings: dict[float, list[float]] = {memory.FOLD_SECONDS: [], 0.0: []}
    for i in range(10):
        fold = list(timings)[i % 2]  # alternating
        part = table.slice((i + 1) * 25, 25)  # starts later: sorts after the last, as a shipper's next object
        ids = pc.binary_join_element_wise(part["line_id"], pa.array([f"poll{i}"] * 25), "-")
        write_objects(part.set_column(part.schema.get_field_index("line_id"), part.schema.field("line_id"), ids),
                      space.uri, f"poll{i:02d}")
        with mock.patch.object(memory, "FOLD_SECONDS", fold):
            started = time.perf_counter()
            assert indexer.run_once().objects == 1
            timings[fold].append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[memory.FOLD_SECONDS]), statistics.median(timings[0.0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000, help="objects shipped (2 s each: 2000 ≈ 67 min)")
    parser.add_argument("--lines-per-object", type=int, default=25)
    parser.add_argument("--s3-objects", type=int, default=10_000, help="objects on S3 for the poll's listing")
    parser.add_argument("--range-objects", type=int, default=300,
                        help="objects in a question's time range (300 ≈ the last 10 min of following)")
    parser.add_argument("--following-lines", type=int, default=200_000, help="lines of the following Space")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="monologue-bench-compaction-"))
    embedder = LocalEmbedder()
    try:
        figures = {}
        for name, merging in (("uncompacted", False), ("compacted", True)):
            space = ship(work, name, args.objects, args.lines_per_object)
            # cuts a bucket: the figures are scanned
            since = spans_of(space)[-args.range_objects][0] + 500_000_000
            if merging:
                checkpoint(space)  # so the small objects are combined as well
            indexer = Indexer(space, LanceStore(str(work / name / "memory")), embedder)
            print(f"{name}: indexing {args.objects} objects...", file=sys.stderr)
            with mock.patch.object(compaction, "SEGMENT_OBJECTS", compaction.SEGMENT_OBJECTS if merging else 10**9):
                started = time.perf_counter()
                report = indexer.run_once()
                seconds = time.perf_counter() - started
                indexer.compact(now=time.time() + compaction.GRACE_SECONDS)  # what is left a minute later
            assert report.objects == args.objects, report
            figures[name] = (reload_ms(space), index_files(space), report.lines / seconds, len(spans_of(space)),
                             *sql_all_lines_ms(space))
        (reload, files, rate, objects, sql, lines), base = figures["compacted"], figures["uncompacted"]
        assert lines == base[5] == args.objects * args.lines_per_object, (lines, base[5])
        emit("reload_ms_at_new_index_version", reload, "ms", base[0], higher_is_better=False)
        emit("index_files_read", files, "files", base[1], higher_is_better=False)
        emit("indexer_lines_per_s_small_objects", rate, "lines/s", base[2], target=">= 0.95 of baseline")
        emit("space_objects", objects, "objects", base[3], higher_is_better=False)
        emit("sql_over_all_lines_ms", sql, "ms", base[4], higher_is_better=False)
        meeting, every, lines = range_question_ms(space, since)
        print(f"range: {lines} lines in the last {args.range_objects} of {args.objects} objects", file=sys.stderr)
        emit("range_question_figures_ms", meeting, "ms", every, higher_is_better=False)
        incremental, full = poll_listing(work, args.s3_objects)
        emit("poll_listing_ms_on_s3", incremental, "ms", full, higher_is_better=False)
        amortized, every_poll = following_poll(work, args.following_lines, embedder)
        emit("following_poll_ms_embedded", amortized, "ms", every_poll, higher_is_better=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
