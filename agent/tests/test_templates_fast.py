"""Template mining fast paths: they give exactly the templates of the plain algorithm.

The fast paths (JSON lines by shape plan, string values masked in one joint regex pass,
the collapse gates, possessive regexes, the header scan stopping at the first units) must
not change a single template. The reference below is the masking as it was before them,
verbatim; each fast path is checked against it on the shop sample logs, the Loghub lines
when present, and seeded random input built to hit the edges (separators, quantities
across values, `()`, dotted names, odd whitespace, repeated masks).
"""

from __future__ import annotations

import hashlib
import json
import random
import re

import pytest

from monologue.agent.eval_templates import default_data_dir, loghub_systems, read_log
from monologue.agent.templates import TemplateMiner
from monologue.agent.templates import header as header_module
from monologue.agent.templates import masking
from monologue.agent.templates.header import HeaderModel, _scan, _take, _units, classify
from monologue.agent.templates.masking import mask

# -- the reference: masking before the fast paths ---------------------------------------

_ID = r"\w.\-/@+%#~"
_UNITS = (
    r"ns|us|µs|ms|s|sec|secs|seconds?|mins?|minutes?|hrs?|hours?|days?"
    r"|[kKMGTP]i?B|bytes?|[kKMGT]bps"
)
_R_VARIABLE = re.compile(
    r"[0-9<>~/(-]"
    r"(?:"
    rf"(?<=[<>~0-9])(?<![\w.][<>~])(?<=[<>~]|\d)\d*(?:\.\d+)?\s?(?:{_UNITS})(?![\w.])"
    r"|(?<=/)(?<![\w.]/)(?:[\w.\-@~%+]|:(?=\d))+(?:/[\w.\-@~%+]*)*(?:\?[^\s\"']*)?"
    rf"|(?<=\d)(?:[{_ID}]|:(?=\d))*"
    rf"|(?<=-)(?=\d)(?:[{_ID}]|:(?=\d))+"
    r"|(?<=\s\()(?=\)(?!\S))"
    r")"
)
_R_DOTTED = re.compile(r"(?<![\w.\-])[A-Za-z_][\w\-]*(?:\.[\w\-]+){2,}")
_R_TWO_DOTS = re.compile(r"\.[A-Za-z_][\w\-]*\.")
_R_HEX_WORD = re.compile(
    r"[a-f](?<![\w.\-][a-f])(?=[0-9a-f]{7})[0-9a-f]*\d[0-9a-f]*(?:-[0-9a-f]+)*(?![\w.])"
)
_R_MASKED_PAIR = re.compile(r"<\*>\S*\s+\S*<\*>")
_R_REPEATED_MASKED = re.compile(r"(?<!\S)(\S*<\*>\S*)(?:\s+\1(?!\S))+")
_R_MASK_RUN = re.compile(r"(?<!\S)[^\w\s]*<\*>[^\w\s]*(?:\s+[^\w\s]*<\*>[^\w\s]*)+(?!\S)")


def reference_mask(message: str) -> str:
    if message[:1] == "{" and message[-1:] == "}":
        flat = _reference_json(message)
        if flat is not None:
            return flat
    if _R_TWO_DOTS.search(message):
        message = _R_DOTTED.sub("<*>", message)
    masked = _R_VARIABLE.sub("<*>", _R_HEX_WORD.sub("<*>", message))
    if _R_MASKED_PAIR.search(masked):
        masked = _R_MASK_RUN.sub("<*>", _R_REPEATED_MASKED.sub(r"\1", masked))
    return " ".join(masked.split())


def _reference_json(message: str) -> str | None:
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    parts: list[str] = []
    _reference_flatten(document, "", parts)
    return " ".join(" ".join(parts).split())


def _reference_flatten(value: object, key: str, parts: list[str]) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _reference_flatten(item, f"{key}.{name}" if key else str(name), parts)
        return
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, (int, float)):
        text = "<*>"
    elif isinstance(value, str):
        text = reference_mask(value) if value else ""
    else:
        text = "<*>"
    parts.append(f"{key}={text}")


def reference_scan(line: str) -> tuple[str, int]:
    """The header scan over all of a line's units, with no early stop."""
    units = _units(line)
    classes = [classify(u) for u, _, _ in units]
    taken, _ = _take(units, classes)
    if taken >= len(units):
        taken = len(units) - 1
    if taken <= 0:
        return "", 0
    return "".join(classes[:taken]), units[taken - 1][1]


# -- inputs -----------------------------------------------------------------------------

def _shop(lines: int) -> list[str]:
    try:
        from monologue.agent.generate import generate
    except ImportError:  # pragma: no cover - the generator is part of the agent
        pytest.skip("no shop log generator")
    return list(generate("shop", lines))


