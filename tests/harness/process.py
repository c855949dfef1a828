"""Start a server binary as a child process, wait until it answers, stop it.

Every server writes to its own log file, kept after the run; a server that
never becomes ready fails loudly with the tail of that log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MONOLOGUE_CACHE") or Path.home() / ".cache" / "monologue")


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not come up."""


def versions() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / "tests" / "servers" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def binary(name: str, version_key: str) -> Path:
    version = versions()[version_key]
    path = CACHE / "bin" / f"{name}-{version}"
    if not path.exists():
        build_log = CACHE / "logs" / f"build-{name}-{version}.log"
        hint = f"its build log is {build_log}" if build_log.exists() else "run `make setup` to build it"
        raise ServerUnavailable(f"{name} {version} is not built ({path} missing); {hint}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def http_ok(url: str, headers: dict[str, str] | None = None, context=None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class Server:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen | None = None
    inherit_env: bool = True  # False: `env` is the whole environment, as in a container

    def start(self, ready: Callable[[], bool], timeout: float = 60.0) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.inherit_env else self.env,
                cwd=self.cwd,
                start_new_session=True,  # a signal to the test run does not reach it first
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"{self.name} exited with {self.process.returncode} while starting; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            if ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerUnavailable(
            f"{self.name} not ready after {timeout:.0f} s; log {self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as an outage would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
