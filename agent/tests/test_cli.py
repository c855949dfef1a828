"""The `monologue` command line as a user runs it: demo, ingest, ask, chat, with the real small models."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json

import pytest
from monologue.agent import cli
from monologue.agent.service import create_server

LINES = [f"2026-11-02T09:{i // 60:02d}:{i % 60:02d}Z INFO checkout order ord-{i} placed in {20 + i % 50} ms"
         for i in range(120)] + [
    "2026-11-02T09:02:10Z INFO worker started batch job nightly-export",
    "2026-11-02T09:05:00Z ERROR payments timeout acquiring database connection: pool exhausted (20 of 20 in use)",
    "2026-11-02T09:05:01Z ERROR checkout failed: payments returned 503",
    "2026-11-02T09:06:00Z WARN login failed for user alice: invalid password",
]
FAILED = "checkout failed: payments returned 503"


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedding_model):
    home = tmp_path_factory.mktemp("home")
    log = home / "shop.log"
    log.write_text("\n".join(LINES) + "\n")
    assert cli.main(["--home", str(home), "ingest", "-f", str(log), "--space", "shop", "--quiet"]) == 0
    return home


def answers(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_since_and_until_take_an_iso_time_or_a_duration_ago():
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc).timestamp()
    assert cli._time_ns("1h30m", now=now) == int((now - 5400) * 1e9)
    assert cli._time_ns("7d", now=now) == int((now - 7 * 86400) * 1e9)
    assert cli._time_ns("2026-11-02T09:00:00Z") == cli._time_ns("2026-11-02T09:00:00")
    with pytest.raises(argparse.ArgumentTypeError, match="duration ago"):
        cli._time_ns("2x")
    args = cli.build_parser().parse_args(["ask", "--space", "s", "--since", "15m", "q"])
    assert 14 * 60 <= dt.datetime.now(dt.timezone.utc).timestamp() - args.since / 1e9 < 16 * 60


def test_ask_prints_the_cited_lines_and_their_statistics(home, capsys):
    assert cli.main(["--home", str(home), "ask", "--space", "shop", "--retrieval-only", "--top-k", "3",
                     "Why did checkout fail?"]) == 0
    out = capsys.readouterr().out
    assert "[1]" in out and FAILED in out.split("[2]")[0]
    assert "statistics:" in out and "1 lines" in out
    assert cli.main(["--home", str(home), "ask", "--space", "shop", "--retrieval-only", "--json",
                     "--since", "2026-11-02T09:05:01Z", "--until", "2026-11-02T09:06:00Z", "what failed?"]) == 0
    [answer] = answers(capsys.readouterr().out)
    assert [c["line"] for c in answer["citations"]] == [LINES[-2]]  # the range holds that line alone
    assert answer["time_range"] == {"start": "2026-11-02T09:05:01Z", "end": "2026-11-02T09:06:00Z"}
    assert cli.main(["--home", str(home), "ask", "--space", "shop", "--retrieval-only", "what failed on 2026-11-02?"]) == 0
    assert "(over the lines since 2026-11-02T00:00:00Z and before 2026-11-03T00:00:00Z)" in capsys.readouterr().out


def test_ask_without_a_known_space_says_what_to_do(home, tmp_path, capsys):
    assert cli.main(["--home", str(home), "ask", "--space", "nope", "x"]) == 2
    assert "no Space 'nope' (known: shop)" in capsys.readouterr().err
    assert cli.main(["--home", str(tmp_path), "ask", "x"]) == 2
    assert "no Space yet: create one with `monologue ingest" in capsys.readouterr().err
    # The only Space is asked when none is named; of several, the user names one.
    assert cli.main(["--home", str(home), "ask", "--retrieval-only", "--json", "Why did checkout fail?"]) == 0
    assert FAILED in answers(capsys.readouterr().out)[0]["citations"][0]["line"]
    (tmp_path / "spaces" / "a").mkdir(parents=True)
    (tmp_path / "spaces" / "b").mkdir()
    assert cli.main(["--home", str(tmp_path), "ask", "x"]) == 2
    assert "give --space NAME, one of: a, b" in capsys.readouterr().err


def chat(home, questions: str, monkeypatch, *options: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(questions))
    return cli.main(["--home", str(home), "chat", "--space", "shop", "--retrieval-only", "--top-k", "2",
                     "--json", *options])


def test_a_follow_up_in_chat_is_searched_with_the_question_it_follows(home, capsys, monkeypatch):
    assert chat(home, "Why did checkout fail?\n\nWhen did it start?\nWere there failed logins?\n", monkeypatch) == 0
    first, follow_up, new_subject = answers(capsys.readouterr().out)
    assert FAILED in first["citations"][0]["line"]
    assert FAILED in follow_up["citations"][0]["line"]
    assert "login failed" in new_subject["citations"][0]["line"]
    # Asked alone, the follow-up finds what "start" means on its own: another line.
    assert cli.main(["--home", str(home), "ask", "--space", "shop", "--retrieval-only", "--json",
                     "When did it start?"]) == 0
    assert FAILED not in answers(capsys.readouterr().out)[0]["citations"][0]["line"]
    # A follow-up keeps its subject's time range, unless it names its own.
    assert chat(home, "What failed before 2026-11-02T09:05:01Z?\nAnd what did that log?\n"
                "And on 2026-11-03?\n", monkeypatch) == 0
    subject, follow_up, elsewhen = answers(capsys.readouterr().out)
    assert subject["time_range"] == follow_up["time_range"] == {"end": "2026-11-02T09:05:01Z"}
    assert all(c["time"] < "2026-11-02T09:05:01Z" for c in follow_up["citations"])
    assert elsewhen["time_range"]["start"] == "2026-11-03T00:00:00Z" and not elsewhen["citations"]


def test_chat_with_a_running_agent_keeps_its_session(home, capsys, monkeypatch):
    agent = cli.embedded_agent(home, ["shop"], retrieval_only=True)
    server, port, _ = create_server("127.0.0.1:0", agent)
    server.start()
    try:
        assert chat(home, "Why did checkout fail?\nWhen did it start?\n", monkeypatch,
                    "--agent", f"127.0.0.1:{port}") == 0
    finally:
        server.stop(0)
    first, follow_up = answers(capsys.readouterr().out)
    assert FAILED in first["citations"][0]["line"] and FAILED in follow_up["citations"][0]["line"]
    # The agent is gone: each question says so, and the chat goes on to the end of its input.
    assert chat(home, "What failed?\nWhat else?\n", monkeypatch, "--agent", f"127.0.0.1:{port}",
                "--timeout", "5") == 0
    assert capsys.readouterr().err.count("UNAVAILABLE") == 2


def test_the_demo_answers_three_questions_with_citations(tmp_path, capsys, generation_model):
    assert cli.main(["--home", str(tmp_path), "demo", "--lines", "3000"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Q: ") == 3 and captured.out.count("A: ") == 3
    assert captured.out.count("statistics:") == 3 and captured.out.count(" [1] ") == 3
    # "Why did checkouts fail?": what those requests logged in payments and the gateway, marked.
    first = captured.out.split("Q: ")[1]
    assert "(same req_id=req-" in first and "timeout acquiring database connection" in first
    assert "[3/3]" in captured.err and "demo finished" in captured.err


def test_agent_serve_answers_counts_its_requests_on_metrics_and_stops_on_sigterm(home):
    import grpc
    from harness.cli_process import Running, get
    from monologue.api.v1 import agent_pb2 as pb
    from monologue.api.v1 import agent_pb2_grpc
    from prometheus_client.parser import text_string_to_metric_families

    agent = Running(["--home", str(home), "agent", "serve", "--space", "shop", "--listen", "127.0.0.1:0",
                     "--http-port", "0"])
    try:
        port, http = agent.wait_for_field("port"), agent.wait_for_field("http_port")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            answered = stub.Ask(pb.AskRequest(question="Why did checkout fail?"), timeout=120)
            recalled = stub.Ask(pb.AskRequest(question="Why did checkout fail?", retrieval_only=True), timeout=30)
            for request, code in ((pb.AskRequest(question="what failed?", spaces=["payments"]), "PERMISSION_DENIED"),
                                  (pb.AskRequest(question=" "), "INVALID_ARGUMENT")):
                with pytest.raises(grpc.RpcError) as err:
                    stub.Ask(request, timeout=30)
                assert err.value.code().name == code
        assert FAILED in recalled.citations[0].line
        status, text = get(http, "/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        requests = {labels: value for (name, labels), value in samples.items()
                    if name == "monologue_agent_requests_total"}
        assert requests == {(("code", "OK"), ("method", "Ask")): 2,
                            (("code", "PERMISSION_DENIED"), ("method", "Ask")): 1,
                            (("code", "INVALID_ARGUMENT"), ("method", "Ask")): 1}
        assert samples[("monologue_agent_recall_seconds_count", ())] == 2
        assert samples[("monologue_agent_generation_seconds_count", ())] == 1
        assert samples[("monologue_agent_prompt_tokens_total", ())] == answered.timings.prompt_tokens
        assert samples[("monologue_agent_completion_tokens_total", ())] == answered.timings.completion_tokens > 0
        assert samples[("monologue_agent_requests_in_flight", ())] == 0
        assert get(http, "/readyz")[0] == get(http, "/healthz")[0] == 200
    finally:
        code = agent.stop()
    assert code == 0 and any('"agent stopped"' in line for line in agent.lines)
