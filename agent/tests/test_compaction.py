"""Compaction: a Space's many small index files become a few segments, and no
reader ever sees a line twice or misses one while it happens."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monologue.agent import compaction, indexer as indexer_module, storage
from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore
from monologue.agent.recall import SpaceMemory
from monologue.agent.space import Space
from monologue.agent.summaries import SUMMARY_SCHEMA


def flush_lines(flush: int, n: int = 12) -> list[str]:
    """One shipper flush's worth of lines: a few seconds of two kinds of event."""
    start = dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=20 * flush)
    return [f"{(start + dt.timedelta(seconds=i)).isoformat().replace('+00:00', 'Z')} "
            + (f"INFO pod=web-{i % 3} served request {flush}-{i} in {i} ms" if i % 4 else
               f"ERROR pod=db-0 connection {flush}-{i} refused")
            for i in range(n)]


def ship(tmp_path, space, flushes: range) -> None:
    for flush in flushes:
        log = tmp_path / f"flush-{flush}.log"
        log.write_text("\n".join(flush_lines(flush)) + "\n")
        ingest(log, space.uri, show_progress=False)


@pytest.fixture
def small_segments(monkeypatch):
    monkeypatch.setattr(compaction, "SEGMENT_OBJECTS", 4)
    monkeypatch.setattr(compaction, "MERGE_FACTOR", 2)


def figures(space: Space) -> dict:
    """What a freshly started agent reads: the Space's views and its recall figures."""
    con = space.connect()
    memory = SpaceMemory(space, None)
    stats = memory.stats(list(memory._index().texts), None, None)
    return {
        "unmapped": con.execute("SELECT count(*) FROM logs WHERE template_id IS NULL").fetchone()[0],
        "lines": con.execute("SELECT count(*) FROM logs").fetchone()[0],
        "mapped": con.execute("SELECT count(*) FROM line_templates").fetchone()[0],
        "template_lines": con.execute("SELECT sum(lines) FROM templates").fetchone()[0],
        "figures": sorted((s.template, s.count, s.first_seen_ns, s.last_seen_ns, tuple(s.top_values))
                          for s in stats),
    }


def index_files(space: Space) -> list[str]:
    """Line indexes and summaries, of objects and segments."""
    root = Path(space.uri) / "_index"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet")
                  if p.parent.name in ("lines", "summaries", "segments"))


def test_a_following_spaces_index_files_become_a_few_segments_with_the_same_figures(
        tmp_path, local_embedder, small_segments):
    def indexed_space(name):
        space = Space("shop", str(tmp_path / name / "data"), collection="shop")
        ship(tmp_path, space, range(10))
        store = LanceStore(str(tmp_path / name / "memory"))
        return space, store, Indexer(space, store, local_embedder)

    uncompacted, _, indexer = indexed_space("uncompacted")
    with pytest.MonkeyPatch.context() as never:
        never.setattr(compaction, "SEGMENT_OBJECTS", 10**9)
        assert indexer.run_once().segments == 0
    before = figures(uncompacted)
    assert before["unmapped"] == 0 and before["lines"] == before["mapped"] == 120
    assert before["template_lines"] == 120

    space, store, indexer = indexed_space("compacted")
    # 4 + 4 objects: two level-0 segments, then the two make one level-1; 2 objects left.
    assert indexer.run_once().segments == 3
    state = space.index_state()
    assert state.segments == {"00000002": 1} and len(state.objects) == 2
    assert figures(space) == before

    # A grace period later the merged files are gone, and nothing else.
    assert indexer.compact(now=time.time() + compaction.GRACE_SECONDS) == 0
    assert index_files(space) == sorted(
        [f"segments/00000002.{kind}.parquet" for kind in ("lines", "objects", "summaries")]
        + [f"{d}/{key.replace('/', '__')}" for d in ("lines", "summaries") for key in state.objects])
    assert figures(space) == before

    # A restarted indexer knows every object done.
    restarted = Indexer(space, store, local_embedder)
    assert restarted.run_once().objects == 0
    assert store.count("shop") == 120


