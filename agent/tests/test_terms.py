"""Search terms: identifiers, numbers, stems, neighbours, value types, and expansion by meaning."""

from __future__ import annotations

from pathlib import Path

import pytest
from monologue.agent.answering import Agent
from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore, WeaviateStore
from monologue.agent.recall import SpaceMemory
from monologue.agent.space import Space
from monologue.agent.terms import line_terms, query_terms


def test_identifiers_are_kept_whole_and_split():
    terms = line_terms("BLOCK* addStoredBlock: 10.251.73.220:50010 added blk_-7128 by dfs.DataNode$PacketResponder").split()
    assert {"10.251.73.220:50010", "10.251.73.220", "50010"} <= set(terms)
    assert {"blk_-7128", "blk", "7128"} <= set(terms)
    assert {"dfs.datanode", "datanod", "packetrespond", "packet", "respond", "addstoredblock", "store"} <= set(terms)


def test_numbers_and_dates_are_never_split_into_digits():
    terms = line_terms("17/06/09 20:11:10 INFO Finished task 28.0 in stage 29.0 (TID 1348)").split()
    assert {"17/06/09", "28.0", "29.0", "1348"} <= set(terms)
    assert not {"17", "06", "09", "20", "11", "28", "0"} & set(terms)


def test_times_of_day_are_not_terms():
    """Nearly one per line, they were a third of a generated log's distinct terms
    (the full-text index's cost); a question's time is its time range."""
    terms = line_terms("ts=2026-11-02T09:00:00.302Z level=info 20:11:10 took 16 ms at 10.251.73.220:50010").split()
    assert not [t for t in terms if "09" in t or "20:11" in t or "302" in t], terms
    assert {"ts", "level=info", "took~16", "10.251.73.220:50010", "50010"} <= set(terms)


def test_words_are_stemmed_alike_in_lines_and_questions():
    assert "failur" in line_terms("Too many authentication failures for admin").split()
    assert "failur" in query_terms("What failure happened?")


def test_neighbouring_tokens_make_a_term():
    assert "task~28.0" in line_terms("Finished task 28.0 in stage 29.0").split()
    assert "task~28.0" in query_terms("In which stage did task 28.0 finish?")


def test_dates_and_identifiers_make_no_pairs():
    """An identifier is distinctive alone: paired, it would add a term per occurrence."""
    terms = line_terms("17/06/09 INFO req_id=req-dd73cf256d user=heidi took 16 ms port 22 from 10.1.2.3").split()
    assert {"17/06/09", "req-dd73cf256d", "took~16", "port~22", "#port"} <= set(terms)
    assert not [t for t in terms if "~" in t and ("/" in t or "req" in t)], terms


def test_a_line_holding_a_value_of_the_asked_type_is_tagged():
    assert "#port" in line_terms("Failed password for root from 1.2.3.4 port 22 ssh2").split()
    assert "#port" in query_terms("Which port did the login come from?")
    assert "#code" in line_terms("input_userauth_request: invalid user test [preauth]").split()
    assert "#code" in query_terms("Which function rejects the user?")
    assert "#duration" in line_terms("Reading broadcast variable 2 took 16 ms").split()
    assert "#duration" in query_terms("How long did reading the variable take?")
    assert "#code" not in line_terms("Invalid user test from 1.2.3.4").split()


def test_how_many_is_the_form_of_a_question_not_its_subject():
    # "too many connections" is no answer to "how many logins failed?"
    assert "mani" in line_terms("too many connections for role payments").split()
    for question in ("How many logins failed?", "how often did logins fail", "How much did logins fail?"):
        assert {"mani", "often", "much"}.isdisjoint(query_terms(question)), question
        assert {"login", "fail"} <= set(query_terms(question))
    assert "#duration" in query_terms("How long did the login take?")


def test_terms_are_a_set():
    terms = line_terms("retry retry retry").split()
    assert terms.count("retri") == 1


LINES = [
    "17/06/09 20:11:10 INFO executor.Executor: Running task 28.0 in stage 28.0 (TID 1308)",
    "17/06/09 20:11:10 INFO executor.Executor: Finished task 28.0 in stage 28.0 (TID 1308). 2087 bytes result sent",
    "17/06/09 20:11:12 INFO executor.Executor: Running task 28.0 in stage 29.0 (TID 1348)",
    "17/06/09 20:11:13 INFO executor.Executor: Finished task 28.0 in stage 29.0 (TID 1348). 2128 bytes result sent",
    "17/06/09 20:11:14 INFO executor.Executor: Running task 0.0 in stage 28.0 (TID 1280)",
    "17/06/09 20:11:14 INFO broadcast.TorrentBroadcast: Reading broadcast variable 2 took 16 ms",
    "17/06/09 20:11:14 INFO broadcast.TorrentBroadcast: Started reading broadcast variable 2",
    "17/06/09 20:11:15 INFO storage.MemoryStore: Block rdd_42_3 stored as bytes in memory (estimated size 930.0 B)",
    "17/06/09 20:11:15 INFO storage.BlockManager: Found block rdd_42_3 locally",
]


@pytest.fixture(params=["lancedb", "weaviate"])
def agent(request, tmp_path, local_embedder):
    log = tmp_path / "spark.log"
    log.write_text("\n".join(LINES) + "\n")
    space = Space("spark", str(tmp_path / "data"), collection=f"Space_terms_{request.param}")
    ingest(log, space.uri, show_progress=False)
    if request.param == "lancedb":
        store = LanceStore(str(tmp_path / "memory"))
    else:
        handle = request.getfixturevalue("weaviate")
        store = WeaviateStore(f"http://{handle.host}:{handle.http_port}", handle.grpc_port)
        store.drop(space.collection)
    Indexer(space, store, local_embedder).run_once()
    yield Agent("test", [SpaceMemory(space, store)], local_embedder, None)
    store.drop(space.collection)


@pytest.mark.parametrize("question, expected", [
    # "completed" is in no line: the template word nearest in meaning is "Finished".
    ("What stage was the task 28.0 completed in?", "Finished task 28.0"),
    # "task 28.0" as neighbours beats "task 0.0 in stage 28.0".
    ("Which stage is task 28.0 running in?", "Running task 28.0"),
    # "how long" asks for a duration: the line with one beats its sibling.
    ("How long did it take to read the broadcast variable 2?", "took 16 ms"),
    # "how large" asks for a size, and "large" is nearest to the template word "size".
    ("How large is the block rdd_42_3?", "estimated size"),
])
def test_the_line_that_answers_comes_first(agent, question, expected):
    answer = agent.ask(question, retrieval_only=True, top_k=3)
    assert expected in answer.citations[0].hit.text, [c.hit.text for c in answer.citations]


def test_terms_of_a_big_batch_come_from_worker_processes_unchanged(monkeypatch):
    from monologue.agent.terms import TermsPool

    lines = [line for _ in range(50) for line in LINES]
    monkeypatch.setattr(TermsPool, "MIN_BATCH", 100)
    pool = TermsPool(workers=2)
    try:
        pending = pool.submit(lines)
        assert pool._pool is not None  # the work went to the workers
        assert pending() == [line_terms(line) for line in lines]
    finally:
        pool.close()
