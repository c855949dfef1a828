"""Template mining: header recognition, masking, grouping, persistence, GA, the eval CLI."""

from __future__ import annotations

import json
import os

import pytest

from monologue.agent import eval_templates
from monologue.agent.eval_templates import grouping_accuracy
from monologue.agent.templates import Match, TemplateMiner
from monologue.agent.templates.header import HeaderModel
from monologue.agent.templates.masking import mask


# -- header recognition ---------------------------------------------------------------

@pytest.mark.parametrize(
    "line, message",
    [
        ("Jan  2 10:00:00 web-1 nginx[812]: upstream timed out", "upstream timed out"),
        ("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass", "check pass"),
        (
            "2024-01-02 10:00:00,123 INFO [main] org.example.Server: listening on 8080",
            "listening on 8080",
        ),
        ("2024-01-02 10:00:00,123 - app - WARNING - retrying in 5 s", "retrying in 5 s"),
        ("2024-01-02T10:00:00.123Z ERROR worker-3 - job failed", "job failed"),
        ("I0102 10:00:00.123456    1234 controller.go:123] Starting workers", "Starting workers"),
        ("03-17 16:13:38.811  1702  2395 D WindowManager: relayout", "relayout"),
        ("[Sun Dec 04 04:47:44 2005] [error] mod_jk child in error state 6",
         "mod_jk child in error state 6"),
        ("2016-09-28 04:30:31, Info                  CSI    Loading package",
         "Loading package"),
        ("20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
         "onStandStepChanged 3579"),
        ("- 1117838570 2005.06.03 R02-M1-N0 2005-06-03-15.42.50.675872 R02-M1-N0 RAS KERNEL INFO "
         "cache parity error corrected", "cache parity error corrected"),
        ("2572286 node-17 action start 1074126278 1 boot (command 1903)", "boot (command 1903)"),
        # No header: nothing is cut.
        ("Connection 12 closed by peer", "Connection 12 closed by peer"),
        ("time=2024-01-02T10:00:00Z level=info msg=started",
         "time=2024-01-02T10:00:00Z level=info msg=started"),
        ('{"ts": "2024-01-02T10:00:00Z", "msg": "started"}',
         '{"ts": "2024-01-02T10:00:00Z", "msg": "started"}'),
    ],
)
def test_header_is_recognised_without_a_format(line, message):
    assert HeaderModel().message(line) == message


def test_a_stream_cuts_every_line_at_the_same_place():
    # The second message starts with a number; a line-by-line guess could take it for a
    # header field, the stream's learned pattern does not.
    header = HeaderModel()
    assert header.message("2024-01-02 10:00:01 INFO db: pool ready") == "pool ready"
    assert header.message("2024-01-02 10:00:02 INFO db: 3 connections open") == (
        "3 connections open"
    )
    assert header.patterns == ["nnlc"]


def test_learned_header_patterns_survive_a_round_trip():
    header = HeaderModel()
    header.message("Jan  2 10:00:00 web-1 nginx[812]: upstream timed out")
    again = HeaderModel(header.patterns)
    assert again.patterns == header.patterns
    assert again.message("Feb 10 11:12:13 web-2 nginx[9]: upstream gone") == "upstream gone"


# -- masking --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "message, masked",
    [
        ("PacketResponder 1 for block blk_-6952295868487656571 terminating",
         "PacketResponder <*> for block blk_<*> terminating"),
        ("connect to 10.251.73.220:50010 failed", "connect to <*> failed"),
        ("instance 3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b deleted", "instance <*> deleted"),
        ("event plugged:e3871ffd-5cd5-4287-bddd-3529f7b59515", "event plugged:<*>"),
        ("flags=0x1f mask=ffff00a0 vis=c0000700", "flags=<*> mask=<*> vis=<*>"),
        ("took 250 ms, then <1 sec", "took <*>, then <*>"),
        ("sent 18.4 KB", "sent <*>"),
        ("open /var/lib/app/data.db", "open <*>"),
        ('"GET /v2/servers/detail?all=True HTTP/1.1" status: 200',
         '"GET <*> HTTP/<*>" status: <*>'),
        ("rhost=node3.example.org user=root", "rhost=<*> user=root"),
        ("onExtend:1514038530000 14 0 4", "onExtend:<*> <*>"),
        ("deleting blk_1 blk_2 blk_3 now", "deleting blk_<*> now"),
        ("connection from 10.0.0.1 () at noon", "connection from <*> at noon"),
        ("plain   words, no   variables", "plain words, no variables"),
    ],
)
def test_variables_are_masked(message, masked):
    assert mask(message) == masked


