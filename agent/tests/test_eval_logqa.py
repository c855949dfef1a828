"""The LogQA evaluation: its scoring, and recall on real LogQA data when present."""

from __future__ import annotations

import pytest
from monologue.agent.eval_logqa import evaluate, first_match_rank, token_f1
from monologue.agent.eval_templates import default_data_dir


def test_token_f1_and_match_rank():
    assert token_f1("the block was terminating", "terminating") == pytest.approx(0.4)
    assert token_f1("", "x") == 0.0
    lines = ["081109 203615 INFO PacketResponder 1 for block blk_1  terminating", "other"]
    assert first_match_rank(lines, " PacketResponder 1 for block blk_1 terminating ") == 1
    assert first_match_rank(lines, "missing line") is None


def test_hdfs_val_recall_with_retrieval_only():
    data = default_data_dir()
    log, qa = data / "loghub_2k/HDFS/HDFS_2k.log", data / "logqa/HDFS/val.jsonl"
    if not (log.exists() and qa.exists()):
        pytest.skip(f"LogQA/Loghub data not found under {data}; set MONOLOGUE_DATA")
    result = evaluate(log, qa, retrieval_only=True)
    assert result["questions"] == 24
    assert result["recall@5"] >= 0.9
    assert result["recall@1"] >= 0.8
