"""make bench-shipper: the Go loki-shipper's throughput and memory.

Prints one JSON object per figure: {"bench", "metric", "value", "unit",
"baseline", "ratio", "target"}. It starts its own Loki and S3 from the test
harness (tests/harness), builds the shipper and its benchmark helper
(loki-shipper-go/bench/shipperbench), and measures:

(a) the write path alone: 1,000,000 synthetic ~120-byte lines in memory ->
    Parquet (zstd, 1-minute windows) -> S3; lines/s and MiB/s.
(b) end to end against the real Loki: the shipper (--once) over a range of
    pushed lines, as a ratio to a bare query_range client that pages
    through the same range and throws the lines away, in the same run;
    plus the shipper's peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import servers  # noqa: E402
from shipper import support  # noqa: E402

BENCH = "shipper"
MIB = 1024 * 1024


def emit(metric, value, unit, baseline=None, ratio=None, target=None):
    print(json.dumps({"bench": BENCH, "metric": metric, "value": round(value, 3), "unit": unit,
                      "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
                      "target": target}), flush=True)


def run_with_rss(argv, env) -> tuple[str, float, float]:
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        return out.read().decode(), wall, usage.ru_maxrss / 1024  # KiB -> MiB


def build(tmp: Path) -> tuple[Path, Path]:
    shipper = support.build_shipper(tmp)
    helper = tmp / "shipperbench"
    subprocess.run(["go", "build", "-o", str(helper), "./bench/shipperbench"], cwd=support.MODULE,
                   env=support.go_env(), check=True)
    return shipper, helper


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-shipper-"))
    logs = ROOT / "build" / "bench-logs"
    shipper_bin, helper = build(tmp)
    s3 = servers.start_s3(tmp / "s3", logs)
    loki = servers.start_loki(tmp / "loki", logs)
    try:
        client = support.s3_client(s3)
        client.create_bucket(Bucket="bench")

        # (a) write path alone
        out, _, rss = run_with_rss([str(helper), "-mode=write", "-bucket=bench", "-lines=1000000"], s3.env)
        result = json.loads(out)
        emit("write_path_lines_per_second", result["lines"] / result["seconds"], "lines/s", target=">= 200000")
        emit("write_path_mib_per_second", result["bytes"] / MIB / result["seconds"], "MiB/s")
        emit("write_path_peak_rss", rss, "MiB")

        # (b) end to end: push lines into Loki, then ship them / read them bare
        lines_total, minutes = 600_000, 60
        base = (time.time_ns() // 60_000_000_000 - minutes - 2) * 60_000_000_000
        step = minutes * 60_000_000_000 // lines_total
        for pod in range(4):
            values = [(base + i * step, line_text(i)) for i in range(pod, lines_total, 4)]
            support.push_lines(loki.url, {"app": "bench", "pod": f"bench-{pod}"}, values, batch=10_000)
        end = base + minutes * 60_000_000_000
        query = '{app="bench"}'
        iso = lambda ns: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))  # noqa: E731

        bare, shipped = [], []
        for attempt in range(2):  # interleaved, best of two, so both see the same machine
            out, wall, _ = run_with_rss([str(helper), "-mode=read", f"-loki.url={loki.url}", f"-loki.query={query}",
                                         f"-from={base}", f"-to={end}"], {})
            bare.append((json.loads(out), wall))
            args = support.shipper_args(loki.url, query, "bench", f"e2e-{attempt}", "--once",
                                        f"--start={iso(base)}", f"--end={iso(end)}", "--log.level=warn")
            _, wall, rss = run_with_rss([str(shipper_bin), *args], s3.env)
            shipped.append((wall, rss))
        bare_result, bare_wall = min(bare, key=lambda b: b[1])
        assert bare_result["lines"] == lines_total, bare_result
        ship_wall = min(w for w, _ in shipped)
        rows = sum(1 for _ in support.read_rows(client, "bench", "e2e-0"))
        assert rows == lines_total, f"shipper wrote {rows} of {lines_total} lines"
        bare_lps = lines_total / bare_wall
        ship_lps = lines_total / ship_wall
        mib = bare_result["bytes"] / MIB
        emit("end_to_end_lines_per_second", ship_lps, "lines/s", baseline=round(bare_lps, 1), ratio=ship_lps / bare_lps,
             target="ratio >= 0.8")
        emit("end_to_end_mib_per_second", mib / ship_wall, "MiB/s", baseline=round(mib / bare_wall, 3),
             ratio=bare_wall / ship_wall)
        emit("end_to_end_peak_rss", max(r for _, r in shipped), "MiB", target="<= 150")
    finally:
        loki.stop()
        s3.stop()


def line_text(i: int) -> str:
    """About 120 bytes, in the three shapes the shipper parses."""
    if i % 3 == 0:
        return f'{{"level":"info","ts":"2024-01-02T10:00:00.000Z","msg":"request served","path":"/api/v1/items","req":"{i:09d}"}}'
    if i % 3 == 1:
        return f'level=warn ts=2024-01-02T10:00:00.000Z caller=handler.go:88 msg="slow upstream" upstream=db req={i:09d}'
    return f"2024-01-02 10:00:00,000 ERROR [worker-3] job failed: connection reset by peer (attempt 2) req={i:09d}"


if __name__ == "__main__":
    main()
