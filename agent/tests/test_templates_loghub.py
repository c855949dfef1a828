"""Template mining on the 16 Loghub 2k systems (Loghub: Zhu et al., ISSRE 2023).

Needs the data set beside the checkout (../shared/data) or at $MONOLOGUE_DATA; skipped
otherwise.
"""

from __future__ import annotations

import pytest

from monologue.agent.eval_templates import (
    default_data_dir,
    evaluate,
    loghub_systems,
    read_log,
)
from monologue.agent.templates import TemplateMiner

LOGHUB = default_data_dir() / "loghub_2k"
SYSTEMS = loghub_systems(LOGHUB) if LOGHUB.is_dir() else []

pytestmark = pytest.mark.skipif(
    len(SYSTEMS) != 16,
    reason=f"Loghub 2k data (16 systems) not found under {LOGHUB}; set MONOLOGUE_DATA",
)


def test_mean_grouping_accuracy_over_the_16_systems_is_at_least_0_90():
    results = {system: evaluate(log, truth).ga for system, log, truth in SYSTEMS}
    mean = sum(results.values()) / len(results)
    table = ", ".join(f"{system} {ga:.3f}" for system, ga in results.items())
    assert mean >= 0.90, f"mean GA {mean:.4f}: {table}"


def test_replaying_a_system_after_a_restart_gives_the_same_ids(tmp_path):
    _, log, _ = SYSTEMS[0]
    lines = read_log(log)
    state = tmp_path / "templates.json"
    miner = TemplateMiner(state)
    first = [m.template_id for m in miner.add_many(lines[:1000])]
    miner.save()
    restarted = TemplateMiner(state)
    assert [m.template_id for m in restarted.add_many(lines[:1000])] == first
    # New lines after the restart keep mining into the same templates.
    rest = restarted.add_many(lines[1000:])
    assert {m.template_id for m in rest} & set(first)
