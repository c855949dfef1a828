"""Both vector stores pass the same tests: LanceDB (embedded) and the real Weaviate."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from monologue.agent.memory import (ROW_SCHEMA, LanceStore, StoreOutdated, TemplateVectors, WeaviateStore,
                                    collection_name, hybrid_search)
from monologue.agent.terms import line_terms, query_terms

BASE_NS = 1_700_000_000_000_000_000
LINES = [
    ("disk full on node-3: no space left on device", "T1", [1.0, 0.0, 0.0, 0.0]),
    ("user alice logged in", "T2", [0.0, 1.0, 0.0, 0.0]),
    ("payment declined: card expired", "T3", [0.0, 0.0, 1.0, 0.0]),
    ("worker 7 finished job 42 in 19 ms", "T4", [0.0, 0.0, 0.0, 1.0]),
]


def rows(lines, offset=0) -> pa.Table:
    n = len(lines)
    return pa.table(
        {
            "line_id": [f"id{i + offset}" for i in range(n)],
            "text": [text for text, _, _ in lines],
            "terms": [line_terms(text) for text, _, _ in lines],
            "template_id": [t for _, t, _ in lines],
            "template": [text for text, _, _ in lines],
            "level": [["error", "info", "warn", "info"][i % 4] for i in range(n)],
            "labels": [json.dumps({"app": "shop", "pod": f"pod-{i}"}) for i in range(n)],
            "timestamp": pa.array([BASE_NS + (i + offset) * 10**9 for i in range(n)], pa.int64()).cast(
                pa.timestamp("ns", tz="UTC")),
            "space": ["demo"] * n,
        },
        schema=ROW_SCHEMA,
    )


def templates(lines) -> TemplateVectors:
    distinct = {t: v for _, t, v in lines}
    return TemplateVectors(list(distinct), np.array(list(distinct.values()), np.float32))


def terms(question: str) -> str:
    return " ".join(query_terms(question))


@pytest.fixture(params=["lancedb", "weaviate"])
def store(request, tmp_path):
    if request.param == "lancedb":
        yield LanceStore(str(tmp_path / "memory"))
    else:
        handle = request.getfixturevalue("weaviate")
        store = WeaviateStore(f"http://{handle.host}:{handle.http_port}", handle.grpc_port)
        yield store
        store.close()


@pytest.fixture
def filled(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name)
    store.upsert(name, rows(LINES))
    yield store, name
    store.drop(name)


def test_hybrid_search_finds_by_words_and_by_meaning(filled):
    store, name = filled
    by_words = hybrid_search(store, name, templates(LINES), terms("disk space"), np.full(4, 0.5, np.float32), 2)
    assert by_words[0].text.startswith("disk full")
    # No line has the word: the line of the template nearest in meaning.
    by_meaning = hybrid_search(store, name, templates(LINES), terms("xyzzy"), np.array([0, 0, 1, 0], np.float32), 1)
    assert by_meaning[0].line_id == "id2"
    hit = by_words[0]
    assert hit.labels == {"app": "shop", "pod": "pod-0"} and hit.level == "error"
    assert hit.timestamp_ns == BASE_NS and hit.template_id == "T1" and hit.space == "demo"


def test_meaning_orders_lines_that_match_the_words_alike(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name)
    lines = [("cache miss for key alpha", "T6", [1.0, 0.0, 0.0, 0.0]),
             ("cache miss for key omega", "T7", [0.0, 1.0, 0.0, 0.0])]
    store.upsert(name, rows(lines))
    question = terms("cache miss")
    equal = {round(h.score, 6) for h in store.search(name, question, 2)}
    towards_omega = hybrid_search(store, name, templates(lines), question, np.array([0, 1, 0, 0], np.float32), 2)
    towards_alpha = hybrid_search(store, name, templates(lines), question, np.array([1, 0, 0, 0], np.float32), 2)
    store.drop(name)
    assert len(equal) == 1
    assert [h.line_id for h in towards_omega] == ["id1", "id0"]
    assert [h.line_id for h in towards_alpha] == ["id0", "id1"]


def test_lines_of_templates_come_oldest_first(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name)
    table = rows([("login failed for bob", "T9", None)] * 3 + LINES, offset=0)
    store.upsert(name, table.take([2, 0, 4, 1, 3]))
    found = store.lines_of(name, ["T9"], 10)
    within = store.lines_of(name, ["T9"], 10, since_ns=BASE_NS + 10**9)
    store.drop(name)
    assert [h.line_id for h in found] == ["id0", "id1", "id2"]
    assert [h.line_id for h in within] == ["id1", "id2"]


def test_nanosecond_timestamps_as_loki_has_them_are_stored(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name)
    table = rows(LINES[:1])
    stamp = BASE_NS + 123_456_789
    column = table.schema.get_field_index("timestamp")
    store.upsert(name, table.set_column(column, "timestamp", pa.array([stamp], pa.timestamp("ns", tz="UTC"))))
    hit = store.search(name, terms("disk"), 1)[0]
    store.drop(name)
    assert stamp - hit.timestamp_ns < 1000  # Weaviate keeps microseconds


def test_upserting_the_same_lines_again_never_duplicates(filled):
    store, name = filled
    table = rows(LINES)
    store.upsert(name, table)
    assert store.count(name) == len(LINES)
    texts = ["disk full on node-3 (retried)"] + table["text"].to_pylist()[1:]
    changed = table.set_column(1, "text", pa.array(texts)).set_column(2, "terms", pa.array(map(line_terms, texts)))
    store.upsert(name, changed)
    assert store.count(name) == len(LINES)
    assert store.search(name, terms("retried"), 1)[0].line_id == "id0"


def test_time_range_limits_the_search(filled):
    store, name = filled
    hits = hybrid_search(store, name, templates(LINES), terms("disk user payment worker"), np.ones(4, np.float32), 10,
                         since_ns=BASE_NS + 2 * 10**9)
    assert {h.line_id for h in hits} == {"id2", "id3"}


def test_among_equal_matches_the_first_occurrence_leads(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name)
    lines = [("connection reset by peer 10.0.0.7", "T5", [0.5, 0.5, 0.0, 0.0])] * 3
    store.upsert(name, rows(lines).take([2, 1, 0]))  # stored newest first: the order of insertion must not decide
    hits = hybrid_search(store, name, templates(lines), terms("connection reset"), np.ones(4, np.float32), 3)
    store.drop(name)
    assert [h.line_id for h in hits] == ["id0", "id1", "id2"]


def test_lines_just_written_that_hold_more_of_the_words_rank_first(store, request):
    # A following Space is asked about lines written seconds ago, in words
    # that may be new to it ("failed": the incident has just begun).
    from harness.flush import wait_until_flushed

    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name)
    store.upsert(name, rows([(f"checkout started order {i}", "T10", None) for i in range(300)]))
    wait_until_flushed(store, name)
    store.upsert(name, rows([(f"checkout failed order {i}: payments returned 503", "T11", None) for i in range(10)],
                            offset=1000))
    hits = store.search(name, terms("why did checkouts fail?"), 5)
    store.drop(name)
    assert [h.template_id for h in hits] == ["T11"] * 5


def test_drop_removes_the_collection(store, tmp_path):
    name = collection_name("test", "drop-me")
    store.ensure(name)
    store.upsert(name, rows(LINES[:1]))
    store.drop(name)
    store.ensure(name)
    assert store.count(name) == 0
    store.drop(name)


def test_lancedb_full_text_index_covers_every_row_after_optimize(tmp_path, monkeypatch):
    """A first pass (most rows new: the index is rebuilt); a small append,
    found at once, merged into the index no more often than FOLD_SECONDS."""
    from monologue.agent import memory

    store = LanceStore(str(tmp_path / "memory"))
    store.ensure("c")
    many = [(f"{text} batch {i}", t, v) for i in range(25) for text, t, v in LINES]
    store.upsert("c", rows(many), known_new=True)
    store.optimize("c")
    stats = store._table("c").index_stats("terms_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (100, 0)

    store.upsert("c", rows([("kernel oops in module zfs", "T5", None)], offset=100), known_new=True)
    store.optimize("c")  # just after the last: not merged yet, and found all the same
    stats = store._table("c").index_stats("terms_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (100, 1)
    assert [h.text for h in store.search("c", terms("zfs oops"), 3)] == ["kernel oops in module zfs"]

    monkeypatch.setattr(memory, "FOLD_SECONDS", 0.0)  # as when a minute has passed
    store.optimize("c")
    stats = store._table("c").index_stats("terms_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (101, 0)
    assert [h.text for h in store.search("c", terms("zfs oops"), 3)] == ["kernel oops in module zfs"]
    assert len(store.search("c", terms("disk full"), 100)) == 25


def test_a_lancedb_memory_of_the_old_layout_is_refused_with_what_to_do(tmp_path):
    import lancedb

    old = ROW_SCHEMA.append(pa.field("vector", pa.list_(pa.float32(), 4)))  # one vector per line
    lancedb.connect(str(tmp_path / "memory")).create_table("c", schema=old)
    with pytest.raises(StoreOutdated, match="index again"):
        LanceStore(str(tmp_path / "memory")).ensure("c")
