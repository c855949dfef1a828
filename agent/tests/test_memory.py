"""Both vector stores pass the same tests: LanceDB (embedded) and the real Weaviate."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from monologue.agent.memory import ROW_SCHEMA, LanceStore, WeaviateStore, collection_name
from monologue.agent.terms import line_terms, query_terms

BASE_NS = 1_700_000_000_000_000_000
LINES = [
    ("disk full on node-3: no space left on device", "T1", [1.0, 0.0, 0.0, 0.0]),
    ("user alice logged in", "T2", [0.0, 1.0, 0.0, 0.0]),
    ("payment declined: card expired", "T3", [0.0, 0.0, 1.0, 0.0]),
    ("worker 7 finished job 42 in 19 ms", "T4", [0.0, 0.0, 0.0, 1.0]),
]


def rows(lines, offset=0):
    n = len(lines)
    table = pa.table(
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
    return table, np.array([v for _, _, v in lines], dtype=np.float32)


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
    store.ensure(name, 4)
    store.upsert(name, *rows(LINES))
    yield store, name
    store.drop(name)


def test_hybrid_search_finds_by_words_and_by_meaning(filled):
    store, name = filled
    by_words = store.search(name, terms("disk space"), np.full(4, 0.5, np.float32), limit=2)
    assert by_words[0].text.startswith("disk full")
    by_meaning = store.search(name, terms("xyzzy"), np.array([0, 0, 1, 0], np.float32), limit=1)
    assert by_meaning[0].line_id == "id2"
    hit = by_words[0]
    assert hit.labels == {"app": "shop", "pod": "pod-0"} and hit.level == "error"
    assert hit.timestamp_ns == BASE_NS and hit.template_id == "T1" and hit.space == "demo"


def test_nanosecond_timestamps_as_loki_has_them_are_stored(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name, 4)
    table, vectors = rows(LINES[:1])
    stamp = BASE_NS + 123_456_789
    column = table.schema.get_field_index("timestamp")
    store.upsert(name, table.set_column(column, "timestamp", pa.array([stamp], pa.timestamp("ns", tz="UTC"))), vectors)
    hit = store.search(name, terms("disk"), vectors[0], limit=1)[0]
    store.drop(name)
    assert stamp - hit.timestamp_ns < 1000  # Weaviate keeps microseconds


def test_upserting_the_same_lines_again_never_duplicates(filled):
    store, name = filled
    table, vectors = rows(LINES)
    store.upsert(name, table, vectors)
    assert store.count(name) == len(LINES)
    texts = ["disk full on node-3 (retried)"] + table["text"].to_pylist()[1:]
    changed = table.set_column(1, "text", pa.array(texts)).set_column(2, "terms", pa.array(map(line_terms, texts)))
    store.upsert(name, changed, vectors)
    assert store.count(name) == len(LINES)
    assert store.search(name, terms("retried"), None, limit=1)[0].line_id == "id0"


def test_time_range_limits_the_search(filled):
    store, name = filled
    hits = store.search(name, terms("disk user payment worker"), np.ones(4, np.float32), limit=10,
                        since_ns=BASE_NS + 2 * 10**9)
    assert {h.line_id for h in hits} == {"id2", "id3"}


def test_among_equal_matches_the_first_occurrence_leads(store, request):
    name = collection_name("test", request.node.name)
    store.drop(name)
    store.ensure(name, 4)
    table, vectors = rows([("connection reset by peer 10.0.0.7", "T5", [0.5, 0.5, 0.0, 0.0])] * 3)
    order = [2, 1, 0]  # stored newest first: the order of insertion must not decide
    store.upsert(name, table.take(order), vectors[order])
    hits = store.search(name, terms("connection reset"), vectors[0], limit=3)
    store.drop(name)
    assert [h.line_id for h in hits] == ["id0", "id1", "id2"]


def test_drop_removes_the_collection(store, tmp_path):
    name = collection_name("test", "drop-me")
    store.ensure(name, 4)
    store.upsert(name, *rows(LINES[:1]))
    store.drop(name)
    store.ensure(name, 4)
    assert store.count(name) == 0
    store.drop(name)


def test_lancedb_full_text_index_covers_every_row_after_optimize(tmp_path):
    """A first pass (most rows new: the index is rebuilt) and a small append (merged)."""
    store = LanceStore(str(tmp_path / "memory"))
    store.ensure("c", 4)
    many = [(f"{text} batch {i}", t, v) for i in range(25) for text, t, v in LINES]
    table, vectors = rows(many)
    store.upsert("c", table, vectors, known_new=True)
    store.optimize("c")
    stats = store._table("c").index_stats("terms_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (100, 0)

    table, vectors = rows([("kernel oops in module zfs", "T5", [0.5, 0.5, 0.0, 0.0])], offset=100)
    store.upsert("c", table, vectors, known_new=True)
    store.optimize("c")
    stats = store._table("c").index_stats("terms_idx")
    assert (stats.num_indexed_rows, stats.num_unindexed_rows) == (101, 0)
    assert [h.text for h in store.search("c", terms("zfs oops"), None, 3)] == ["kernel oops in module zfs"]
    assert len(store.search("c", terms("disk full"), None, 100)) == 25
