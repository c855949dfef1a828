"""Benchmark: do answers state the right figures? Questions over the demo's generated shop log.

The log is generated (seed 7, as `make demo`) into a fresh embedded Space, and
each question is asked with the embedded default model. Its facts (a count, a
time of day, a user, a version...) are computed from the generated lines
themselves, not from monologue. Figures: facts the answers state, against the
facts the prompt held (its cited lines and statistics: what the model could
have stated), in the same run; the answers whose unsupported figures
(prompt.unsupported_figures) were flagged, against those that missed a fact;
and the seconds per answer.

Causes: questions about a symptom (a 502, a failed checkout) whose cause another
service logged under the same request id ("timeout acquiring database
connection"). Asked with the lines those requests logged elsewhere
(recall.related) and without them (the baseline, same run): how often the
prompt held the cause, and how often the answer stated it.

    .venv/bin/python bench/answers.py [--lines N] [--questions N]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import emit_ratio, related_lines  # noqa: E402


def questions(lines: list[str]) -> list[tuple[str, list]]:
    """(question, facts) over the generated shop log; a fact is a string the answer must hold,
    a time of day (HH:MM:SS), or ("range", low, high) for any number in it."""
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    by_msg = lambda prefix: [e for e in entries if e["msg"].startswith(prefix)]  # noqa: E731
    first = lambda prefix: by_msg(prefix)[0]  # noqa: E731
    top = lambda rows, key: collections.Counter(e[key] for e in rows).most_common(1)[0][0]  # noqa: E731
    clock = lambda e: e["time"][11:19]  # noqa: E731
    payments, checkouts = by_msg("payment authorization failed"), by_msg("checkout failed")
    logins, placed = by_msg("login failed"), by_msg("order placed")
    waits = [e["waited_ms"] for e in payments]
    count = lambda text: str(sum(text in line for line in lines))  # noqa: E731
    back = next(line for line in lines if "back to 6 of 20" in line)
    return [
        ("How many checkouts failed?", [str(len(checkouts))]),
        ("How often did payments fail to get a database connection, and when did it start?",
         [str(len(payments)), clock(payments[0])]),
        ("How many failed logins were there?", [str(len(logins))]),
        ("Which user had the most failed logins?", [top(logins, "user")]),
        ("Which version of checkout was deployed, and when?",
         [first("deploy finished")["version"], clock(first("deploy finished"))]),
        ("How full was the postgres disk, and on which node?", ["91%", "worker-3"]),
        ("When did the payments database connection pool recover?", [clock(first("database connection pool recovered"))]),
        ("What caused the payment authorization failures?", ["exhaust"]),
        ("Why did checkouts fail?", ["503"]),
        ("How long did payments wait for a database connection?", [("range", min(waits), max(waits))]),
        ("How many stock lookups were there?", [count("stock lookup")]),
        ("How many orders were placed?", [str(len(placed))]),
        ("Which user placed the most orders?", [top(placed, "user")]),
        ("How many cache misses did inventory have?", [count("cache miss")]),
        ("What was the payments database pool size?", ["20"]),
        ("How many connections were waiting when the payments pool was exhausted?", ["14"]),
        ("When were postgres connections for payments back to normal?", [back[11:19]]),
        ("When did the first checkout failure happen?", [clock(checkouts[0])]),
        ("When did the last checkout failure happen?", [clock(checkouts[-1])]),
        ("Which payments pod had the most authorization failures?", [top(payments, "pod")]),
    ]


# The incident's cause, as the payments service logs it, in any of its words.
CAUSE = ("any", "database connection", "connection pool", "pool exhausted", "pool was exhausted")
CAUSE_QUESTIONS = [
    "Why did the gateway return 502 errors?",
    "Why did POST /api/checkout requests fail?",
    "Why did checkouts fail?",
    "Why did some checkout requests take over 5 seconds?",
]


def states(text: str, fact) -> bool:
    text = text.lower()
    if isinstance(fact, tuple) and fact[0] == "any":
        return any(words in text for words in fact[1:])
    if isinstance(fact, tuple):
        return any(fact[1] <= float(n) <= fact[2] for n in re.findall(r"\d+(?:\.\d+)?", text.replace(",", "")))
    if re.fullmatch(r"\d\d:\d\d:\d\d", fact):  # 09:13:28 or 9:13:28
        return re.search(rf"(?<!\d)0?{int(fact[:2])}:{fact[3:]}", text) is not None
    return fact.lower() in text


def held_by_prompt(answer) -> str:
    """What the model was given: its cited lines and the statistics, as text."""
    figures = [f"{s.count} {s.template} {s.first_seen_ns} {s.last_seen_ns} "
               + " ".join(f"{k}={v} {n}" for k, v, n in s.top_values) for s in answer.stats]
    clock = [time.strftime("%H:%M:%S", time.gmtime(ns // 10**9))
             for s in answer.stats for ns in (s.first_seen_ns, s.last_seen_ns)]
    return "\n".join([c.hit.text for c in answer.citations] + figures + clock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000, help="generated shop lines (the demo's 20,000)")
    parser.add_argument("--questions", type=int, default=0, help="ask only the first N questions (0: all)")
    parser.add_argument("--causes", type=int, default=len(CAUSE_QUESTIONS), help="cause questions to ask (0: none)")
    args = parser.parse_args()

    from monologue.agent import wiring
    from monologue.agent.cli import embedded_agent
    from monologue.agent.generate import write_log
    from monologue.agent.indexer import Indexer
    from monologue.agent.ingest import ingest
    from monologue.agent.space import SpaceRegistry

    with tempfile.TemporaryDirectory(prefix="monologue-bench-answers-") as home:
        log = Path(home) / "shop.log"
        write_log(log, "shop", args.lines, seed=7)
        registry = SpaceRegistry(Path(home))
        ingest(log, registry.create("shop").uri, show_progress=False)
        memory = wiring.embedded_memory(registry, "shop")
        Indexer(memory.space, memory.store, wiring.local_embedder()).run_once()
        agent = embedded_agent(Path(home), ["shop"])
        asked = questions(log.read_text().splitlines())[: args.questions or None]
        stated = held = 0
        seconds, flagged, wrong, wrong_flagged = [], 0, 0, 0
        for question, facts in asked:
            started = time.perf_counter()
            answer = agent.ask(question, top_k=6)  # as the demo asks
            seconds.append(time.perf_counter() - started)
            prompt = held_by_prompt(answer)
            stated += sum(states(answer.text, f) for f in facts)
            held += sum(states(prompt, f) for f in facts)
            missed = any(states(prompt, f) and not states(answer.text, f) for f in facts)
            flagged += bool(answer.unsupported_figures)
            wrong += missed
            wrong_flagged += missed and bool(answer.unsupported_figures)
            print(f"{sum(states(answer.text, f) for f in facts)}/{len(facts)} {question}\n"
                  f"    {answer.text[:300]!r}\n    unsupported: {answer.unsupported_figures}", file=sys.stderr,
                  flush=True)
        causes = {}
        for mode in ("related", "without"):
            with related_lines(mode == "related"):
                answers = [agent.ask(question, top_k=6) for question in CAUSE_QUESTIONS[: args.causes]]
            causes[mode] = (sum(states(held_by_prompt(a), CAUSE) for a in answers),
                            sum(states(a.text, CAUSE) for a in answers))
            for question, answer in zip(CAUSE_QUESTIONS, answers):
                print(f"{mode}: {int(states(answer.text, CAUSE))} {question}\n    {answer.text[:300]!r}",
                      file=sys.stderr, flush=True)
    facts = sum(len(f) for _, f in asked)
    print(json.dumps({"bench": "answers", "metric": "facts_in_prompt", "value": held, "unit": "facts",
                      "of": facts}), flush=True)
    emit_ratio("answers", "facts_stated", stated, "facts", max(held, 1), None)
    print(json.dumps({"bench": "answers", "metric": "answers_with_unsupported_figures", "value": flagged,
                      "unit": "answers", "of": len(asked), "missing_a_fact": wrong,
                      "missing_a_fact_and_flagged": wrong_flagged}), flush=True)
    for at, metric in ((0, "causes_in_prompt"), (1, "causes_stated")):
        print(json.dumps({"bench": "answers", "metric": metric, "value": causes["related"][at], "unit": "answers",
                          "of": args.causes, "baseline": causes["without"][at],
                          "ratio": round(causes["related"][at] / causes["without"][at], 3) if causes["without"][at]
                          else None, "baseline_is": "the same questions without related lines"}), flush=True)
    print(json.dumps({"bench": "answers", "metric": "answer_s_p50", "value": round(statistics.median(seconds), 2),
                      "unit": "s"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
