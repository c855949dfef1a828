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

The baseline of (b) is the shipper's own pager (loki.Client) with nothing
behind it: the same query, range and page limit, so Loki does the same work
for both and the ratio is what encoding and uploading cost. Loki, the pager
and the shipper share the machine's cores with whatever else runs, so one
pair of runs says little on a busy machine. After one untimed run of each
(neither pays for first reads), each of ROUNDS rounds runs bare, shipper,
shipper, bare, so that a load rising or falling through a round weighs on
both alike; a round's ratio is bare seconds over shipper seconds, and the
figure is the median of the rounds' ratios (all of them are in "rounds").
Wall time, CPU time and peak RSS are measured by the helper as the
process's parent (see runMeasured in shipperbench).
"""

from __future__ import annotations

import io
import json
import os
import statistics
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
ROUNDS = 7
PAGE_LIMIT = 5000  # the shipper's default --loki.limit, for both readers


def emit(metric, value, unit, baseline=None, ratio=None, target=None, **extra):
    print(json.dumps({"bench": BENCH, "metric": metric, "value": round(value, 3), "unit": unit,
                      "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
                      "target": target, **extra}), flush=True)


def run_measured(helper: Path, argv, env) -> tuple[str, dict]:
    """Run argv under the helper's -mode=run: (stdout, {"seconds", "cpu_seconds", "peak_rss_mib"}).
    The helper, not this process, is the parent: a child of this (large) Python process
    would count its resident set in the child's peak RSS (see runMeasured)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run([str(helper), "-mode=run", f"-report={report}", "--", *map(str, argv)],
                              capture_output=True, text=True, env={**os.environ, **env})
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout, json.loads(report.read_text())


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
        out, measured = run_measured(helper, [helper, "-mode=write", "-bucket=bench", "-lines=1000000"], s3.env)
        result = json.loads(out)
        emit("write_path_lines_per_second", result["lines"] / result["seconds"], "lines/s", target=">= 200000")
        emit("write_path_mib_per_second", result["bytes"] / MIB / result["seconds"], "MiB/s")
        emit("write_path_peak_rss", measured["peak_rss_mib"], "MiB")

        # (b) end to end: push lines into Loki, then ship them / read them bare
        lines_total, minutes = 600_000, 60
        base = (time.time_ns() // 60_000_000_000 - minutes - 2) * 60_000_000_000
        step = minutes * 60_000_000_000 // lines_total
        line_bytes = sum(len(line_text(i).encode()) for i in range(lines_total))
        for pod in range(4):
            values = [(base + i * step, line_text(i)) for i in range(pod, lines_total, 4)]
            support.push_lines(loki.url, {"app": "bench", "pod": f"bench-{pod}"}, values, batch=10_000)
        end = base + minutes * 60_000_000_000
        query = '{app="bench"}'
        iso = lambda ns: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))  # noqa: E731

        def loki_cpu() -> float:
            fields = Path(f"/proc/{loki.server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

        def read_bare():
            out, measured = run_measured(helper, [helper, "-mode=read", f"-loki.url={loki.url}", f"-loki.query={query}",
                                                  f"-from={base}", f"-to={end}", f"-loki.limit={PAGE_LIMIT}"], {})
            assert json.loads(out)["lines"] == lines_total, out
            return measured

        def ship(prefix):
            args = support.shipper_args(loki.url, query, "bench", prefix, "--once", f"--start={iso(base)}",
                                        f"--end={iso(end)}", "--log.level=warn", f"--loki.limit={PAGE_LIMIT}")
            return run_measured(helper, [shipper_bin, *args], s3.env)[1]

        read_bare()  # untimed, like the next: neither pays for first reads
        ship("e2e-warmup")
        rounds = []
        for n in range(ROUNDS):
            loki_before = loki_cpu()
            # bare, shipper, shipper, bare: a load that rises or falls through the round weighs on both alike
            first_bare, first_ship = read_bare(), ship(f"e2e-{n}a")
            second_ship, second_bare = ship(f"e2e-{n}b"), read_bare()
            bare = {k: (first_bare[k] + second_bare[k]) / 2 for k in first_bare}
            shipped = {k: (first_ship[k] + second_ship[k]) / 2 for k in first_ship}
            shipped["peak_rss_mib"] = max(first_ship["peak_rss_mib"], second_ship["peak_rss_mib"])
            rounds.append((bare, shipped))
            print(f"round {n}: bare {first_bare['seconds']:.2f} + {second_bare['seconds']:.2f} s "
                  f"({bare['cpu_seconds']:.2f} s CPU each), shipper {first_ship['seconds']:.2f} + "
                  f"{second_ship['seconds']:.2f} s ({shipped['cpu_seconds']:.2f} s CPU each, "
                  f"{shipped['peak_rss_mib']:.0f} MiB), Loki {(loki_cpu() - loki_before) / 4:.2f} s CPU a read: "
                  f"ratio {bare['seconds'] / shipped['seconds']:.3f}", file=sys.stderr)
        rows = count_rows(client, "bench", "e2e-0a")
        assert rows == lines_total, f"shipper wrote {rows} of {lines_total} lines"
        ratios = [bare["seconds"] / shipped["seconds"] for bare, shipped in rounds]
        bare_wall = statistics.median(bare["seconds"] for bare, _ in rounds)
        ship_wall = statistics.median(shipped["seconds"] for _, shipped in rounds)
        mib = line_bytes / MIB
        emit("end_to_end_lines_per_second", lines_total / ship_wall, "lines/s", baseline=round(lines_total / bare_wall, 1),
             ratio=statistics.median(ratios), target="ratio >= 0.8", rounds=[round(r, 3) for r in ratios])
        emit("end_to_end_mib_per_second", mib / ship_wall, "MiB/s", baseline=round(mib / bare_wall, 3),
             ratio=bare_wall / ship_wall)
        emit("end_to_end_cpu_seconds", statistics.median(shipped["cpu_seconds"] for _, shipped in rounds), "s",
             baseline=round(statistics.median(bare["cpu_seconds"] for bare, _ in rounds), 3),
             ratio=statistics.median(shipped["cpu_seconds"] / bare["cpu_seconds"] for bare, shipped in rounds))
        emit("end_to_end_peak_rss", max(shipped["peak_rss_mib"] for _, shipped in rounds), "MiB", target="<= 150")
    finally:
        loki.stop()
        s3.stop()


def count_rows(client, bucket: str, prefix: str) -> int:
    """Rows of every object under prefix, from the Parquet footers."""
    import pyarrow.parquet as pq

    total = 0
    for key in support.list_keys(client, bucket, prefix + "/"):
        if key.endswith(".parquet"):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            total += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    return total


def line_text(i: int) -> str:
    """About 120 bytes, in the three shapes the shipper parses."""
    if i % 3 == 0:
        return f'{{"level":"info","ts":"2024-01-02T10:00:00.000Z","msg":"request served","path":"/api/v1/items","req":"{i:09d}"}}'
    if i % 3 == 1:
        return f'level=warn ts=2024-01-02T10:00:00.000Z caller=handler.go:88 msg="slow upstream" upstream=db req={i:09d}'
    return f"2024-01-02 10:00:00,000 ERROR [worker-3] job failed: connection reset by peer (attempt 2) req={i:09d}"


if __name__ == "__main__":
    main()