LOGHUB = default_data_dir() / "loghub_2k"
SYSTEMS = loghub_systems(LOGHUB) if LOGHUB.is_dir() else []

_PIECES = [
    "5", "12", "ms", " ms", "5 ", "()", " ()", "(", ")", "<", ">", "~", "-", "-1", "/", "/x",
    "?a=1", "a.b.c", "x.1.2", ".a.", "blk_", "blk_1", "abcdef12", "abcdef1", "-ab12",
    "e3871ffd-5cd5", "<*>", " ", "  ", "\t", "KB", "sec", "days", "x", "é", "µs", "0x1f", ":",
    ":1", "1:", "@", "#", "%", "+", '"', "'", "\\", "[", "]", "{", "}", "\n", "\u2028",
    "\u00a0", "^", " ^", "^ ", "node3.ex.org", "_", "10.0.0.1:80", "a", "f", "g", "=", "٣",
]


def _random_string(rng: random.Random, pieces: int = 5) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, pieces)))


def _random_document(rng: random.Random, keys: str, depth: int = 0) -> dict:
    document: dict = {}
    for _ in range(rng.randint(0, 7)):
        r = rng.random()
        if r < 0.6:
            value: object = _random_string(rng)
        elif r < 0.7:
            value = rng.choice([0, -3, 2.5, 10**20, float("nan")])
        elif r < 0.8:
            value = rng.choice([True, False, None])
        elif r < 0.85:
            value = [1, "a"]
        elif r < 0.93 and depth < 2:
            value = _random_document(rng, keys, depth + 1)
        else:
            value = rng.choice(["", "{}", '{"a": "5 ms"}', "{x}", "x y", " x", "x "])
        document[rng.choice(keys)] = value
    return document


