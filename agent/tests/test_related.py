"""Related lines: what the requests of the recalled lines did in other services,
found by the request and trace ids they share, in both stores."""

from __future__ import annotations

import json

import pytest
from harness.flush import wait_until_flushed
from monologue.agent.answering import Agent
from monologue.agent.indexer import Indexer
from monologue.agent.ingest import ingest
from monologue.agent.memory import LanceStore, WeaviateStore
from monologue.agent.prompt import build
from monologue.agent.recall import SpaceMemory, related, request_ids
from monologue.agent.service import to_proto
from monologue.agent.space import Space


def _json(second: int, level: str, service: str, msg: str, **fields) -> str:
    return json.dumps({"time": f"2026-11-02T09:{second // 60:02d}:{second % 60:02d}.000Z", "level": level,
                       "service": service, "msg": msg, **fields})


def _gateway(second: int, request: str, status: int) -> str:
    level = "error" if status >= 500 else "info"
    return (f"ts=2026-11-02T09:{second // 60:02d}:{second % 60:02d}.500Z level={level} service=gateway "
            f"request_id={request} path=/api/checkout status={status}")


def shop_lines() -> list[str]:
    lines = []
    for i in range(40):  # requests that went well
        request, second = f"req-ok{i:04d}", i * 3
        lines += [_json(second, "info", "checkout", "checkout started", req_id=request),
                  _json(second + 1, "info", "payments", "payment authorized", req_id=request),
                  _gateway(second + 2, request, 201)]
    for n, second in ((1, 130), (2, 140), (3, 170)):  # requests that failed
        request = f"req-bad{n:04d}"
        lines += [_json(second, "info", "checkout", "checkout started", req_id=request),
                  _json(second + 1, "error", "payments",
                        "payment authorization failed: timeout acquiring database connection", req_id=request),
                  _json(second + 2, "error", "checkout", "checkout failed: payments returned 503", req_id=request),
                  _gateway(second + 3, request, 502)]
    lines += [
        # The first failed request, seen by a service logging plain text, under another key.
        f"2026-11-02 09:02:14,000 ERROR [inventory] stock reservation rolled back trace_id=req-bad0001",
        # The id in another role (no id field): not a line of that request.
        "2026-11-02 09:02:15,000 INFO [cache] evicted key req-bad0001 after 300s",
        # Only the third failed request, which is not among the lines recalled.
        _json(171, "warn", "payments", "payments circuit breaker open", req_id="req-bad0003"),
    ]
    return lines


@pytest.fixture(params=["lancedb", "weaviate"])
def shop(request, tmp_path, local_embedder):
    log = tmp_path / "shop.log"
    log.write_text("\n".join(shop_lines()) + "\n")
    space = Space("shop", str(tmp_path / "data"), collection=f"Related_{request.param}")
    if request.param == "lancedb":
        store = LanceStore(str(tmp_path / "memory"))
    else:
        handle = request.getfixturevalue("weaviate")
        store = WeaviateStore(f"http://{handle.host}:{handle.http_port}", handle.grpc_port)
    ingest(log, space.uri, show_progress=False)
    Indexer(space, store, local_embedder).run_once()
    wait_until_flushed(store, space.collection)
    yield SpaceMemory(space, store)
    store.drop(space.collection)
    if request.param == "weaviate":
        store.close()