def test_no_reader_sees_a_line_twice_or_misses_one_during_compaction(tmp_path, local_embedder, small_segments,
                                                                     monkeypatch):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ship(tmp_path, space, range(9))
    seen = []
    write_atomic, delete = indexer_module.storage.write_atomic, indexer_module.storage.delete_if_exists

    def read_meanwhile(*args):
        seen.append(figures(space)["mapped"] if space.index_version() else None)

    def write_then_read(fs, path, data):
        read_meanwhile()
        write_atomic(fs, path, data)
        read_meanwhile()

    def delete_then_read(fs, path):
        read_meanwhile()
        delete(fs, path)
        read_meanwhile()

    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    with pytest.MonkeyPatch.context() as not_yet:
        not_yet.setattr(compaction, "SEGMENT_OBJECTS", 10**9)
        indexer.run_once()
    opened_before = space.connect()
    monkeypatch.setattr(indexer_module.storage, "write_atomic", write_then_read)
    monkeypatch.setattr(compaction.storage, "write_atomic", write_then_read)
    monkeypatch.setattr(compaction.storage, "delete_if_exists", delete_then_read)
    indexer.compact()
    # A query on the index as it was before the merge still finishes, for a grace period.
    assert opened_before.execute("SELECT count(*) FROM line_templates").fetchone()[0] == 108
    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    assert len(seen) > 20 and set(seen) == {108}


def test_an_object_rewritten_after_its_merge_adds_only_its_new_lines(tmp_path, local_embedder, small_segments):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    store = LanceStore(str(tmp_path / "memory"))
    ship(tmp_path, space, range(4))
    indexer = Indexer(space, store, local_embedder)
    indexer.run_once()
    assert space.index_state().segments and not space.index_state().objects

    # A backfill writes the first object again, with two late lines more.
    key = sorted(indexer.done)[0]
    path = tmp_path / "data" / key
    table = pq.read_table(path)
    late = table.slice(0, 2)
    late = late.set_column(late.schema.get_field_index("line_id"), late.schema.field("line_id"),
                          pa.array(["late-1", "late-2"]))
    pq.write_table(pa.concat_tables([table, late]), path)
    for _ in range(2):  # and once more: still nothing twice
        indexer = Indexer(space, store, local_embedder)
        report = indexer.run_once()
        assert report.objects == 1 and report.lines in (2, 0)
        got = figures(space)
        assert (got["lines"], got["mapped"], got["template_lines"]) == (50, 50, 50)
        assert store.count("shop") == 50
        pq.write_table(pa.concat_tables([table, late, late.slice(0, 0)]), path, compression="gzip")
    # The merge's garbage goes, the object's new index files stay.
    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    assert not space.index_state().garbage
    assert figures(space)["mapped"] == 50


def test_summed_rows_keep_counts_and_mark_keys_with_too_many_values():
    minute = 60 * 10**9
    rows = []
    for i in range(30):  # 30 users in the first minute, one pod throughout
        t = i * 10**9
        rows += [("t1", None, None, 1, t, t), ("t1", "user", f"u{i}", 1, t, t), ("t1", "pod", "web-0", 1, t, t)]
    rows += [("t1", None, None, 5, 2 * minute, 2 * minute + 9), ("t1", "pod", "web-0", 5, 2 * minute, 2 * minute)]
    as_ns = pa.schema([(f.name, pa.int64() if f.name.endswith("_seen") else f.type) for f in SUMMARY_SCHEMA])
    table = pa.table(list(zip(*rows)), schema=as_ns).cast(SUMMARY_SCHEMA)
    out = compaction.summed(table, 60)
    got = sorted(zip([k or "" for k in out["key"].to_pylist()], [v or "" for v in out["value"].to_pylist()],
                     out["lines"].to_pylist()))
    assert got == [("", "", 5), ("", "", 30), ("pod", "web-0", 5), ("pod", "web-0", 30), ("user", "", 30)]


