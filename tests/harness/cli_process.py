"""Run a long-lived `monologue` command (indexer, agent serve) as its pod would:
read the ports it logs, scrape its HTTP endpoints, stop it with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

MONOLOGUE = Path(sys.executable).parent / "monologue"


class Running:
    """A started command; `fields` holds the fields of its JSON log lines as they come."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.process = subprocess.Popen([str(MONOLOGUE), "--log-level", "info", *args], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.fields: dict = {}
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self):
        for line in self.process.stderr:
            self.lines.append(line)
            try:
                self.fields.update(json.loads(line))
            except ValueError:
                pass

    def wait_for_field(self, name: str, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while name not in self.fields:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"{MONOLOGUE.name} did not log {name!r}:\n" + "".join(self.lines))
            time.sleep(0.05)
        return self.fields[name]

    def stop(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"it did not stop within {timeout:.0f} s of SIGTERM:\n" + "".join(self.lines))


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