def _random_json_lines(seed: int, count: int, keys: str) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        line = json.dumps(_random_document(rng, keys), ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.05:
            line = line[:-1] + _random_string(rng, 2) + "}"  # often not JSON any more
        lines.append(line)
    return lines


# -- the shop log: same templates, same ids ---------------------------------------------

# The shop log of `generate("shop", 20000)` (seed 7) mined at the commit before the fast
# paths: every line's id (sha256 of the ids, one a line) and the final templates.
SHOP_LINES_SHA256 = "6d980ece51decc6423ac192d8587d09dca57534223bcec610196a4d7ecc088cd"
SHOP_IDS_SHA256 = "77af1ccc4106719eb9c50e22445c5e2763c525d8aaa06af3a414221510c2b4af"
SHOP_TEMPLATES = [
    ("T62c82c879262", "time=<*> level=info service=checkout pod=checkout<*> msg=checkout "
     "started <*> <*> order_id=ord<*>"),
    ("T0bd80f071bec", "time=<*> level=info service=payments pod=payments<*> msg=payment "
     "authorized <*> order_id=ord<*> amount_eur=<*> took_ms=<*>"),
    ("T67e2e56f34af", "time=<*> level=info service=checkout pod=checkout<*> msg=order placed "
     "<*> order_id=ord<*> <*>"),
    ("Tf8ee0ef54f03", 'ts=<*> <*> service=gateway pod=gateway<*> <*> <*> path=<*> status=<*> '
     'duration_ms=<*> user_agent="shop-web/<*>"'),
    ("Teadad8ad7481", "stock lookup sku=sku<*> available=<*> took <*>"),
    ("Tbfefcb8ce3df", "time=<*> level=info service=checkout pod=checkout<*> msg=checkout "
     "started req_id=req<*> user=dave order_id=ord<*>"),
    ("T483389b7b03e", "time=<*> level=info service=checkout pod=checkout<*> msg=order placed "
     "req_id=req<*> order_id=ord<*> user=dave"),
    ("T9710e513e6eb", "cache miss key=item:sku<*> ttl=<*>"),
    ("Tf46050b5f216", "checkpoint complete: wrote <*> buffers (<*>); write=<*>"),
    ("T44202b978c6b", "time=<*> level=info service=gateway pod=gateway<*> msg=login "
     "succeeded <*> <*>"),
    ("Tbb95bdde9f84", "time=<*> level=warn service=gateway pod=gateway<*> msg=login failed: "
     "invalid password <*> client_ip=<*> <*>"),
    ("T37b46b810447", "time=<*> level=info service=checkout pod=checkout<*> msg=deploy "
     "finished version=v<*> image=registry.local/shop/checkout:v<*>"),
    ("T6d8ce73df395", "disk usage on <*> at <*> (node worker<*>)"),
    ("T0f8decca6c67", "time=<*> level=info service=payments pod=payments<*> msg=connected to "
     "database postgres:/<*>:S<*> pool_size=<*>"),
    ("T6e6c0eed29b7", 'too many connections for role "payments": <*> of <*> in use, <*> '
     "waiting"),
    ("T0ee3c0206170", "time=<*> <*> service=payments pod=payments<*> msg=database connection "
     "pool <*> pool=payments-db in_use=<*> waiting=<*>"),
    ("T6d853534bf6c", "time=<*> level=error service=payments pod=payments<*> msg=payment "
     "authorization failed: timeout acquiring database connection <*> order_id=ord<*> "
     "waited_ms=<*> pool=payments-db cause=connection pool exhausted"),
    ("Ta7cee3102ce9", "time=<*> level=error service=checkout pod=checkout<*> msg=checkout "
     "failed: payments returned <*> <*> order_id=ord<*> <*> upstream=payments"),
    ("Tec4ac101fc9b", 'connections for role "payments" back to <*> of <*>'),
]


def test_the_shop_log_mines_to_the_templates_recorded_before_the_fast_paths():
    lines = _shop(20000)
    if hashlib.sha256("\n".join(lines).encode()).hexdigest() != SHOP_LINES_SHA256:
        pytest.skip("the shop generator changed; the reference tests below still apply")
    miner = TemplateMiner()
    ids = [miner.add(line, "shop.log").template_id for line in lines]
    assert [(m.template_id, m.template) for m in miner.templates()] == SHOP_TEMPLATES
    assert hashlib.sha256("\n".join(ids).encode()).hexdigest() == SHOP_IDS_SHA256


def test_shop_lines_mask_and_cut_as_the_reference_does():
    header = HeaderModel()
    for line in _shop(6000):
        message = header.message(line)
        assert mask(message) == reference_mask(message), line
        assert _scan(line) == reference_scan(line), line


@pytest.mark.skipif(not SYSTEMS, reason=f"no Loghub 2k data under {LOGHUB}")
def test_loghub_lines_mask_and_cut_as_the_reference_does():
    for _, log, _ in SYSTEMS:
        header = HeaderModel()
        for line in read_log(log)[:500]:
            message = header.message(line)
            assert mask(message) == reference_mask(message), line
            assert mask(line) == reference_mask(line), line
            assert _scan(line) == reference_scan(line), line


# -- JSON lines -------------------------------------------------------------------------

@pytest.mark.parametrize("keys", ["abc", "abcdefghij"])
def test_random_json_lines_mask_as_the_reference_does(keys):
    # Few keys: shapes repeat and plans see their constants change; many: new shapes.
    for line in _random_json_lines(11, 4000, keys):
        assert mask(line) == reference_mask(line), line


def test_a_shape_keeps_constant_strings_in_its_plan_and_masks_the_others(monkeypatch):
    monkeypatch.setattr(masking, "_plans", {})
    lines = [
        json.dumps({"zq_time": f"2024-01-02T10:00:0{i}Z", "zq_level": "info",
                    "zq_msg": "took 5 ms", "zq_user": user, "zq_n": i, "zq_ok": i % 2 == 0,
                    "zq_none": None, "zq_tags": ["a"]})
        for i, user in enumerate(["alice", "alice", "bob", "alice"])
    ]
    masked = [mask(line) for line in lines]
    assert masked[0] == ("zq_time=<*> zq_level=info zq_msg=took <*> zq_user=alice zq_n=<*> "
                         "zq_ok=true zq_none=null zq_tags=<*>")
    assert masked[1] == masked[0].replace("zq_ok=true", "zq_ok=false")
    assert masked[2] == masked[0].replace("zq_user=alice", "zq_user=bob")
    assert masked[3] == masked[1]
    assert masked == [reference_mask(line) for line in lines]
    (plan,) = masking._plans.values()
    # The time varied from the second line, the user from the third; level and message
    # are still constants of the shape.
    assert plan.constants == ("info", "took 5 ms")


def test_json_values_that_need_masking_alone_still_mask_like_the_reference():
    lines = [
        '{"k": "a ^ b", "v": "5"}',  # the join separator inside a value
        '{"k": "{\\"x\\": 5}", "v": "5"}',  # a JSON object in a string: masked as JSON
        '{"k": " leading", "v": "trailing ", "w": "in  side", "x": "tab\\there"}',
        '{"k": "", "v": "()", "w": "x ()", "x": "5", "y": "ms"}',
        '{"k": "a.1.2", "v": "node3.example.org"}',  # the dotted-name gate is per value
        '{"k": "blk_1 blk_2 blk_3", "v": "<*> (<*>)", "w": "x"}',
        '{"k": "/api/x?q=1", "v": "ms", "w": "-5", "x": "<1", "y": "sec"}',
        '{"a b": "x", "": "y"}',  # keys with whitespace, empty keys: the general path
        '{"a": {"b": "5 ms", "c": {"d": true}}, "e": "f"}',  # nested: the general path
        '{"k": "x", "k": "y"}',  # a repeated key: json.loads keeps the last value
        '{"k": 1e400, "v": NaN, "w": -Infinity}',
    ]
    for line in lines:
        assert mask(line) == reference_mask(line), line
    assert mask('{"k": "{\\"x\\": 5}"}') == "k=x=<*>"


def test_joint_masking_is_masking_each_value():
    values = ["5", "ms", "()", "x ()", "abcdef12", "/p", "?q", "<2", "KB", "-3", "a.b.c",
              "x.1.2", "blk_1 blk_2", "<*> <*>", "é5", "10.0.0.1:80", "v1.2.3"]
    assert masking._mask_joined(values) == [reference_mask(v) for v in values]
    # Values the joint pass cannot take are given back to be masked alone.
    assert masking._mask_joined(["a^b", "c"]) is None
    assert masking._mask_joined(['{"a": 1}', "c"]) is None


def test_the_plan_table_is_bounded(monkeypatch):
    monkeypatch.setattr(masking, "_plans", {})
    monkeypatch.setattr(masking, "_MAX_PLANS", 3)
    lines = [json.dumps({f"key{i}": "value 5", "n": i}) for i in range(6)]
    assert [mask(line) for line in lines] == [reference_mask(line) for line in lines]
    assert len(masking._plans) == 3


# -- plain and logfmt lines -------------------------------------------------------------

def test_random_messages_mask_as_the_reference_does():
    rng = random.Random(5)
    tokens = ["<*>", "(<*>)", "a<*>", "1", "x", "@1", "(", ")", ",", "blk_1", "blk_2",
              "(1)", "[2]", "a", "5 ms", "()", "0x1f", "ab12cdef9", "-", "-1", "1.2.3.4",
              "a.b.c", "/p/1", "k=v", "ts=2024-01-02T10:00:00Z"]
    spaces = [" ", " ", "  ", "\t", "\u00a0", "\n", ""]
    for _ in range(20000):
        message = "".join(rng.choice(tokens) + rng.choice(spaces)
                          for _ in range(rng.randint(1, 9)))
        assert mask(message) == reference_mask(message), message
        message = _random_string(rng, 12)
        assert mask(message) == reference_mask(message), message


def test_logfmt_lines_have_no_header_without_a_full_scan():
    line = ('ts=2026-11-02T09:00:00.560Z level=info service=gateway pod=gateway-7c9f-abcde '
            'status=200 duration_ms=116')
    assert header_module._NO_HEADER.match(line)
    assert _scan(line) == reference_scan(line) == ("", 0)
    assert HeaderModel().message(line) == line


@pytest.mark.parametrize(
    "line",
    [
        "a=1 b=2 c=3 4 5 rest of it",  # a number fourth: words sandwiched before numbers?
        "a=1 b=2 c=3 -4 5 rest",
        "a=1 b=2 c=3",  # only three units
        "a=1 b=2 ERROR c=3 d",  # a level among them
        "a=1 host-1 sshd[42]: message",
        "x=1 - app - INFO - message",
        "word word word 12 node-3 message",
        "word 12 13 message here and more",
        "sshd[42]: a b c d e f g",
        "[main] INFO x: y",
        "2024-01-02 10:00:00 INFO db: pool ready",
        "- 1117838570 2005.06.03 R02-M1-N0 2005-06-03-15.42.50.675872 R02-M1-N0 RAS KERNEL "
        "INFO cache parity error corrected",
        "Connection 12 closed by peer",
        "a b c d e",  # exactly five and six units: the first units are all there is
        "a b c d e f",
        "a b c d e f g h i j k l m n o p q r s t",
    ],
)
def test_the_header_scan_stops_early_only_when_the_full_scan_would(line):
    assert _scan(line) == reference_scan(line)


def test_random_lines_are_cut_as_by_the_full_scan():
    rng = random.Random(9)
    units = ["a=1", "ts=2024-01-02T10:00:00Z", "word", "INFO", "Jan", "12", "-3", "-",
             "host-1", "sshd[42]:", "[x y]", "x.go:12]", "a.b.c", "Mon", "E", "msg", "(x)",
             "name:", "10:00:00", "2024-01-02"]
    for _ in range(20000):
        line = " ".join(rng.choice(units) for _ in range(rng.randint(1, 20)))
        if rng.random() < 0.2:
            line = line.replace(" ", "   ", 1)
        assert _scan(line) == reference_scan(line), line
