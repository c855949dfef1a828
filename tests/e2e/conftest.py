"""Fixtures of the end-to-end test: the operator tests' (the CRDs and RBAC in the real
kube-apiserver, a namespace per test, the operator run as `kopf run`), the shipper
binary, and figures a test reports, printed in the terminal summary."""

from __future__ import annotations

import sys

import pytest

from harness.process import ROOT

sys.path.insert(0, str(ROOT / "operator" / "tests"))
from monologue_operator_tests.conftest import cluster, namespace, start_operator  # noqa: E402,F401
from shipper.conftest import shipper_binary  # noqa: E402,F401

_figures: list[str] = []


@pytest.fixture
def report_figure():
    """report_figure("name=value ..."): one line for the terminal summary (and bench/freshness.py)."""
    return _figures.append


def pytest_terminal_summary(terminalreporter):
    if _figures:
        terminalreporter.section("end-to-end figures")
        for line in _figures:
            terminalreporter.write_line(line)
