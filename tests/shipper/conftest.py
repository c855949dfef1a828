"""Fixtures of the shipper's integration tests: the binary, built once."""

from __future__ import annotations

import pytest

from shipper import support


@pytest.fixture(scope="session")
def shipper_binary(tmp_path_factory):
    return support.build_shipper(tmp_path_factory.mktemp("shipper-bin"))


@pytest.fixture
def bucket(s3):
    """A fresh bucket per test, so tests never see each other's objects."""
    import uuid

    name = f"shipper-{uuid.uuid4().hex[:12]}"
    support.s3_client(s3).create_bucket(Bucket=name)
    return name