def test_json_lines_are_templated_on_keys_and_constant_values():
    masked = mask('{"level": "info", "msg": "took 5 ms", "n": 3, "ok": true, '
                  '"ctx": {"pod": "api-7f9c"}, "tags": ["a"]}')
    assert masked == "level=info msg=took <*> n=<*> ok=true ctx.pod=api<*> tags=<*>"


# -- grouping -------------------------------------------------------------------------

def test_lines_of_one_statement_share_a_template():
    miner = TemplateMiner()
    a = miner.add("2024-01-02 10:00:00 INFO api: request 17 took 12 ms")
    b = miner.add("2024-01-02 10:00:05 INFO api: request 913 took 140 ms")
    c = miner.add("2024-01-02 10:00:06 WARN api: cache miss for key user:42")
    assert a.template_id == b.template_id
    assert b.template == "request <*> took <*>"
    assert c.template_id != a.template_id
    assert len(miner) == 2
    assert miner.templates() == [b, c]


def test_a_generalised_template_keeps_its_id():
    miner = TemplateMiner()
    lines = [f"session opened for user {u} by admin" for u in ("alice", "bob", "carol")]
    first, *rest = [miner.add(line) for line in lines]
    assert first.template == "session opened for user alice by admin"
    assert {m.template_id for m in rest} == {first.template_id}
    assert rest[-1].template == "session opened for user <*> by admin"
    assert miner.template(first.template_id) == "session opened for user <*> by admin"


def test_statements_differing_in_a_word_of_a_short_line_stay_apart():
    miner = TemplateMiner()
    started = miner.add("VM Started (Lifecycle Event)")
    paused = miner.add("VM Paused (Lifecycle Event)")
    assert started.template_id != paused.template_id


def test_logfmt_lines_group_on_keys():
    miner = TemplateMiner()
    a = miner.add('time=2024-01-02T10:00:00Z level=info msg="served" status=200 dur=3ms')
    b = miner.add('time=2024-01-02T10:00:09Z level=info msg="served" status=404 dur=15ms')
    assert a.template_id == b.template_id
    assert a.template == 'time=<*> level=info msg="served" status=<*> dur=<*>'


def test_streams_learn_their_own_headers():
    miner = TemplateMiner()
    syslog = miner.add("Jan  2 10:00:00 web-1 app[1]: user alice logged in", stream="syslog")
    java = miner.add("2024-01-02 10:00:00,123 INFO [main] a.b.Auth: user alice logged in",
                     stream="java")
    assert syslog.template_id == java.template_id


def test_add_many_equals_add():
    lines = [f"2024-01-02 10:00:0{i} INFO x: job {i} done in {i * 7} ms" for i in range(5)]
    one_by_one = TemplateMiner()
    assert TemplateMiner().add_many(lines) == [one_by_one.add(line) for line in lines]


def test_ids_do_not_depend_on_the_process():
    lines = ["disk /dev/sda1 is 91% full", "disk /dev/sdb2 is 97% full", "backup done"]
    assert TemplateMiner().add_many(lines) == TemplateMiner().add_many(lines)


# -- persistence ----------------------------------------------------------------------

LINES = [
    "2024-01-02 10:00:00 INFO api: request 17 took 12 ms",
    "2024-01-02 10:00:01 INFO api: user alice logged in from the console",
    "2024-01-02 10:00:02 INFO api: user bob logged in from the console",
    "2024-01-02 10:00:03 WARN api: cache miss for key 42",
    "2024-01-02 10:00:04 INFO api: request 18 took 9 ms",
]


def test_a_restarted_miner_assigns_the_same_ids(tmp_path):
    state = tmp_path / "space" / "templates.json"
    miner = TemplateMiner(state)
    before = miner.add_many(LINES)
    miner.save()

    restarted = TemplateMiner(state)
    after = restarted.add_many(LINES)
    assert [m.template_id for m in after] == [m.template_id for m in before]
    assert [m.template for m in after] == [miner.template(m.template_id) for m in before]


