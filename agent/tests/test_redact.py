"""Redaction: each kind of secret becomes its typed placeholder; a batch equals line by line."""

from __future__ import annotations

import pytest
from monologue.agent.generate import generate
from monologue.agent.redact import BATCH_MIN, Redactor

from .test_indexer import SECRETS, SEEDED

CASES = [
    ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED:aws_access_key] used"),
    ("password=hunter22 ok", "password=[REDACTED:secret] ok"),
    ('{"api_key": "abc123def"}', '{"api_key": "[REDACTED:secret]"}'),
    ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer [REDACTED:bearer_token]"),
    ("db postgres://app:pa55word@db:5432/x", "db postgres://app:[REDACTED:url_password]@db:5432/x"),
    ("mail to bob@example.org", "mail to [REDACTED:email]"),
    ("card 4111 1111 1111 1111 charged", "card [REDACTED:card_number] charged"),
    ("ssn 123-45-6789", "ssn [REDACTED:us_ssn]"),
    ("request 4111111111111112 done", "request 4111111111111112 done"),  # fails Luhn: an id, kept
    ("worker 3 finished job 42 in 17 ms", "worker 3 finished job 42 in 17 ms"),
]


@pytest.mark.parametrize("line,expected", CASES)
def test_each_kind_of_secret_becomes_its_placeholder(line, expected):
    assert Redactor().redact(line) == expected


def test_a_batch_is_redacted_exactly_as_line_by_line():
    redactor = Redactor(("acme-\\d+",))
    lines = ([line for line, _ in CASES] + SEEDED + ["acme-42 deployed", "Ünïcode Kelvin \u212a token=xyz12345"]
             + list(generate("shop", 3000, seed=5)))
    assert len(lines) > BATCH_MIN
    batch = redactor.redact_many(lines)
    assert batch == [redactor.redact(line) for line in lines]
    assert not any(secret in line for secret in SECRETS for line in batch)
    assert "[REDACTED:custom] deployed" in batch


def test_text_arrow_cannot_hold_is_still_redacted():
    lines = ["password=hunter22 \udcff"] * BATCH_MIN  # a lone surrogate: not valid UTF-8
    assert Redactor().redact_many(lines) == ["password=[REDACTED:secret] \udcff"] * BATCH_MIN