def test_compaction_on_s3_merges_and_deletes_what_it_replaced(s3_env, tmp_path, local_embedder, small_segments):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="compacted")  # the harness's S3 is shared by the session's tests
    space = Space("shop", "s3://compacted/default/shop", collection="shop")
    ship(tmp_path, space, range(9))
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    assert indexer.run_once().segments == 3
    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    state = space.index_state()
    # (pyarrow leaves an empty "directory/" marker where it deleted the last file)
    listed = {o["Key"].removeprefix("default/shop/_index/")
              for o in s3.list_objects_v2(Bucket="compacted", Prefix="default/shop/_index/")["Contents"]
              if not o["Key"].endswith("/")}
    assert {f for f in listed if f.startswith(("lines/", "summaries/", "segments/"))} == (
        set(state.files("lines") + state.files("summaries"))
        | {f"segments/{name}.objects.parquet" for name in state.segments})
    got = figures(space)
    assert (got["lines"], got["mapped"], got["template_lines"], got["unmapped"]) == (108, 108, 108, 0)


def test_an_agents_reload_lists_none_of_the_spaces_objects(tmp_path, local_embedder, small_segments, monkeypatch):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ship(tmp_path, space, range(6))
    Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder).run_once()
    listed, scanned = [], []
    listing, connect_objects = Space._listed_objects_meeting, Space.connect_objects
    monkeypatch.setattr(Space, "_listed_objects_meeting", lambda self, *args: listed.append(args) or listing(
        self, *args))
    monkeypatch.setattr(Space, "connect_objects", lambda self, objects, files: scanned.append(objects) or
                        connect_objects(self, objects, files))
    memory = SpaceMemory(space, None)
    templates = list(memory._index().texts)
    assert sum(s.count for s in memory.stats(templates, None, None)) == 72
    assert memory.line_count() == 72  # what ListSpaces says
    assert not listed  # the figures come from the index alone
    day = dt.datetime(2026, 11, 2, 10, 0, 30, tzinfo=dt.timezone.utc).timestamp()
    # a time range that cuts the 10:00 bucket (flushes 0-2) is exact (flush 1's last 2 lines, flushes 2-5):
    # that bucket's part of it is scanned, from the objects the index names whose spans meet it
    # (flushes 1 and 2; nothing is listed), the rest summed
    assert sum(s.count for s in memory.stats(templates, int(day * 1e9), None)) == 2 + 4 * 12
    assert not listed
    every = sorted(str(p.relative_to(tmp_path / "data")) for p in (tmp_path / "data").glob("dt=*/*.parquet"))
    assert sorted(scanned[-1]) == every[1:3]


def test_a_range_is_still_answered_after_a_retention_rule_deleted_an_indexed_object(tmp_path, local_embedder,
                                                                                  small_segments, monkeypatch):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ship(tmp_path, space, range(6))
    Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder).run_once()
    objects = sorted((tmp_path / "data").glob("dt=*/*.parquet"))
    objects[2].unlink()  # the index still names it
    # not by a listing of the Space: only the objects at hand are looked up
    monkeypatch.setattr(Space, "_listed_objects_meeting", lambda *args: pytest.fail("listed the Space"))
    memory = SpaceMemory(space, None)
    since = dt.datetime(2026, 11, 2, 10, 0, 30, tzinfo=dt.timezone.utc).timestamp()
    assert sum(s.count for s in memory.stats(list(memory._index().texts), int(since * 1e9), None)) == 2 + 3 * 12


