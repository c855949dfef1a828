"""A Space over S3 (the harness's real endpoint): ingest, index, SQL views, recall."""

from __future__ import annotations

import boto3
from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore
from monologue.agent.recall import SpaceMemory
from monologue.agent.redact import Redactor
from monologue.agent.space import Space


def test_a_space_on_s3_is_ingested_indexed_and_queried(s3_env, tmp_path, local_embedder):
    boto3.client("s3").create_bucket(Bucket="spaces")
    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-11-02T09:00:{i:02d}Z INFO order {i} placed for tenant acme-{i % 3}\n"
                           for i in range(40)) + "2026-11-02T09:01:00Z ERROR order 99 failed: card declined\n")
    space = Space("shop", "s3://spaces/default/shop", collection="shop",
                  extra_patterns=[r"acme-\d"])  # a Space's own redaction pattern
    report = ingest(log, space.uri, show_progress=False)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="spaces")["Contents"]]
    assert all(k.startswith("default/shop/dt=2026-11-02/") for k in keys) and len(keys) == len(report.objects)

    store = LanceStore(str(tmp_path / "memory"))
    assert Indexer(space, store, local_embedder).run_once().lines == 41
    assert Indexer(space, store, local_embedder).run_once().objects == 0  # state kept in S3
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="spaces")["Contents"]}
    assert "default/shop/_index/state.json" in keys and "default/shop/_index/miner.json" in keys

    con = space.connect()
    assert con.execute("SELECT count(*) FROM logs WHERE level = 'error'").fetchone()[0] == 1
    assert con.execute("SELECT sum(lines) FROM templates").fetchone()[0] == 41

    memory = SpaceMemory(space, store)
    hits = memory.search("failed card", local_embedder.embed(["failed card"])[0], 3, None, None)
    assert "card declined" in hits[0].text
    texts = store.db.open_table("shop").to_arrow()["text"].to_pylist()
    assert not any("acme-" in t for t in texts) and any("[REDACTED:custom]" in t for t in texts)
    assert Redactor(("acme-\\d",)).redact("acme-1") == "[REDACTED:custom]"


def test_a_poll_lists_only_what_follows_the_newest_object_and_now_and_then_everything(
        s3_env, tmp_path, local_embedder, monkeypatch):
    from monologue.agent import indexer as indexer_module

    boto3.client("s3").create_bucket(Bucket="following")
    space = Space("app", "s3://following/default/app", collection="app")

    def ship(name, hour):
        log = tmp_path / f"{name}.log"
        log.write_text("".join(f"2026-11-0{hour // 24 + 1}T{hour % 24:02d}:00:{i:02d}Z INFO job {i} done\n"
                               for i in range(5)))
        ingest(log, space.uri, show_progress=False)

    ship("first", 30)
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    assert indexer.run_once().objects == 1  # a full listing
    ship("next", 31)  # sorts after: what a following shipper writes
    ship("backfill", 2)  # sorts before: a backfill of an earlier day
    report = indexer.run_once()
    assert report.objects == 1 and [k.startswith("dt=2026-11-02/") for k in indexer.done] == [True, True]
    monkeypatch.setattr(indexer_module, "FULL_LISTING_SECONDS", 0.0)
    assert indexer.run_once().objects == 1 and len(indexer.done) == 3  # found by the next full listing


def test_storage_outage_pauses_indexing_which_resumes_by_itself(s3_env, tmp_path, local_embedder, monkeypatch,
                                                                 caplog):
    import logging
    import threading

    from harness import servers
    from harness.process import free_port

    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")  # nothing there yet
    space = Space("app", "s3://late/default/app", collection="app")
    store = LanceStore(str(tmp_path / "memory"))
    indexer = Indexer(space, store, local_embedder)
    stop, waiter = threading.Event(), threading.Event()
    worker = threading.Thread(target=indexer.run, args=(stop,), kwargs={"poll_seconds": 0.2, "max_backoff": 0.5})
    caplog.set_level(logging.WARNING, logger="monologue.indexer")
    worker.start()
    s3 = None
    try:
        for _ in range(300):  # the first polls fail, and the indexer says so and keeps going
            if any(r.message == "indexing paused" for r in caplog.records):
                break
            waiter.wait(0.1)
        assert any(r.message == "indexing paused" for r in caplog.records) and worker.is_alive()
        s3 = servers.start_s3(tmp_path / "s3", tmp_path / "logs", port=port)
        boto3.client("s3").create_bucket(Bucket="late")
        log = tmp_path / "app.log"
        log.write_text("".join(f"2026-11-02T09:00:{i:02d}Z INFO job {i} done\n" for i in range(30)))
        ingest(log, space.uri, show_progress=False)
        for _ in range(300):
            if "app" in store.db.list_tables().tables and store.count("app") == 30:
                break
            waiter.wait(0.1)
        assert store.count("app") == 30
    finally:
        stop.set()
        worker.join(10)
        if s3 is not None:
            s3.server.stop()
    assert not worker.is_alive()


def test_storage_going_down_while_an_object_is_read_is_not_taken_for_a_bad_object(
        s3_env, tmp_path, local_embedder, monkeypatch):
    import pytest
    from harness import servers
    from monologue.agent import indexer as indexer_module

    s3 = servers.start_s3(tmp_path / "s3", tmp_path / "logs")  # its own: this test stops it
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    boto3.client("s3").create_bucket(Bucket="flaky")
    space = Space("app", "s3://flaky/default/app", collection="app")
    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-11-02T09:00:{i:02d}Z INFO job {i} done\n" for i in range(10)))
    ingest(log, space.uri, show_progress=False)
    indexer = Indexer(space, LanceStore(str(tmp_path / "memory")), local_embedder)
    read, quarantined = indexer_module.storage.read_or_none, []

    def outage_then_read(fs, path):
        if "/dt=" in path:
            s3.server.kill()  # S3 goes down as the object is fetched
        return read(fs, path)

    monkeypatch.setattr(indexer_module.storage, "read_or_none", outage_then_read)
    monkeypatch.setattr(indexer, "_quarantine", lambda path, err: quarantined.append(path))
    try:
        with pytest.raises(OSError):  # run() pauses on it and tries again
            indexer.run_once()
    finally:
        s3.server.stop()
    assert quarantined == []
