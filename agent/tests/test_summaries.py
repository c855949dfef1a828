"""Recall's figures from the indexer's template summaries equal a scan of every line."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pyarrow.parquet as pq

from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore
from monologue.agent.recall import SpaceMemory
from monologue.agent.space import Space

EVER = (-(2 ** 63), 2 ** 63 - 1)
HOUR_10 = int(datetime(2026, 11, 2, 10, tzinfo=timezone.utc).timestamp()) * 10**9
NS = 123456789  # every line's fraction of a second: timestamps need nanoseconds


def order_lines(hour: int, users: range) -> list[str]:
    """120 logfmt lines in one hour: 3 pods, the given users, a unique request id each, two passwords."""
    return [f'time=2026-11-02T{hour:02d}:{i // 2:02d}:{(i % 2) * 30:02d}.{NS}Z level=info msg="order placed" '
            f"pod=shop-{i % 3} user=u{users[i % len(users)]} request=r{hour}-{i} password=hunter{i % 2}-secret"
            for i in range(120)]


def indexed_space(tmp_path, local_embedder) -> tuple[Space, LanceStore]:
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    # Two objects; each has 15 users, together 25: more than recall shows (20).
    for hour, users in ((10, range(0, 15)), (11, range(10, 25))):
        log = tmp_path / f"{hour}.log"
        log.write_text("\n".join(order_lines(hour, users)) + "\n")
        ingest(log, space.uri, show_progress=False)
    store = LanceStore(str(tmp_path / "memory"))
    assert Indexer(space, store, local_embedder).run_once().objects == 2
    return space, store


def placed_template(memory: SpaceMemory) -> str:
    return memory.sql("SELECT template_id FROM templates ORDER BY lines DESC LIMIT 1", lines=True)[0][0]


def scanned(space: Space, store: LanceStore, tid: str, since=None, until=None):
    """The same figures from a memory that has no summaries to sum."""
    saved = space.uri + "-summaries"
    shutil.move(f"{space.uri}/_index/summaries", saved)
    try:
        memory = SpaceMemory(space, store)
        assert memory._split_rows(memory._index(), [tid], *EVER) is None
        return memory.stats([tid], since, until)
    finally:
        shutil.move(saved, f"{space.uri}/_index/summaries")


def test_summed_figures_equal_a_scan_of_every_line(tmp_path, local_embedder):
    space, store = indexed_space(tmp_path, local_embedder)
    memory = SpaceMemory(space, store)
    tid = placed_template(memory)
    assert memory._split_rows(memory._index(), [tid], *EVER)[0]  # the figures come from the summaries
    stat, = memory.stats([tid], None, None)
    assert stat.count == 240
    assert (stat.first_seen_ns, stat.last_seen_ns) == (HOUR_10 + NS, HOUR_10 + (3600 + 59 * 60 + 30) * 10**9 + NS)
    keys = {k for k, _, _ in stat.top_values}
    # pods vary a little: shown; users (25 over both objects) and request ids are not.
    assert [t for t in stat.top_values if t[0] == "pod"] == [("pod", "shop-0", 80), ("pod", "shop-1", 80),
                                                             ("pod", "shop-2", 80)]
    assert "user" not in keys and "request" not in keys
    assert scanned(space, store, tid) == [stat]


def test_a_range_inside_whole_objects_is_summed_and_one_across_an_object_is_scanned(tmp_path, local_embedder,
                                                                                    monkeypatch):
    space, store = indexed_space(tmp_path, local_embedder)
    read, connect_objects = [], Space.connect_objects
    monkeypatch.setattr(Space, "connect_objects", lambda self, objects, files: read.append(objects) or
                        connect_objects(self, objects, files))
    memory = SpaceMemory(space, store)
    tid = placed_template(memory)
    hour = 3600 * 10**9

    second_hour = (HOUR_10 + hour, HOUR_10 + 2 * hour)
    assert memory._split_rows(memory._index(), [tid], *second_hour)[1] == []  # nothing to scan
    stat, = memory.stats([tid], *second_hour)
    assert read == []
    assert stat.count == 120 and stat.first_seen_ns == HOUR_10 + hour + NS
    assert ("user", "u10", 8) in stat.top_values  # 15 users in this hour alone: shown
    assert scanned(space, store, tid, *second_hour) == [stat]

    half_past_ten = (HOUR_10 + hour // 2, None)
    read.clear()
    # the 10:00 object straddles it: its part of the range is scanned, the 11:00 object summed
    summed, edges = memory._split_rows(memory._index(), [tid], half_past_ten[0], EVER[1])
    assert edges == [(HOUR_10 + hour // 2, HOUR_10 + (3600 - 30) * 10**9 + NS + 1)]
    assert {row[4] for row in summed} >= {HOUR_10 + hour + NS}
    stat, = memory.stats([tid], *half_past_ten)
    assert stat.count == 60 + 120 and stat.first_seen_ns == HOUR_10 + hour // 2 + NS
    assert [len(objects) for objects in read] == [1]  # the 10:00 object alone was read
    assert scanned(space, store, tid, *half_past_ten) == [stat]


def test_field_values_are_redacted_in_the_figures(tmp_path, local_embedder):
    space, store = indexed_space(tmp_path, local_embedder)
    memory = SpaceMemory(space, store)
    tid = placed_template(memory)
    for stat in (memory.stats([tid], None, None)[0], scanned(space, store, tid)[0]):
        values = [v for _, v, _ in stat.top_values]
        assert not any("hunter" in v for v in values), stat.top_values
    stored = pq.read_table(tmp_path / "data" / "_index" / "summaries")["value"].to_pylist()
    assert "[REDACTED:secret]" in stored and not any("hunter" in (v or "") for v in stored)


def test_a_pattern_the_miner_split_over_two_templates_is_counted_whole(tmp_path, local_embedder):
    # The miner keeps `... user=dave via=app` apart: it was a template before its
    # sibling generalised to `... <*> <*>`, and its lines keep going to it.
    sequence = ["carol web", "dave app", "erin web", "frank app", "dave app", "dave app", "grace web", "dave app"]
    log = tmp_path / "orders.log"
    log.write_text("".join(f'time=2026-11-02T10:00:{i:02d}.{NS}Z level=info msg="order placed" user={who} '
                           f"via={via}\n" for i, (who, via) in enumerate(s.split() for s in sequence)))
    space = Space("shop", str(tmp_path / "data"), collection="shop")
    ingest(log, space.uri, show_progress=False)
    store = LanceStore(str(tmp_path / "memory"))
    Indexer(space, store, local_embedder).run_once()
    memory = SpaceMemory(space, store)
    split = dict(memory.sql("SELECT template, template_id FROM templates", lines=True))
    general = split.pop('time=<*> level=info msg="order placed" <*> <*>')
    dave = split.pop('time=<*> level=info msg="order placed" user=dave via=app')
    assert not split
    for since, until in ((None, None), (HOUR_10, HOUR_10 + 5 * 10**9)):
        stat, = memory.stats([dave, general], since, until)  # dave's lines are inside the general pattern
        assert (stat.template_id, stat.count) == (general, 8 if since is None else 5)
        assert ("user", "dave", 4 if since is None else 2) in stat.top_values
    assert [(s.template_id, s.count) for s in scanned(space, store, general)] == [(general, 8)]
    assert [(s.template_id, s.count) for s in memory.stats([dave], None, None)] == [(dave, 4)]