def test_a_view_space_reads_only_the_objects_that_may_hold_its_hits(tmp_path, local_embedder, monkeypatch):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ship(tmp_path, space, range(20))  # more error lines than a search's candidates
    store = LanceStore(str(tmp_path / "memory"))
    Indexer(space, store, local_embedder).run_once()
    scanned, connect_objects = [], Space.connect_objects
    monkeypatch.setattr(Space, "connect_objects", lambda self, objects, files: scanned.append(objects) or
                        connect_objects(self, objects, files))
    refused = SpaceMemory(Space("refused", space.uri, where="level = 'error'", collection="shop"), store)
    question = "connection 3-4 refused"
    hits = refused.search(question, local_embedder.embed([question])[0], 1, None, None)
    assert hits[0].text.endswith("ERROR pod=db-0 connection 3-4 refused")
    assert {h.level for h in hits} == {"error"}
    every = sorted(str(p.relative_to(tmp_path / "data")) for p in (tmp_path / "data").glob("dt=*/*.parquet"))
    assert 0 < len(scanned[-1]) < len(every)  # the filter read the objects of the candidates, not all


def test_any_range_gets_the_figures_of_a_scan_of_its_lines(tmp_path, local_embedder, small_segments):
    import random

    from monologue.agent import summaries

    from tqdm import tqdm

    from monologue.agent.generate import write_log
    from monologue.agent.ingest import parse, write_objects

    space = Space("shop", str(tmp_path / "data"), collection="shop")
    # A generated shop log's many templates, labels and fields, as 43 shipped objects of 25 lines:
    # level-0 segments, level-1 ones, and objects not merged yet.
    write_log(tmp_path / "shop.log", "shop", 43 * 25, seed=5)
    with tqdm(disable=True) as progress:
        lines = pa.concat_tables(list(parse(tmp_path / "shop.log", {"app": "shop"}, progress))).sort_by("timestamp")
    for i in range(43):
        write_objects(lines.slice(i * 25, 25), space.uri, f"flush{i:03d}")
    Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder).run_once()
    assert 1 in space.index_state().segments.values() and space.index_state().objects
    memory = SpaceMemory(space, None)
    templates = list(memory._index().texts)
    start, end = (ts.value for ts in (lines["timestamp"][0], lines["timestamp"][-1]))
    draw = random.Random(7)
    for _ in range(40):
        since, until = sorted(draw.randrange(start - 10**9, end + 10**9) for _ in range(2))
        since, until = draw.choice([(since, until), (since, None), (None, until)])
        whole = summaries.figures(memory._scanned_rows(templates, [(
            -(2 ** 63) if since is None else since, 2 ** 63 - 1 if until is None else until)]))
        got = {stat.template_id: stat for stat in memory.stats(templates, since, until)}
        assert {tid: (f.count, f.first_seen_ns, f.last_seen_ns, f.top_values) for tid, f in whole.items()} == {
            tid: (g.count, g.first_seen_ns, g.last_seen_ns, g.top_values) for tid, g in got.items()}, (since, until)


def test_merges_go_level_by_level_up_to_the_top():
    from monologue.agent.space import IndexState

    state = IndexState(objects={f"o{i}": 1 for i in range(compaction.SEGMENT_OBJECTS - 1)},
                       segments={f"{i:08d}": 1 for i in range(compaction.MERGE_FACTOR - 1)})
    assert compaction.next_merge(state) is None
    state.segments["00000100"] = 1
    merge = compaction.next_merge(state)
    assert (merge.level, len(merge.segments), merge.objects) == (2, compaction.MERGE_FACTOR, [])
    state.segments = {f"{i:08d}": compaction.TOP_LEVEL for i in range(2 * compaction.MERGE_FACTOR)}
    assert compaction.next_merge(state) is None  # top-level segments stay
    state.objects["o-last"] = 1
    assert compaction.next_merge(state).objects == sorted(state.objects)


def test_an_objects_span_is_read_from_the_shippers_and_ingests_names():
    from monologue.agent.space import object_span

    second = 10**9
    start = int(dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc).timestamp()) * second
    # the shipper's [start, end) and ingest's first and last line, widened to whole seconds
    assert object_span("default/shop/dt=2026-11-02/20261102T100000Z_20261102T100002Z.parquet") == (
        start, start + 3 * second)
    assert object_span("dt=2026-11-02/20261102T100000.250000Z_20261102T100011.999999Z_9f2c-0000.parquet") == (
        start, start + 12 * second)
    assert object_span("dt=2026-11-02/export.parquet") is None  # may hold any time: always read


