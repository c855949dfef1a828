"""`monologue eval templates`: how well the template miner groups lines, against ground truth.

Grouping accuracy (GA), as in the Loghub benchmark (Zhu et al., "Tools and Benchmarks for
Automated Log Parsing", ICSE-SEIP 2019): a line counts as correct when the set of lines in
its predicted group equals exactly the set of lines in its true group; GA is the share of
correct lines.

Ground truth is a Loghub `*_structured.csv` (column `EventId`, one row per line of the raw
log). The data are Loghub's (Zhu et al., "Loghub: A Large Collection of System Log Datasets
for AI-driven Log Analytics", ISSRE 2023).

    monologue eval templates --log HDFS_2k.log --truth HDFS_2k.log_structured.csv --json
    monologue eval templates --loghub DIR        # all systems: a markdown table

With `--loghub`, every `DIR/<System>/<System>_2k.log` is mined by a fresh miner, and the
table sets its GA beside Drain's published GA (`drain_accuracy_loghub2k.csv` beside DIR,
with per-system formats and regexes) and Drain3 with its default settings on the same raw
lines.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Hashable, Sequence

from monologue.agent.templates import TemplateMiner

# Drain's GA as published with the Loghub benchmark tooling (logparser README).
PUBLISHED_COLUMN = "GA_logparser_README"


def default_data_dir() -> Path:
    """`$MONOLOGUE_DATA`, else `shared/data` beside the repository checkout."""
    env = os.environ.get("MONOLOGUE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of lines whose predicted group holds exactly the lines of their true group."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} truth labels")
    if not truth:
        return 0.0
    predicted_sizes = Counter(predicted)
    true_groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, label in enumerate(truth):
        true_groups[label].append(i)
    correct = 0
    for lines in true_groups.values():
        groups = {predicted[i] for i in lines}
        # One predicted group, and nothing else in it.
        if len(groups) == 1 and predicted_sizes[groups.pop()] == len(lines):
            correct += len(lines)
    return correct / len(truth)


def read_log(path: Path) -> list[str]:
    """Lines of a raw log. Only `\\n` ends a line: Loghub counts lines that way, and a stray
    form feed or Unicode separator inside a line must not shift every later line."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line.removesuffix("\r") for line in lines]


def read_truth(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row["EventId"] for row in csv.DictReader(f)]


@dataclass
class Result:
    log: str
    lines: int
    templates: int
    true_templates: int
    ga: float


def evaluate(log: Path, truth_csv: Path) -> Result:
    lines, truth = read_log(log), read_truth(truth_csv)
    if len(lines) != len(truth):
        raise ValueError(f"{log} has {len(lines)} lines but {truth_csv} has {len(truth)} rows")
    matches = TemplateMiner().add_many(lines)
    predicted = [m.template_id for m in matches]
    return Result(
        log=str(log),
        lines=len(lines),
        templates=len(set(predicted)),
        true_templates=len(set(truth)),
        ga=grouping_accuracy(predicted, truth),
    )


def drain3_default_ids(lines: Sequence[str]) -> list[int]:
    """Cluster ids from Drain3 with its default configuration, the comparison baseline."""
    from drain3 import TemplateMiner as Drain3Miner
    from drain3.template_miner_config import TemplateMinerConfig

    logging.getLogger("drain3").setLevel(logging.WARNING)
    # An explicit default config: without one Drain3 looks for drain3.ini in the cwd.
    miner = Drain3Miner(config=TemplateMinerConfig())
    return [miner.add_log_message(line)["cluster_id"] for line in lines]


def loghub_systems(root: Path) -> list[tuple[str, Path, Path]]:
    """(system, raw log, structured csv) for every Loghub 2k system under root."""
    systems = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        log = folder / f"{folder.name}_2k.log"
        truth = folder / f"{folder.name}_2k.log_structured.csv"
        if log.exists() and truth.exists():
            systems.append((folder.name, log, truth))
    return systems


def published_drain_ga(root: Path) -> dict[str, float]:
    path = root.parent / "drain_accuracy_loghub2k.csv"
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["dataset"]: float(row[PUBLISHED_COLUMN]) for row in csv.DictReader(f)}


def loghub_table(root: Path) -> list[dict]:
    """One row per system: our GA, Drain's published GA, Drain3-default GA."""
    published = published_drain_ga(root)
    rows = []
    for system, log, truth_csv in loghub_systems(root):
        result = evaluate(log, truth_csv)
        truth = read_truth(truth_csv)
        rows.append(
            {
                "system": system,
                "ga": result.ga,
                "drain_published_ga": published.get(system),
                "drain3_default_ga": grouping_accuracy(drain3_default_ids(read_log(log)), truth),
                "templates": result.templates,
                "true_templates": result.true_templates,
            }
        )
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def markdown(rows: list[dict]) -> str:
    def cell(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    out = [
        "| System | GA (monologue) | Drain published GA | Drain3 default GA | templates / true |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['system']} | {cell(r['ga'])} | {cell(r['drain_published_ga'])} "
            f"| {cell(r['drain3_default_ga'])} | {r['templates']} / {r['true_templates']} |"
        )
    means = {k: _mean([r[k] for r in rows]) for k in ("ga", "drain_published_ga", "drain3_default_ga")}
    out.append(
        f"| **mean** | **{cell(means['ga'])}** | {cell(means['drain_published_ga'])} "
        f"| {cell(means['drain3_default_ga'])} | |"
    )
    out.append("")
    out.append("Data: Loghub 2k (Zhu et al., ISSRE 2023); GA as in Zhu et al., ICSE-SEIP 2019.")
    return "\n".join(out)


def _run_args(args: argparse.Namespace) -> int:
    if args.loghub is not None or args.log is None:
        root = args.loghub or default_data_dir() / "loghub_2k"
        if not root.is_dir():
            print(f"no Loghub data at {root} (set MONOLOGUE_DATA or pass --loghub)", file=sys.stderr)
            return 2
        rows = loghub_table(root)
        if args.json:
            print(json.dumps({"systems": rows, "mean_ga": _mean([r["ga"] for r in rows])}))
        else:
            print(markdown(rows))
        return 0
    if args.truth is None:
        print("--truth is required with --log", file=sys.stderr)
        return 2
    result = evaluate(args.log, args.truth)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"{result.log}: GA {result.ga:.4f} over {result.lines} lines "
            f"({result.templates} templates, {result.true_templates} in truth)"
        )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `templates` under an `eval` command's subparsers."""
    parser = subparsers.add_parser(
        "templates",
        help="grouping accuracy of template mining against Loghub ground truth",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--log", type=Path, help="raw log file, e.g. HDFS_2k.log")
    parser.add_argument(
        "--truth", type=Path, help="structured CSV with an EventId column per line"
    )
    parser.add_argument(
        "--loghub",
        type=Path,
        help="folder of Loghub 2k systems: print the per-system table "
        "(default without --log: $MONOLOGUE_DATA/loghub_2k)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=_run_args)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monologue eval")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["templates", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(run())
