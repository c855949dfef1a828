"""The `monologue` command line.

Embedded mode keeps Spaces under $MONOLOGUE_HOME (default
~/.local/share/monologue): `monologue ingest -f app.log --space demo`, then
`monologue ask --space demo "why did checkouts fail?"`. With --agent
host:port, `ask` talks to a running Agent instead.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import re
import signal
import sys
import threading
import time
import uuid
from importlib.metadata import version
from pathlib import Path

from monologue.common import jsonlog

from . import eval_logqa, eval_templates, wiring
from .space import SpaceNotFound, SpaceRegistry
from .timewords import parse_time

log = logging.getLogger("monologue.cli")


def _err(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


_AGO = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
TIME_HELP = "an ISO 8601 time (2026-11-02T09:00:00Z) or a duration ago (90s, 15m, 2h, 1h30m, 7d)"


def _time_ns(text: str | None, now: float | None = None) -> int | None:
    """An ISO time, or a duration before `now` as `kubectl logs --since` takes it."""
    if not text:
        return None
    if (ago := _AGO.fullmatch(text.strip())) and any(ago.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in ago.groups())
        back = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        return int(((time.time() if now is None else now) - back.total_seconds()) * 1e9)
    try:
        return int(parse_time(text).timestamp() * 1e9)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {TIME_HELP}") from None


# ---------------------------------------------------------------- generate / ingest / index


def cmd_generate(args) -> int:
    from .generate import generate

    for line in generate(args.kind, args.lines, args.seed):
        sys.stdout.write(line + "\n")
    return 0


def _index(registry: SpaceRegistry, name: str) -> None:
    from .indexer import Indexer

    memory = wiring.embedded_memory(registry, name)
    print(f"indexing Space {name!r} (redact, mine templates, embed new templates)...", file=sys.stderr)
    report = Indexer(memory.space, memory.store, wiring.local_embedder()).run_once()
    rate = report.lines / report.seconds if report.seconds else 0
    print(f"indexed {report.lines} lines from {report.objects} objects, {report.new_templates} new templates "
          f"in {report.seconds:.1f} s ({rate:,.0f} lines/s)", file=sys.stderr)
    for key in report.quarantined:
        print(f"warning: quarantined unreadable object {key}", file=sys.stderr)


def cmd_ingest(args) -> int:
    from .ingest import ingest

    registry = SpaceRegistry(args.home)
    labels = dict(pair.split("=", 1) for pair in args.label)
    space = registry.create(args.space)
    try:
        report = ingest(args.file, space.uri, labels, show_progress=not args.quiet)
    except FileNotFoundError as err:
        return _err(str(err))
    print(f"ingested {report.lines} lines ({report.bytes / 1e6:.1f} MB) into Space {args.space!r} "
          f"as {len(report.objects)} Parquet objects", file=sys.stderr)
    if not args.no_index:
        _index(registry, args.space)
    return 0


def cmd_index(args) -> int:
    _index(SpaceRegistry(args.home), args.space)
    return 0


def cmd_indexer(args) -> int:
    """The cluster indexer: follows a Space's storage until SIGTERM."""
    from .indexer import Indexer
    from .telemetry import IndexerTelemetry

    config = wiring.load_config(args.config)
    space = wiring.space_from_config(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # A view copies nothing: its lines are in its source's memory, and recall
    # applies its filter. It stays up all the same (the Deployment expects a pod).
    indexer = None if space.where else Indexer(space, wiring.store_from_config(config),
                                               wiring.embedder_from_config(config.get("embedder")))
    telemetry = IndexerTelemetry(space.name, indexer)
    server = telemetry.serve(args.http_host, args.http_port)
    log.info("indexer started" if indexer else "view Space: nothing to index",
             extra={"space": space.name, "storage": space.uri, "http_port": server.server_address[1]})
    try:
        if indexer:
            indexer.run(stop, poll_seconds=args.poll_seconds)
        else:
            stop.wait()
    finally:
        server.shutdown()
        server.server_close()
    log.info("indexer stopped", extra={"space": space.name})
    return 0


def cmd_spaces(args) -> int:
    registry = SpaceRegistry(args.home)
    for name in registry.names():
        print(name)
    return 0


def cmd_sql(args) -> int:
    import duckdb

    memory = wiring.embedded_memory(SpaceRegistry(args.home), args.space)
    try:
        result = memory.space.connect(since_ns=args.since, until_ns=args.until).execute(args.query)
    except duckdb.Error as err:
        return _err(str(err))
    columns = [d[0] for d in result.description]
    print("\t".join(columns))
    for row in result.fetchall():
        print("\t".join("" if v is None else str(v) for v in row))
    return 0


# ---------------------------------------------------------------- ask / serve


def _print_answer(answer: dict, streamed: bool) -> None:
    if not streamed:
        print(answer["answer"])
    if answer.get("unsupported_figures"):
        print(f"\n(not in the cited lines or statistics, check before trusting: "
              f"{', '.join(answer['unsupported_figures'])})")
    if span := answer.get("time_range"):
        bounds = [f"since {span['start']}"] * ("start" in span) + [f"before {span['end']}"] * ("end" in span)
        print(f"\n(over the lines {' and '.join(bounds)})")
    print()
    for c in answer["citations"]:
        marker = "*" if c.get("cited") else " "
        labels = " ".join(f"{k}={v}" for k, v in sorted(c.get("labels", {}).items()))
        via = f"  (same {c['via']})" if c.get("via") else ""
        print(f" {marker}[{c['number']}] {c['time']} {c['space']} {labels}{via}\n      {c['line']}")
    if answer.get("stats"):
        print("\nstatistics:")
        for s in answer["stats"]:
            print(f"  {s['count']:>7} lines  {s['first_seen']} .. {s['last_seen']}  {s['template'][:100]}")
            by_key: dict[str, list[str]] = {}
            for top in s.get("top_values", []):
                by_key.setdefault(top["key"], []).append(f"{top['value']} {int(top['count'])}")
            for key, values in by_key.items():
                if len(values) > 1:  # one value for every line says nothing here
                    print(f"{'':16}by {key}: {', '.join(values)}")
    t = answer["timings"]
    print(f"\n(recall {t['recall_ms']:.0f} ms, prompt {t['prompt_tokens']} tokens, "
          f"generation {t['generation_ms'] / 1000:.1f} s)", file=sys.stderr)


def _answer_dict(answer) -> dict:
    iso = lambda ns: dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
    return {
        "question": answer.question, "answer": answer.text,
        "citations": [{"number": c.number, "cited": c.cited, "space": c.hit.space, "line_id": c.hit.line_id,
                       "time": iso(c.hit.timestamp_ns), "labels": c.hit.labels, "line": c.hit.text,
                       "score": c.hit.score, "via": c.hit.via} for c in answer.citations],
        "stats": [{"space": s.space, "template_id": s.template_id, "template": s.template, "count": s.count,
                   "first_seen": iso(s.first_seen_ns), "last_seen": iso(s.last_seen_ns),
                   "top_values": [{"key": k, "value": v, "count": n} for k, v, n in s.top_values]}
                  for s in answer.stats],
        "unsupported_figures": answer.unsupported_figures,
        "time_range": {key: iso(ns) for key, ns in (("start", answer.since_ns), ("end", answer.until_ns))
                       if ns is not None},
        "timings": {"recall_ms": answer.recall_ms, "prompt_tokens": answer.prompt_tokens,
                    "generation_ms": answer.generation_ms, "completion_tokens": answer.completion_tokens},
    }


def embedded_agent(home: Path | None, spaces: list[str], retrieval_only: bool = False):
    from .answering import Agent

    registry = SpaceRegistry(home)
    memories = [wiring.embedded_memory(registry, name) for name in spaces]
    generator = None if retrieval_only else wiring.generator_from_config(None)
    return Agent("embedded", memories, wiring.local_embedder(), generator)


class _Failed(Exception):
    """A question that got no answer (the agent is unreachable); the message says why."""


def _only_space(home: Path | None) -> str:
    """The Space to ask when none is named: the only one there is."""
    names = SpaceRegistry(home).names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise _Failed("no Space yet: create one with `monologue ingest -f FILE --space NAME` "
                      "(or `make demo`), or ask a running agent with --agent HOST:PORT")
    raise _Failed(f"give --space NAME, one of: {', '.join(names)} (or --agent HOST:PORT)")


@contextlib.contextmanager
def _asker(args):
    """ask(question, session_id) -> the answer as a dict, its text streamed to
    stdout unless --json: from embedded Spaces, or from the Agent at --agent."""
    def write(text: str) -> None:
        if not args.json:
            sys.stdout.write(text)
            sys.stdout.flush()

    options = dict(since_ns=args.since, until_ns=args.until, top_k=args.top_k, retrieval_only=args.retrieval_only)
    if not args.agent:
        agent = embedded_agent(args.home, args.space or [_only_space(args.home)], args.retrieval_only)

        def ask(question: str, session_id: str = "") -> dict:
            for item in agent.stream(question, session_id=session_id, **options):
                if isinstance(item, str):
                    write(item)
                else:
                    return _answer_dict(item)
            raise RuntimeError("the answer stream ended without an answer")

        yield ask
        return

    import grpc
    from google.protobuf.json_format import MessageToDict
    from monologue.api.v1 import agent_pb2 as pb
    from monologue.api.v1 import agent_pb2_grpc

    def ask(question: str, session_id: str = "") -> dict:
        request = pb.AskRequest(question=question, spaces=args.space, top_k=args.top_k,
                                retrieval_only=args.retrieval_only)
        if args.since:
            request.time_range.start.FromNanoseconds(args.since)
        if args.until:
            request.time_range.end.FromNanoseconds(args.until)
        done = None
        try:
            for event in stub.Chat(pb.ChatRequest(session_id=session_id, ask=request), timeout=args.timeout):
                if event.HasField("token"):
                    write(event.token)
                elif event.HasField("done"):
                    done = event.done
        except grpc.RpcError as err:
            raise _Failed(f"agent {args.agent}: {err.code().name}: {err.details()}") from None
        answer = MessageToDict(done, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        for c in answer["citations"]:
            c["time"] = c.pop("timestamp", "")
        for s in answer["stats"]:
            s["count"] = int(s["count"])
        answer["question"] = question
        return answer

    with grpc.insecure_channel(args.agent) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        yield ask


def _show(args, answer: dict) -> None:
    if args.json:
        print(json.dumps(answer), flush=True)
    else:
        _print_answer(answer, streamed=bool(args.agent) or not args.retrieval_only)


def cmd_ask(args) -> int:
    try:
        with _asker(args) as ask:
            _show(args, ask(args.question))
    except (_Failed, SpaceNotFound) as err:
        return _err(str(err))
    return 0


ASK_HELP = """Ask a question of embedded Spaces, or of a running Agent (--agent). The answer streams,
then the log lines it cites and the exact statistics of their patterns.

examples:
  monologue ask "why did checkouts fail?"
  monologue ask --space shop --since 1h "which pods logged errors?"
  monologue ask --retrieval-only --json "how often did payments time out?"
  monologue ask --agent localhost:50051 "when did the first login failure happen?"
"""

CHAT_HELP = "Ask, then ask follow-ups (\"when did it start?\"): they are searched with the question they follow."


def _typed_questions():
    """Questions typed at a terminal, with line editing and history, until an empty line or Ctrl-D."""
    import readline  # noqa: F401  (input() edits lines once it is loaded)

    print(f"{CHAT_HELP} An empty line or Ctrl-D ends.", file=sys.stderr)
    while line := input("\n> ").strip():
        yield line


def cmd_chat(args) -> int:
    """One session: the agent keeps its last turns, and a follow-up is searched
    with the question it refers back to. Questions come one per line from stdin."""
    session_id = uuid.uuid4().hex
    interactive = sys.stdin.isatty()
    try:
        with _asker(args) as ask:
            questions = _typed_questions() if interactive else (q for line in sys.stdin if (q := line.strip()))
            for question in questions:
                if not args.json:
                    shown = "" if interactive else f"\nQ: {question}\n"  # typed, it is on the screen
                    print(shown + ("" if args.retrieval_only else "A: "), end="", flush=True)
                try:
                    _show(args, ask(question, session_id))
                except _Failed as err:  # the agent may be back for the next question
                    print(f"error: {err}", file=sys.stderr)
    except EOFError:  # Ctrl-D at the prompt
        pass
    except (_Failed, SpaceNotFound) as err:
        return _err(str(err))
    return 0


def cmd_agent_serve(args) -> int:
    from .answering import Agent, AnswerLog
    from .recall import SpaceMemory
    from .service import create_server
    from .telemetry import AgentMetrics, serve_http

    if args.config:
        config = wiring.load_config(args.config)
        memories = [SpaceMemory(wiring.space_from_config(s), wiring.store_from_config(s)) for s in config["spaces"]]
        agent = Agent(config["name"], memories, wiring.embedder_from_config(config.get("embedder")),
                      wiring.generator_from_config(config.get("model")),
                      system_prompt=config.get("systemPrompt") or Agent.__init__.__kwdefaults__["system_prompt"],
                      top_k=int(config.get("topK") or 8), answer_log=AnswerLog())
        listen = args.listen or config.get("listen", "0.0.0.0:50051")
    else:
        if not args.space:
            return _err("give --config agent.json (cluster) or --space NAME (embedded)")
        agent = embedded_agent(args.home, args.space)
        agent.answer_log = AnswerLog()
        listen = args.listen or "127.0.0.1:50051"
    metrics = AgentMetrics(sessions=agent.sessions_kept)
    server, port, health_servicer = create_server(listen, agent, metrics=metrics)
    stop = threading.Event()
    http_host = args.http_host or listen.rpartition(":")[0].strip("[]")
    http = serve_http(metrics.registry, http_host, args.http_port, healthy=lambda: True,
                      ready=lambda: not stop.is_set(), name="agent")
    server.start()
    log.info("agent serving", extra={"agent": agent.name, "port": port, "spaces": list(agent.memories),
                                     "http_port": http.server_address[1]})
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(args.grace).wait()
    http.shutdown()
    http.server_close()
    log.info("agent stopped", extra={"agent": agent.name})
    return 0


# ---------------------------------------------------------------- demo


DEMO_QUESTIONS = [
    "Why did checkouts fail?",
    "How often did payments fail to get a database connection, and when did it start?",
    "Were there failed logins, and for which users?",
]


def cmd_demo(args) -> int:
    from .generate import write_log

    registry = SpaceRegistry(args.home)
    started = time.monotonic()
    sample = registry.home / "demo-shop.log"
    sample.parent.mkdir(parents=True, exist_ok=True)
    print(f"[1/3] generating {args.lines} lines of sample logs of a small shop -> {sample}", file=sys.stderr)
    write_log(sample, "shop", args.lines, seed=7)
    print("[2/3] ingesting them into the embedded Space 'demo' (Parquet + DuckDB + LanceDB)", file=sys.stderr)
    ingest_args = argparse.Namespace(home=args.home, space="demo", file=sample, label=[], quiet=False,
                                     no_index=False)
    if (code := cmd_ingest(ingest_args)) != 0:
        return code
    print("[3/3] asking three questions (llama.cpp in process; the first load takes a few seconds)",
          file=sys.stderr)
    agent = embedded_agent(args.home, ["demo"])
    for question in DEMO_QUESTIONS:
        print(f"\n\033[1mQ: {question}\033[0m" if sys.stdout.isatty() else f"\nQ: {question}")
        sys.stdout.write("A: ")
        answer = None
        for item in agent.stream(question, top_k=6):
            if isinstance(item, str):
                sys.stdout.write(item)
                sys.stdout.flush()
            else:
                answer = _answer_dict(item)
        _print_answer(answer, streamed=True)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s. Ask your own: "
          f".venv/bin/monologue ask --space demo \"...\"", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- parser


def _answer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", action="append", default=[],
                   help="Space to ask (repeatable; default: the only embedded Space)")
    p.add_argument("--agent", help="HOST:PORT of a running Agent (instead of embedded Spaces)")
    p.add_argument("--since", type=_time_ns, help=f"only lines at or after this time: {TIME_HELP}")
    p.add_argument("--until", type=_time_ns, help="only lines before this time (same forms)")
    p.add_argument("--top-k", type=int, default=0, help="lines to recall (default: the agent's)")
    p.add_argument("--retrieval-only", action="store_true", help="no generation: citations and stats")
    p.add_argument("--json", action="store_true", help="print one JSON object per answer")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a remote agent's answer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monologue", description=__doc__.split("\n\n")[0].strip() + " " + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version("monologue-agent"))
    parser.add_argument("--home", type=Path, default=None,
                        help="where embedded Spaces live (default: $MONOLOGUE_HOME or ~/.local/share/monologue)")
    parser.add_argument("--log-level", default="warning", help="log level of monologue's own JSON logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="sample logs -> embedded Space -> three questions answered with citations")
    p.add_argument("--lines", type=int, default=20000, help="sample log lines to generate (default 20000)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("generate", help="write realistic sample logs to stdout")
    p.add_argument("kind", choices=["shop"], help="what to simulate")
    p.add_argument("--lines", type=int, default=10000)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("ingest", help="parse a log file into an embedded Space and index it")
    p.add_argument("-f", "--file", type=Path, required=True, help="plain text, JSON lines or logfmt")
    p.add_argument("--space", required=True, help="Space name (created when new)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="stream label (repeatable)")
    p.add_argument("--no-index", action="store_true", help="only write Parquet; index later with `index`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("index", help="index what an embedded Space has not indexed yet")
    p.add_argument("--space", required=True)
    p.set_defaults(run=cmd_index)

    p = sub.add_parser("indexer", help="(cluster) index a Space's storage continuously, per space.json")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--poll-seconds", type=float, default=2.0)
    p.add_argument("--http-host", default="0.0.0.0", help="where /metrics, /healthz and /readyz listen")
    p.add_argument("--http-port", type=int, default=8080, help="of /metrics, /healthz and /readyz (0: pick one)")
    p.set_defaults(run=cmd_indexer)

    p = sub.add_parser("spaces", help="list the embedded Spaces")
    p.set_defaults(run=cmd_spaces)

    p = sub.add_parser("sql", help="run SQL over a Space's views `logs` and `templates`")
    p.add_argument("--space", required=True)
    p.add_argument("--since", type=_time_ns,
                   help=f"the views hold only lines at or after this time (and read only their objects): {TIME_HELP}")
    p.add_argument("--until", type=_time_ns, help="the views hold only lines before this time (same forms)")
    p.add_argument("query")
    p.set_defaults(run=cmd_sql)

    p = sub.add_parser("ask", help="ask a question; the answer cites log lines", description=ASK_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("question", help="in quotes; it may name its time (\"in the last hour\", \"yesterday\")")
    _answer_options(p)
    p.set_defaults(run=cmd_ask)

    p = sub.add_parser("chat", help="ask questions and follow-ups, one per line (a session)", description=CHAT_HELP)
    _answer_options(p)
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("agent", help="run an Agent")
    agent_sub = p.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    serve = agent_sub.add_parser("serve", help="serve the Agent gRPC API")
    serve.add_argument("--config", type=Path, help="agent.json rendered by the operator (cluster)")
    serve.add_argument("--space", action="append", default=[], help="embedded Space(s) to serve")
    serve.add_argument("--listen", help="address to bind (default 127.0.0.1:50051 embedded)")
    serve.add_argument("--grace", type=float, default=20.0, help="seconds to finish requests on SIGTERM")
    serve.add_argument("--http-host", help="where /metrics, /healthz and /readyz listen (default: the gRPC host)")
    serve.add_argument("--http-port", type=int, default=8080, help="of /metrics, /healthz and /readyz (0: pick one)")
    serve.set_defaults(run=cmd_agent_serve)

    p = sub.add_parser("eval", help="evaluations")
    evaluations = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    eval_templates.add_parser(evaluations)
    eval_logqa.add_parser(evaluations)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    jsonlog.setup(args.log_level)
    try:
        return args.run(args)
    except SpaceNotFound as err:
        return _err(str(err))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