def test_monologue_sql_over_a_time_range_reads_only_the_objects_that_meet_it(tmp_path, monkeypatch, capsys):
    from monologue.agent import cli
    from monologue.agent.space import SpaceRegistry

    space = SpaceRegistry(tmp_path / "home").create("shop")
    ship(tmp_path, space, range(6))
    read, files_dataset = [], Space._files_dataset
    monkeypatch.setattr(Space, "_files_dataset", lambda self, relative, schema: read.append(relative) or
                        files_dataset(self, relative, schema))
    assert cli.main(["--home", str(tmp_path / "home"), "sql", "--space", "shop", "--since", "2026-11-02T10:00:30Z",
                     "--until", "2026-11-02T10:01:05Z", "SELECT count(*), min(timestamp) FROM logs"]) == 0
    # flush 1's last 2 lines, flush 2's 12, flush 3's first 5 (10:01:00-04)
    assert capsys.readouterr().out.splitlines()[1].startswith("19\t2026-11-02 10:00:30")
    objects = sorted(key for keys in read for key in keys if not key.startswith("_index"))
    every = sorted(str(p.relative_to(space.uri)) for p in Path(space.uri).glob("dt=*/*.parquet"))
    assert objects == every[1:4]


# ---------------------------------------------------------------- combining the shipper's small objects

def ship_as_shipper(tmp_path, space, flushes: range, checkpoint_after: int | None) -> list[str]:
    """Objects named as the shipper names them (one per 20 s flush), and its
    checkpoint at the end of flush `checkpoint_after`; returns their keys."""
    from tqdm import tqdm

    from monologue.agent.ingest import parse

    keys, (fs, root) = [], storage.filesystem(space.uri)
    for flush in flushes:
        log = tmp_path / f"flush-{flush}.log"
        log.write_text("\n".join(flush_lines(flush)) + "\n")
        with tqdm(disable=True) as progress:
            table = pa.concat_tables(list(parse(log, {"app": "shop"}, progress)))
        start = dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=20 * flush)
        key = f"dt=2026-11-02/{start:%Y%m%dT%H%M%SZ}_{start + dt.timedelta(seconds=20):%Y%m%dT%H%M%SZ}.parquet"
        storage.write_atomic(fs, storage.join(root, key), storage.parquet_bytes(table))
        keys.append(key)
    if checkpoint_after is not None:
        until = dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=20 * (checkpoint_after + 1))
        storage.write_atomic(fs, storage.join(root, "_checkpoint.json"),
                             f'{{"version": 1, "complete_until": "{until:%Y-%m-%dT%H:%M:%S}Z"}}'.encode())
    return keys


def objects_in(space: Space) -> list[str]:
    fs, root = storage.filesystem(space.uri)
    return sorted(key for path, _ in storage.list_files(fs, root) if (key := path[len(root) + 1:]).startswith("dt="))


