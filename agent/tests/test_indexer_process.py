"""`monologue indexer`, the cluster's indexer process: it indexes what lands in
its Space, says how far it got on /metrics, tells the kubelet when it is
paused (/readyz), and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.cli_process import Running, get
from monologue.agent.ingest import ingest


def start_indexer(tmp_path: Path, embedder: dict | None = None) -> tuple[Running, int, Path]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = {"name": "shop", "collection": "shop", "storage": {"uri": str(data)},
              "vectorStore": {"kind": "lancedb", "uri": str(tmp_path / "memory")}, "embedder": embedder}
    (tmp_path / "space.json").write_text(json.dumps(config))
    indexer = Running(["indexer", "--config", str(tmp_path / "space.json"), "--http-host", "127.0.0.1",
                       "--http-port", "0", "--poll-seconds", "0.2"])
    return indexer, indexer.wait_for_field("http_port", timeout=60), data


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def metric(port: int, name: str) -> float | None:
    found = re.search(rf'^{name}{{space="shop"}} (\S+)$', get(port, "/metrics")[1], re.M)
    return float(found.group(1)) if found else None


def test_the_indexer_process_reports_what_it_indexed_and_stops_on_sigterm(tmp_path, embedding_model):
    process, port, data = start_indexer(tmp_path)
    try:
        log = tmp_path / "app.log"
        log.write_text("".join(f"2026-11-02T10:00:{i:02d}Z INFO pod=web-{i % 3} served request {i} in {i} ms\n"
                               for i in range(30)))
        ingest(log, str(data), show_progress=False)  # what a shipper would write
        wait_for(lambda: metric(port, "monologue_indexer_lines_total") == 30, "30 lines on /metrics")
        assert metric(port, "monologue_indexer_objects_total") == 1
        # the object's name ends at its last line, 10:00:29
        assert metric(port, "monologue_indexer_indexed_until_timestamp_seconds") == 1793613629
        assert metric(port, "monologue_indexer_paused") == 0
        assert get(port, "/readyz")[0] == 200 and get(port, "/healthz")[0] == 200
        assert get(port, "/nothing")[0] == 404
    finally:
        code = process.stop()
    assert code == 0


def test_an_indexer_whose_embedder_is_down_is_paused_not_ready_and_still_alive(tmp_path):
    process, port, data = start_indexer(tmp_path, embedder={"endpoint": "127.0.0.1:9"})  # nothing listens
    try:
        log = tmp_path / "app.log"
        log.write_text("2026-11-02T10:00:00Z INFO pod=web-0 served request 1 in 3 ms\n")
        ingest(log, str(data), show_progress=False)
        wait_for(lambda: metric(port, "monologue_indexer_paused") == 1, "the pause on /metrics")
        assert metric(port, "monologue_indexer_pauses_total") >= 1
        assert metric(port, "monologue_indexer_lines_total") == 0
        assert get(port, "/readyz")[0] == 503  # so `kubectl get pods` shows it
        assert get(port, "/healthz")[0] == 200  # a restart would not bring the embedder back
    finally:
        code = process.stop()
    assert code == 0


def test_an_indexer_that_made_no_progress_for_a_while_is_unhealthy(tmp_path, local_embedder):
    from monologue.agent.indexer import Indexer
    from monologue.agent.memory import LanceStore
    from monologue.agent.space import Space
    from monologue.agent.telemetry import IndexerTelemetry

    indexer = Indexer(Space("shop", str(tmp_path / "data")), LanceStore(str(tmp_path / "memory")), local_embedder)
    telemetry = IndexerTelemetry("shop", indexer, stale_seconds=60)
    indexer.run_once()
    assert telemetry.healthy()
    indexer.progress.at -= 61  # stuck in one call for a minute: a hung storage request, say
    assert not telemetry.healthy()


def test_sigterm_stops_a_long_catch_up_between_two_objects(tmp_path, embedding_model):
    for i in range(300):  # a backlog for one poll of ~10 s
        log = tmp_path / f"flush-{i}.log"
        log.write_text(f"2026-11-02T10:{i // 60:02d}:{i % 60:02d}Z INFO pod=web-0 served request {i} in 3 ms\n")
        ingest(log, str(tmp_path / "data"), show_progress=False)
    process, port, data = start_indexer(tmp_path)
    try:
        wait_for(lambda: (metric(port, "monologue_indexer_objects_total") or 0) >= 1, "the catch-up to begin")
    finally:
        stopping = time.monotonic()
        code = process.stop()
    assert code == 0 and time.monotonic() - stopping < 5
    state = json.loads((data / "_index" / "state.json").read_text())
    indexed = len(state["objects"]) + 64 * len(state["segments"])
    assert 1 <= indexed < 300, indexed  # it stopped mid-poll, with its progress saved
