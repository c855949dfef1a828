"""Session fixtures: the real servers of the harness, one of each per test run.

A server whose binary is missing or that does not come up fails the tests
that need it, naming its build or run log; nothing is skipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness import servers
from harness.process import ROOT, tail

LOG_DIR = ROOT / "build" / "test-logs" / time.strftime("%Y%m%d-%H%M%S")
_started: dict[str, Path] = {}  # server name -> its log, for failure reports


def _session_server(request, tmp_path_factory, name, start):
    handle = start(tmp_path_factory.mktemp(name), LOG_DIR)
    for server in vars(handle).values():
        if isinstance(server, servers.Server):
            _started[server.name] = server.log_path
    request.addfinalizer(handle.stop)
    return handle


@pytest.fixture(scope="session")
def kubernetes(request, tmp_path_factory) -> servers.Kubernetes:
    return _session_server(request, tmp_path_factory, "kubernetes", servers.start_kubernetes)


@pytest.fixture(scope="session")
def loki(request, tmp_path_factory) -> servers.Loki:
    return _session_server(request, tmp_path_factory, "loki", servers.start_loki)


@pytest.fixture(scope="session")
def weaviate(request, tmp_path_factory) -> servers.Weaviate:
    return _session_server(request, tmp_path_factory, "weaviate", servers.start_weaviate)


@pytest.fixture(scope="session")
def s3(request, tmp_path_factory) -> servers.S3:
    return _session_server(request, tmp_path_factory, "s3", servers.start_s3)


@pytest.fixture
def s3_env(s3, monkeypatch) -> servers.S3:
    """The S3 endpoint, with the standard AWS variables set for this test."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture(scope="session")
def generation_model() -> Path:
    from monologue.model_server.catalog import path_of

    return path_of("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def embedding_model() -> Path:
    from monologue.model_server.catalog import path_of

    return path_of("all-minilm-l6-v2")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, log in _started.items():
            report.sections.append((f"{name} log (tail of {log})", tail(log, 30)))


def pytest_sessionstart(session):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MONOLOGUE_TEST_LOGS", str(LOG_DIR))