def test_the_shippers_small_objects_behind_its_checkpoint_are_combined_with_the_same_figures(
        tmp_path, local_embedder, small_segments):
    plain = Space("plain", str(tmp_path / "plain" / "data"), collection="plain")
    ship_as_shipper(tmp_path, plain, range(10), checkpoint_after=None)  # no checkpoint: nothing combined
    Indexer(plain, LanceStore(str(tmp_path / "plain" / "memory")), local_embedder).run_once()
    before = figures(plain)
    assert before["lines"] == before["mapped"] == 120 and len(objects_in(plain)) == 10

    space = Space("shop", str(tmp_path / "data"), collection="shop")
    # The shipper has checkpointed flushes 0-6; flush 7 is the object a restart would adopt.
    shipped = ship_as_shipper(tmp_path, space, range(10), checkpoint_after=6)
    store = LanceStore(str(tmp_path / "memory"))
    indexer = Indexer(space, store, local_embedder)
    assert indexer.run_once().segments == 3  # 4 + 4 objects: two level-0 segments, and a level-1 of them
    combined = [key for key in objects_in(space) if "_combined-" in key]
    # Level 0: flushes 0-3 make one object, 4-6 another; 7 is beyond the checkpoint, 8-9 not in a
    # segment yet. Level 1: those two make one of 0-6.
    assert sorted(key.split("/")[1][:33] for key in combined) == ["20261102T100000Z_20261102T100120Z",
                                                                "20261102T100000Z_20261102T100220Z",
                                                                "20261102T100120Z_20261102T100220Z"]
    assert figures(space) == before  # the parts are still there, read by no one twice
    # An indexer restarted meanwhile deletes nothing before the grace period ends.
    assert Indexer(space, store, local_embedder).run_once().objects == 0
    assert len([key for key in objects_in(space) if "_combined-" in key]) == 3

    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    combined = [key for key in objects_in(space) if "_combined-" in key]
    assert len(combined) == 1 and objects_in(space) == sorted(combined + shipped[7:])
    assert figures(space) == before
    with pytest.MonkeyPatch.context() as unneeded:  # no part is left beside its combined object
        unneeded.setattr(Space, "segment_objects", lambda *args: pytest.fail("read the index's segments"))
        assert space.connect().execute("SELECT count(*) FROM logs").fetchone()[0] == 120
    # Another Space's question over a range reads the combined objects where they meet it.
    memory = SpaceMemory(space, None)
    since = int(dt.datetime(2026, 11, 2, 10, 0, 30, tzinfo=dt.timezone.utc).timestamp() * 1e9)
    assert sum(s.count for s in memory.stats(list(memory._index().texts), since, None)) == 2 + 8 * 12

    # A restarted indexer indexes nothing again: the combined objects are known.
    restarted = Indexer(space, store, local_embedder)
    assert restarted.run_once().objects == 0
    assert store.count("shop") == 120 and figures(space) == before


def test_any_range_over_combined_objects_gets_the_figures_of_a_scan(tmp_path, local_embedder, small_segments,
                                                                     monkeypatch):
    from monologue.agent import summaries

    monkeypatch.setattr(compaction, "TOP_LEVEL", 1)  # so two level-1 objects of 8 flushes each, and 3 flushes
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ship_as_shipper(tmp_path, space, range(19), checkpoint_after=17)
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    indexer.run_once()
    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    assert sum("_combined-" in key for key in objects_in(space)) == 2 and len(objects_in(space)) == 5
    memory = SpaceMemory(space, None)
    templates = list(memory._index().texts)
    second = 10**9
    start = int(dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc).timestamp()) * second
    for since in range(start - second, start + 19 * 20 * second, 37 * second):
        for until in (since + 5 * second, since + 95 * second, None):
            whole = summaries.figures(memory._scanned_rows(templates, [(since, until or 2 ** 63 - 1)]))
            got = {s.template_id: (s.count, s.first_seen_ns, s.last_seen_ns) for s in memory.stats(
                templates, since, until)}
            assert got == {tid: (f.count, f.first_seen_ns, f.last_seen_ns) for tid, f in whole.items()}
            con = space.connect(True, since, until)
            assert con.execute("SELECT count(*) FROM logs").fetchone()[0] == sum(c for c, _, _ in got.values())