def test_a_failure_comes_with_what_its_requests_did_in_other_services(shop, local_embedder):
    agent = Agent("test", [shop], local_embedder, None)
    answer = agent.ask("Why did checkouts fail?", top_k=2, retrieval_only=True)
    hits = [c.hit for c in answer.citations]
    # Half as many as the lines recalled: the cause, upstream, in words the question does not use.
    assert [bool(h.via) for h in hits] == [False, False, True]
    assert all("checkout failed" in h.text for h in hits[:2])
    assert "timeout acquiring database connection" in hits[2].text and hits[2].via == "req_id=req-bad0001"
    followed = {value for hit in hits[:2] for value in request_ids(hit.text)}
    assert followed == {"req-bad0001", "req-bad0002"}
    # Figures are of the matching lines' patterns only (a related pattern may be a service's every request).
    assert answer.stats and all("checkout failed" in s.template for s in answer.stats)
    # Carried over gRPC, to say why a line is there.
    assert [c.via for c in to_proto(answer).citations] == ["", "", "req_id=req-bad0001"]

    # Up to four: problems first; the gateway's side under request_id, a plain-text service's under trace_id.
    more = related([shop], hits[:2], None, None, limit=4)
    assert any("status=502" in h.text and h.via.startswith("request_id=") for h in more)
    assert any("stock reservation rolled back" in h.text and h.via == "trace_id=req-bad0001" for h in more)
    for hit in more:
        assert hit.via.split("=", 1)[1].lower() in followed and hit.via.split("=", 1)[1] in hit.text
    texts = " ".join(h.text for h in more)
    assert "evicted" not in texts and "circuit breaker" not in texts  # another role, another request
    patterns = [h.template_id for h in more]
    assert len(more) == 4 and len(set(patterns)) == 4 and not set(patterns) & {h.template_id for h in hits[:2]}
    levels = [h.level for h in more]
    assert levels == sorted(levels, key=lambda level: level not in ("warn", "error", "fatal"))

    # Right after the lines they relate to, before more lines like those.
    wider = [bool(c.hit.via) for c in agent.ask("Why did checkouts fail?", top_k=6, retrieval_only=True).citations]
    assert wider[:3] == [False] * 3 and wider[3:3 + sum(wider)] == [True] * sum(wider) and sum(wider) > 0


def test_lines_without_request_ids_bring_no_related_lines(tmp_path, local_embedder):
    log = tmp_path / "plain.log"
    log.write_text("\n".join(
        [f"2026-11-02T09:00:{i:02d}Z INFO worker {i} finished job in {i + 3} ms" for i in range(30)]
        + ["2026-11-02T09:01:00Z ERROR worker 7 failed: job 42 timed out"]) + "\n")
    space = Space("plain", str(tmp_path / "data"), collection="plain")
    store = LanceStore(str(tmp_path / "memory"))
    ingest(log, space.uri, show_progress=False)
    Indexer(space, store, local_embedder).run_once()
    answer = Agent("test", [SpaceMemory(space, store)], local_embedder, None).ask(
        "Why did the job fail?", top_k=3, retrieval_only=True)
    assert answer.citations and len(answer.citations) == 3
    assert not any(c.hit.via for c in answer.citations)


def test_request_ids_are_read_from_json_logfmt_and_headers_but_not_from_words():
    assert request_ids('{"req_id": "req-2b47a750a7", "n": 1}') == {"req-2b47a750a7": "req_id=req-2b47a750a7"}
    assert request_ids("traceId=4bf92f3577b34da6 spanId=1") == {"4bf92f3577b34da6": "traceId=4bf92f3577b34da6"}
    assert list(request_ids("X-Request-ID: 550e8400-e29b-41d4")) == ["550e8400-e29b-41d4"]
    assert request_ids("request_id=none") == {}  # no digit: not an id
    assert request_ids("myreq_id=abc123 prereq-id=x1234") == {}  # another key that ends the same way
    assert request_ids("request_id=abc:123") == {}  # would be cut into several search terms


def test_the_prompt_says_which_request_a_related_line_shares(shop, local_embedder):
    agent = Agent("test", [shop], local_embedder, None)
    answer = agent.ask("Why did checkouts fail?", top_k=2, retrieval_only=True)
    hits = [c.hit for c in answer.citations]
    prompt = build("Why did checkouts fail?", hits, answer.stats, system_prompt="s", history=[],
                   context_size=4096, answer_tokens=64, count_tokens=lambda text: len(text) // 4)
    data = prompt.messages[-1]["content"]
    related = next(i for i, h in enumerate(hits, 1) if h.via)
    assert f"[{related}] " in data and f"(same request: {hits[related - 1].via})" in data