def test_a_restarted_miner_keeps_mining(tmp_path):
    state = tmp_path / "templates.json"
    miner = TemplateMiner(state)
    known = miner.add(LINES[1])
    miner.save()

    restarted = TemplateMiner(state)
    again = restarted.add("2024-01-02 11:00:00 INFO api: user carol logged in from the console")
    new = restarted.add("2024-01-02 11:00:01 ERROR api: shard 3 unreachable")
    assert again.template_id == known.template_id
    assert again.template == "user <*> logged in from the console"
    assert new.template_id != known.template_id
    assert len(restarted) == 2
    restarted.save()
    assert len(TemplateMiner(state)) == 2


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    state = tmp_path / "templates.json"
    miner = TemplateMiner(state)
    miner.add_many(LINES)
    miner.save()
    miner.add("2024-01-02 11:00:01 ERROR api: shard 3 unreachable")
    miner.save()
    assert os.listdir(tmp_path) == ["templates.json"]
    assert len(json.loads(state.read_text())["templates"]) == len(miner)


def test_empty_lines_survive_a_restart(tmp_path):
    state = tmp_path / "templates.json"
    miner = TemplateMiner(state)
    empty = miner.add("")
    miner.save()
    assert TemplateMiner(state).add("") == empty


def test_save_needs_a_path():
    with pytest.raises(ValueError):
        TemplateMiner().save()


# -- grouping accuracy and the eval command -------------------------------------------

def test_grouping_accuracy_counts_only_exact_groups():
    truth = ["A", "A", "B", "B", "C"]
    assert grouping_accuracy([1, 1, 2, 2, 3], truth) == 1.0
    # B split in two: its 2 lines are wrong; A and C are still exact.
    assert grouping_accuracy([1, 1, 2, 4, 3], truth) == pytest.approx(3 / 5)
    # B and C merged: neither group is exact.
    assert grouping_accuracy([1, 1, 2, 2, 2], truth) == pytest.approx(2 / 5)
    with pytest.raises(ValueError):
        grouping_accuracy([1], truth)


def test_eval_templates_prints_ga_as_json(tmp_path, capsys):
    log = tmp_path / "tiny.log"
    truth = tmp_path / "tiny.log_structured.csv"
    lines = [
        ("2024-01-02 10:00:00 INFO api: request 17 took 12 ms", "E1"),
        ("2024-01-02 10:00:01 INFO api: request 18 took 9 ms", "E1"),
        ("2024-01-02 10:00:02 WARN api: cache miss for key 42", "E2"),
        ("2024-01-02 10:00:03 WARN api: cache miss for key 43", "E2"),
        ("2024-01-02 10:00:04 ERROR api: shard 3 unreachable", "E3"),
    ]
    log.write_text("".join(line + "\n" for line, _ in lines))
    truth.write_text(
        "LineId,Content,EventId\n"
        + "".join(f'{i},"x",{event}\n' for i, (_, event) in enumerate(lines, 1))
    )
    assert eval_templates.run(["--log", str(log), "--truth", str(truth), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ga"] == 1.0
    assert result["lines"] == 5
    assert result["templates"] == result["true_templates"] == 3


def test_a_template_covers_the_templates_its_wildcards_stand_for():
    from monologue.agent.templates.patterns import PatternGroups, covers

    assert covers("user <*> via <*>", "user dave via app")
    assert covers("pod=checkout<*> ok", "pod=checkout-5d8b ok")
    assert not covers("user dave via app", "user <*> via <*>")  # the other way round
    assert not covers("user <*> via <*>", "user dave via the app")  # another length
    assert not covers("pod=checkout<*> ok", "pod=payments-1 ok")
    texts = {"old": "placed <*> via <*>", "dave": "placed dave via app", "twin": "placed <*> via <*>",
             "wide": "<*> <*> via <*>", "other": "cancelled <*> via <*>", "wildcards": "<*> <*> <*> <*>"}
    groups = PatternGroups(texts)
    # Of equal texts the older covers; a template another asked-for one covers is left out.
    assert groups.group(["dave", "old"]) == {"old": ["old", "dave", "twin"]}
    assert groups.group(["wide", "other"]) == {"wide": ["wide", "old", "dave", "twin", "other"]}
    assert groups.group(["dave"]) == {"dave": ["dave"]}
    assert groups.group(["wildcards"]) == {"wildcards": ["wildcards"]}  # it says nothing of the others