def test_a_combined_object_that_a_crash_left_unnamed_is_never_read_and_then_deleted(
        tmp_path, local_embedder, small_segments):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ship_as_shipper(tmp_path, space, range(4), checkpoint_after=3)
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    with pytest.MonkeyPatch.context() as not_yet:
        not_yet.setattr(compaction, "SEGMENT_OBJECTS", 10**9)
        indexer.run_once()

    def crash(*args):
        raise OSError("the indexer's pod was killed")

    # The combined object is written; the segment never is.
    with pytest.MonkeyPatch.context() as killed, pytest.raises(OSError):
        killed.setattr(compaction.storage, "write_atomic", crash)
        indexer.compact()
    orphan = [key for key in objects_in(space) if "_combined-" in key]
    assert len(orphan) == 1 and not space.index_state().segments
    assert figures(space)["lines"] == 48  # not 96: the unnamed object is not read

    restarted = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    with pytest.MonkeyPatch.context() as not_yet:
        not_yet.setattr(compaction, "SEGMENT_OBJECTS", 10**9)
        assert restarted.run_once().objects == 0  # not indexed: its lines are, as its parts'
    assert orphan[0] not in objects_in(space)
    restarted.compact()
    restarted.compact(now=time.time() + compaction.GRACE_SECONDS)
    assert objects_in(space) == orphan  # the merge again, under the same name, and named now
    assert figures(space)["lines"] == 48


def test_only_small_objects_behind_the_checkpoint_in_one_directory_are_combined(monkeypatch):
    monkeypatch.setattr(compaction, "SMALL_OBJECT_BYTES", 100)
    monkeypatch.setattr(compaction, "COMBINED_OBJECT_BYTES", 250)
    keys = [f"dt=2026-11-02/20261102T2359{s:02d}Z_20261102T2359{s + 2:02d}Z.parquet" for s in range(48, 58, 2)]
    keys += ["dt=2026-11-03/20261102T235958Z_20261103T000000Z.parquet",
             "dt=2026-11-03/20261103T000000Z_20261103T000002Z.parquet",
             "dt=2026-11-03/20261103T000002Z_20261103T000004Z.parquet"]
    sizes = dict(zip(keys, [50, 50, 50, 200, 50, 50, 50, 50]))
    until = int(dt.datetime(2026, 11, 3, 0, 0, 2, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    # up to 250 bytes a run; 200 bytes is not small; a new day, a new run; 00:00:02-04 is beyond the checkpoint
    assert compaction.combined_runs(keys, sizes, until) == [keys[0:3], keys[5:7]]
    assert compaction.combined_runs(keys, sizes, None) == []  # no shipper, no checkpoint: nothing
    assert compaction.combined_key(keys[0:3]).startswith(
        "dt=2026-11-02/20261102T235948Z_20261102T235954Z_combined-")
    # its span covers every part's, even a backfilled one's that ends last
    backfilled = ["dt=2026-11-02/20261102T235948Z_20261102T235959Z_late.parquet", keys[1]]
    assert compaction.combined_key(backfilled).split("/")[1].startswith("20261102T235948Z_20261102T235959Z_")


def test_the_shippers_small_objects_are_combined_on_s3(s3_env, tmp_path, local_embedder, small_segments):
    import boto3

    boto3.client("s3").create_bucket(Bucket="combined")
    space = Space("shop", "s3://combined/default/shop", collection="shop")
    shipped = ship_as_shipper(tmp_path, space, range(6), checkpoint_after=5)
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    indexer.run_once()
    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    combined = [key for key in objects_in(space) if "_combined-" in key]
    assert len(combined) == 1 and objects_in(space) == sorted(combined + shipped[4:])
    got = figures(space)
    assert (got["lines"], got["mapped"], got["template_lines"], got["unmapped"]) == (72, 72, 72, 0)


def test_objects_that_a_retention_rule_deleted_are_not_combined_and_indexing_goes_on(
        tmp_path, local_embedder, small_segments):
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    shipped = ship_as_shipper(tmp_path, space, range(8), checkpoint_after=7)
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    with pytest.MonkeyPatch.context() as not_yet:
        not_yet.setattr(compaction, "SEGMENT_OBJECTS", 10**9)
        indexer.run_once()
    (Path(space.uri) / shipped[1]).unlink()
    indexer.compact()
    indexer.compact(now=time.time() + compaction.GRACE_SECONDS)
    combined = [key for key in objects_in(space) if "_combined-" in key]
    assert objects_in(space) == combined and len(combined) == 1  # the seven others
    assert figures(space)["lines"] == 7 * 12
