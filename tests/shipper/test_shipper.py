"""The shipper against the harness's real Loki and S3: every line exactly
once, through page boundaries, kill -9, SIGTERM and outages."""

from __future__ import annotations

import collections
import io
import json
import random
import threading
import time
import urllib.request
import uuid

import pyarrow.parquet as pq
import pytest

from harness import servers
from harness.process import free_port
from shipper import support
from harness.proxy import TcpProxy

MINUTE = 60 * 10**9


def shipped(rows):
    """Shipped rows as comparable (labels JSON, ts, line) tuples."""
    return [(json.dumps(r["labels"], sort_keys=True), r["timestamp"], r["line"]) for r in rows]


def assert_exactly_once(rows, reference):
    got = collections.Counter(shipped(rows))
    dups = {k: n for k, n in got.items() if n > 1}
    assert not dups, f"{len(dups)} lines shipped more than once, e.g. {str(next(iter(dups)))[:300]}"
    missing = collections.Counter(reference) - got
    extra = got - collections.Counter(reference)
    assert not missing, f"{len(missing)} lines never shipped, e.g. {str(next(iter(missing)))[:300]}"
    assert not extra, f"{len(extra)} lines shipped that Loki does not hold, e.g. {str(next(iter(extra)))[:300]}"
    for r in rows:
        if not r["truncated"]:
            assert r["line_id"] == support.line_id(r["labels"], r["timestamp"], r["line"])


