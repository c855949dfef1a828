"""Helpers for the shipper's integration tests and benchmark: build the Go
binary, push lines with known ids into Loki, run the shipper, read back what
it wrote to S3, and restart Loki or S3 in place to simulate an outage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.process import ROOT, Server, http_ok

MODULE = ROOT / "loki-shipper-go"
SCHEMA = ROOT / "schema" / "logs.json"


def go_env() -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def build_shipper(out_dir: Path) -> Path:
    """go build the shipper once; a build failure fails the caller loudly."""
    binary = out_dir / "loki-shipper"
    result = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-X main.version=test", "-o", str(binary), "./cmd/loki-shipper"],
        cwd=MODULE, env=go_env(), capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build failed:\n{result.stdout}\n{result.stderr}")
    return binary


def wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll condition() until it returns a truthy value; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- Loki


def push(loki_url: str, streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]]) -> None:
    """Push lines: {sorted label pairs: [(ts_ns, line), ...]}."""
    body = {"streams": [
        {"stream": dict(labels), "values": [[str(ts), line] for ts, line in values]}
        for labels, values in streams.items()
    ]}
    request = urllib.request.Request(
        f"{loki_url}/loki/api/v1/push", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 204, response.status


def push_lines(loki_url: str, labels: dict[str, str], lines: list[tuple[int, str]], batch: int = 5000) -> None:
    key = tuple(sorted(labels.items()))
    for i in range(0, len(lines), batch):
        push(loki_url, {key: lines[i:i + batch]})


def line_id(labels: dict[str, str], ts_ns: int, line: str) -> str:
    """schema/README.md, independently of the Go code."""
    prefix = b"".join(k.encode() + b"\0" + labels[k].encode() + b"\0" for k in sorted(labels))
    return hashlib.sha256(prefix + str(ts_ns).encode() + b"\0" + line.encode()).hexdigest()[:32]


def loki_lines(loki_url: str, query: str, start_ns: int, end_ns: int, limit: int = 5000) -> list[tuple[str, int, str]]:
    """Every (labels as JSON, ts, line) Loki holds for the query in [start, end),
    read with a plain client: the reference the shipper is compared to."""
    out, cursor, seen = [], start_ns, set()
    while True:
        params = urllib.parse.urlencode({"query": query, "start": cursor, "end": end_ns, "limit": limit, "direction": "forward"})
        with urllib.request.urlopen(f"{loki_url}/loki/api/v1/query_range?{params}", timeout=60) as r:
            result = json.load(r)["data"]["result"]
        entries = sorted((json.dumps(s["stream"], sort_keys=True), int(ts), line) for s in result for ts, line in s["values"])
        entries.sort(key=lambda e: e[1])
        out += [e for e in entries if e not in seen]
        if len(entries) < limit:
            return out
        cursor = entries[-1][1]
        seen = {e for e in entries if e[1] == cursor} | (seen if cursor == start_ns else set())




# ---------------------------------------------------------------- the shipper


@dataclass
class Shipper:
    """A shipper subprocess with its JSON log kept in a file."""

    process: subprocess.Popen
    log_path: Path

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_records(self) -> list[dict]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"msg": "<not JSON>", "raw": line})
        return records


def start_shipper(binary: Path, args: list[str], env: dict[str, str], log_path: Path) -> Shipper:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    process = subprocess.Popen([str(binary), *args], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env={**os.environ, **env})
    log.close()
    return Shipper(process, log_path)


def run_shipper(binary: Path, args: list[str], env: dict[str, str], log_path: Path, timeout: float = 300) -> Shipper:
    shipper = start_shipper(binary, args, env, log_path)
    try:
        shipper.process.wait(timeout)
    except subprocess.TimeoutExpired:
        shipper.kill()
        raise AssertionError(f"shipper did not finish in {timeout} s; log {log_path}")
    return shipper


def shipper_args(loki_url: str, query: str, bucket: str, prefix: str, *extra: str) -> list[str]:
    return [f"--loki.url={loki_url}", f"--loki.query={query}", f"--s3.bucket={bucket}",
            f"--s3.prefix={prefix}", "--s3.path-style", "--http.listen-address=",
            "--retry.initial-backoff=100ms", "--retry.max-backoff=2s", *extra]


# ---------------------------------------------------------------- S3


def s3_client(s3):
    import boto3

    return boto3.client("s3", endpoint_url=s3.endpoint, region_name=s3.region,
                        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key)


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return sorted(keys)
        token = page["NextContinuationToken"]


def read_rows(client, bucket: str, prefix: str) -> list[dict]:
    """Every row of every window object under prefix, with its object key."""
    import pyarrow.parquet as pq

    rows = []
    for key in list_keys(client, bucket, prefix + "/"):
        if not key.endswith(".parquet"):
            continue
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        # nanoseconds as int: datetime would drop them
        table = table.set_column(0, "timestamp", table.column("timestamp").cast("int64"))
        for row in table.to_pylist(maps_as_pydicts="strict"):
            row["_key"] = key
            rows.append(row)
    return rows


def read_checkpoint(client, bucket: str, prefix: str) -> dict | None:
    try:
        return json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/_checkpoint.json")["Body"].read())
    except client.exceptions.NoSuchKey:
        return None


# ---------------------------------------------------------------- restartable servers


def restart(server: Server, ready, timeout: float = 120) -> Server:
    """Start a stopped server again with the same command line (same port and
    data directory), as an operator would after an outage."""
    server.stop()
    fresh = Server(server.name, server.argv, server.log_path, env=server.env, cwd=server.cwd)
    fresh.start(ready, timeout=timeout)
    server.process = fresh.process
    return server


def loki_ready(url: str):
    return lambda: http_ok(f"{url}/ready")


def s3_ready(endpoint: str):
    return lambda: http_ok(f"{endpoint}/moto-api/")