class LivePusher:
    """Pushes lines stamped "now" to Loki in the background, keeping what Loki accepted."""

    def __init__(self, loki_url: str, app: str, per_tick: int = 20, tick: float = 0.05):
        self.url, self.app, self.per_tick, self.tick = loki_url, app, per_tick, tick
        self.accepted: list[tuple[str, int, str]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        while not self._stop.is_set():
            ts = time.time_ns()
            pod = f"live-{self._n % 3}"
            lines = [(ts + i, f"level=info seq={self._n + i} msg=\"live line\"") for i in range(self.per_tick)]
            try:
                support.push_lines(self.url, {"app": self.app, "pod": pod}, lines)
                self.accepted += [(pod, t, l) for t, l in lines]
            except OSError:
                self.failures += 1
            self._n += self.per_tick
            time.sleep(self.tick)


def pushed_subset(rows, accepted):
    got = {(r["labels"]["pod"], r["timestamp"], r["line"]) for r in rows}
    missing = [a for a in accepted if a not in got]
    assert not missing, f"{len(missing)} accepted lines not shipped, e.g. {missing[0]}"


def stop_once_caught_up(shipper, client, bucket: str, prefix: str, accepted, timeout: float) -> tuple[list[dict], int]:
    """Wait until the checkpoint passes the last line pushed, SIGTERM the shipper (it must exit
    0); the rows shipped and the checkpoint's complete_until in ns."""
    last = max(ts for _, ts, _ in accepted)
    try:
        support.wait_for(
            lambda: (cp := support.read_checkpoint(client, bucket, prefix))
            and cp["complete_until"] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last / 1e9 + 1)),
            timeout, "the shipper to catch up", interval=0.5)
        assert shipper.stop(timeout=30) == 0, shipper.log_path.read_text()[-3000:]
    finally:
        shipper.kill()
    checkpoint = support.read_checkpoint(client, bucket, prefix)
    until = int(time.mktime(time.strptime(checkpoint["complete_until"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone) * 10**9
    return support.read_rows(client, bucket, prefix), until


def test_every_line_is_shipped_exactly_once_across_page_and_window_boundaries(loki, s3, bucket, shipper_binary, tmp_path):
    app = f"once-{uuid.uuid4().hex[:8]}"
    base = (time.time_ns() // MINUTE - 8) * MINUTE
    lines = {p: [] for p in range(3)}
    for i in range(30_000):
        # 7 lines share each timestamp, in one stream and across streams, so
        # that page limits cut between lines of one timestamp.
        ts = base + (i // 7) * 60_000_000
        lines[i % 3].append((ts, f'{{"level":"warn","seq":{i},"msg":"caf\\u00e9 {i}"}}'))
    lines[0].append((base + 1, "ERROR " + "x" * 5000))  # longer than --max-line-bytes
    for p, values in lines.items():
        support.push_lines(loki.url, {"app": app, "pod": f"pod-{p}"}, values)
    query = f'{{app="{app}"}}'
    end = base + 6 * MINUTE

    result = support.run_shipper(shipper_binary, support.shipper_args(
        loki.url, query, bucket, "spaces/once", "--once", "--loki.limit=1000", "--max-line-bytes=1024",
        f"--start={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(base / 1e9))}",
        f"--end={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end / 1e9))}",
    ), s3.env, tmp_path / "shipper.log")
    assert result.process.returncode == 0, (tmp_path / "shipper.log").read_text()[-3000:]

    client = support.s3_client(s3)
    rows = support.read_rows(client, bucket, "spaces/once")
    reference = [(labels, ts, line[:1024]) for labels, ts, line in support.loki_lines(loki.url, query, base, end)]
    assert len(reference) == 30_001
    assert_exactly_once(rows, reference)

    keys = sorted({r["_key"] for r in rows})
    assert len(keys) == 5  # 30,000 lines over 4 m 17 s: five one-minute windows
    for r in rows:
        start = r["timestamp"] // MINUTE * MINUTE
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start / 1e9))
        assert f"/{name}_" in r["_key"]
    long = [r for r in rows if r["line"].startswith("ERROR")]
    assert len(long) == 1 and long[0]["truncated"] and len(long[0]["line"]) == 1024 and long[0]["level"] == "error"
    sample = next(r for r in rows if r["line"].startswith("{"))
    assert sample["level"] == "warn" and sample["fields"]["msg"].startswith("café")
    assert support.read_checkpoint(client, bucket, "spaces/once") is None  # --once leaves it alone


def test_a_start_beyond_lokis_longest_query_is_read_in_parts(loki, s3, bucket, shipper_binary, tmp_path):
    # Loki refuses a query_range longer than max_query_length (30d1h by default): a Space
    # whose start is a year ago must still ship.
    app = f"old-{uuid.uuid4().hex[:8]}"
    stamp = (time.time_ns() // MINUTE - 3) * MINUTE
    support.push_lines(loki.url, {"app": app}, [(stamp, "level=info msg=\"recent line\"")])
    result = support.run_shipper(shipper_binary, support.shipper_args(
        loki.url, f'{{app="{app}"}}', bucket, "spaces/old", "--once", "--start=9000h",
        f"--end={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(stamp / 1e9 + 60))}"), s3.env, tmp_path / "shipper.log")
    assert result.process.returncode == 0, (tmp_path / "shipper.log").read_text()[-3000:]
    rows = support.read_rows(support.s3_client(s3), bucket, "spaces/old")
    assert [r["timestamp"] for r in rows] == [stamp]


def test_sigterm_finishes_writes_checkpoints_and_exits_zero(loki, s3, bucket, shipper_binary, tmp_path):
    app = f"term-{uuid.uuid4().hex[:8]}"
    query = f'{{app="{app}"}}'
    client = support.s3_client(s3)
    start = time.time_ns()
    shipper = support.start_shipper(shipper_binary, support.shipper_args(
        loki.url, query, bucket, "spaces/term", "--window=1s", "--lag=2s", "--start=5s"), s3.env, tmp_path / "shipper.log")
    try:
        with LivePusher(loki.url, app) as pusher:
            support.wait_for(lambda: (support.read_checkpoint(client, bucket, "spaces/term") or {}).get("last_object"),
                             30, "a first window to be written")
            time.sleep(1.5)  # keep pushing while the shipper follows
        assert shipper.stop(timeout=30) == 0, shipper.log_path.read_text()[-3000:]
    finally:
        shipper.kill()
    checkpoint = support.read_checkpoint(client, bucket, "spaces/term")
    until = int(time.mktime(time.strptime(checkpoint["complete_until"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone) * 10**9
    rows = support.read_rows(client, bucket, "spaces/term")
    assert rows and max(r["timestamp"] for r in rows) < until
    assert_exactly_once(rows, support.loki_lines(loki.url, query, start - 10 * 10**9, until))
    assert any(r.get("msg") == "stopped" for r in shipper.log_records())


def test_kill_9_at_random_moments_still_ships_exactly_once(loki, s3, bucket, shipper_binary, tmp_path):
    app = f"kill-{uuid.uuid4().hex[:8]}"
    query = f'{{app="{app}"}}'
    client = support.s3_client(s3)
    # A backlog of 10 minutes in 1 s windows keeps the shipper busy catching
    # up (reading, encoding, uploading, checkpointing) while it is killed.
    base = (time.time_ns() // MINUTE - 10) * MINUTE
    backlog = [(base + i * 10_000_000, f"INFO backlog line {i}") for i in range(60_000)]
    for p in range(3):
        support.push_lines(loki.url, {"app": app, "pod": f"backlog-{p}"}, backlog[p::3])
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base / 1e9))
    args = support.shipper_args(loki.url, query, bucket, "spaces/kill", "--window=1s", "--lag=2s", f"--start={start}")
    rng = random.Random(20240102)
    kills = 0
    with LivePusher(loki.url, app) as pusher:
        for _ in range(12):
            shipper = support.start_shipper(shipper_binary, args, s3.env, tmp_path / "shipper.log")
            time.sleep(rng.uniform(0.3, 1.5))
            assert shipper.process.poll() is None, shipper.log_path.read_text()[-3000:]
            shipper.kill()  # SIGKILL
            kills += 1
        shipper = support.start_shipper(shipper_binary, args, s3.env, tmp_path / "shipper.log")
        time.sleep(1)
    rows, until = stop_once_caught_up(shipper, client, bucket, "spaces/kill", pusher.accepted, 120)
    assert kills >= 10
    assert_exactly_once(rows, support.loki_lines(loki.url, query, base, until))
    pushed_subset(rows, pusher.accepted)
    assert len(rows) >= 60_000


def object_ranges(keys: list[str]) -> list[tuple[str, str]]:
    """[start, end) of each object, from its name <start>_<end>.parquet (UTC, sortable)."""
    return sorted(tuple(k.rsplit("/", 1)[1].removesuffix(".parquet").split("_")) for k in keys if k.endswith(".parquet"))


def test_following_with_default_settings_ships_in_seconds_and_survives_kill_9(loki, s3, bucket, shipper_binary, tmp_path):
    """Default window, lag and flush interval: while following, each flush writes the part
    of the current window since the last one as its own object. Killed at random moments
    (possibly between an object and its checkpoint), a restart adopts what was written
    instead of writing an overlapping object."""
    app = f"follow-{uuid.uuid4().hex[:8]}"
    query = f'{{app="{app}"}}'
    client = support.s3_client(s3)
    start = time.time_ns()
    args = support.shipper_args(loki.url, query, bucket, "spaces/follow", "--start=10s")
    rng = random.Random(20240103)
    with LivePusher(loki.url, app) as pusher:
        for _ in range(10):
            shipper = support.start_shipper(shipper_binary, args, s3.env, tmp_path / "shipper.log")
            time.sleep(rng.uniform(0.5, 4.0))
            assert shipper.process.poll() is None, shipper.log_path.read_text()[-3000:]
            shipper.kill()
        shipper = support.start_shipper(shipper_binary, args, s3.env, tmp_path / "shipper.log")
        marker = f"level=info msg=\"marker {uuid.uuid4().hex}\""
        pushed = time.monotonic()
        support.push_lines(loki.url, {"app": app, "pod": "marker"}, [(time.time_ns(), marker)])
        seen: set[str] = set()

        def marker_shipped():
            keys = [k for k in support.list_keys(client, bucket, "spaces/follow/dt=") if k not in seen]
            seen.update(keys)
            return any(marker in object_lines(client, bucket, k) for k in keys)

        support.wait_for(marker_shipped, 60, "the marker line on S3", interval=0.2)
        print(f"seconds from push to S3 while following: {time.monotonic() - pushed:.1f}")
    # Once the lines stop, the checkpoint passes the last one only when its window closes
    # (empty time is checkpointed once per 1-minute window, plus the lag): wait past that.
    rows, until = stop_once_caught_up(shipper, client, bucket, "spaces/follow", pusher.accepted, 120)
    assert_exactly_once(rows, support.loki_lines(loki.url, query, start - 10 * 10**9, until))
    pushed_subset(rows, pusher.accepted)
    ranges = object_ranges(support.list_keys(client, bucket, "spaces/follow/"))
    overlapping = [(a, b) for a, b in zip(ranges, ranges[1:]) if b[0] < a[1]]
    assert not overlapping, overlapping
    # Flushes, not whole minutes: about one object per 2 s of following.
    assert len(ranges) > 15, ranges


def object_lines(client, bucket: str, key: str) -> list[str]:
    """The line column of one object (its pages are compressed: the bytes of a line
    need not appear in the file)."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body), columns=["line"]).column("line").to_pylist()


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_loki_then_s3_down_for_a_while_loses_nothing_and_recovers_alone(s3, bucket, shipper_binary, tmp_path):
    # A Loki of its own, since it is stopped; S3 through a proxy that is
    # switched off (moto would lose its bucket if stopped).
    loki = servers.start_loki(tmp_path / "loki", tmp_path / "logs")
    proxy = TcpProxy("127.0.0.1", int(s3.endpoint.rsplit(":", 1)[1]))
    client = support.s3_client(s3)
    app = "outage"
    query = f'{{app="{app}"}}'
    port = free_port()
    env = {**s3.env, "AWS_ENDPOINT_URL": proxy.url}
    args = support.shipper_args(loki.url, query, bucket, "spaces/outage", "--window=1s", "--lag=2s", "--start=5s",
                                "--s3.timeout=5s", "--loki.timeout=5s")
    args = [a for a in args if not a.startswith("--http.listen-address")] + [f"--http.listen-address=127.0.0.1:{port}"]
    start = time.time_ns()
    shipper = support.start_shipper(shipper_binary, args, env, tmp_path / "shipper.log")
    try:
        with LivePusher(loki.url, app) as pusher:
            support.wait_for(lambda: readyz(port) == 200, 30, "the shipper to be ready")
            time.sleep(2)

            loki.server.stop()
            support.wait_for(lambda: readyz(port) == 503, 30, "readiness to drop while Loki is down")
            time.sleep(5)
            assert shipper.process.poll() is None, "the shipper exited while Loki was down"
            support.restart(loki.server, support.loki_ready(loki.url))
            support.wait_for(lambda: readyz(port) == 200, 60, "readiness back after Loki returned")
            time.sleep(2)

            proxy.down()
            support.wait_for(lambda: readyz(port) == 503, 30, "readiness to drop while S3 is down")
            time.sleep(5)
            assert shipper.process.poll() is None, "the shipper exited while S3 was down"
            proxy.up()
            support.wait_for(lambda: readyz(port) == 200, 60, "readiness back after S3 returned")
            time.sleep(2)
        rows, until = stop_once_caught_up(shipper, client, bucket, "spaces/outage", pusher.accepted, 60)
        assert_exactly_once(rows, support.loki_lines(loki.url, query, start - 10 * 10**9, until))
        pushed_subset(rows, pusher.accepted)
        retried = {r.get("target") for r in shipper.log_records() if r.get("msg") == "retrying"}
        assert retried == {"loki", "s3"}
    finally:
        shipper.kill()
        proxy.close()
        loki.stop()
