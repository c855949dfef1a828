"""The `monologue` command line."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version


def _demo(_args: argparse.Namespace) -> int:
    print(
        "monologue demo: the setup is complete (environment, llama.cpp, models).\n"
        "The demo itself (generate sample logs -> ingest into an embedded Space -> ask\n"
        "three questions) needs the Space ingest and the Agent, which are not built yet.",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monologue",
        description="Ask your cluster's logs questions; answers cite the exact log lines.",
    )
    parser.add_argument("--version", action="version", version=version("monologue-agent"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the end-to-end demo on embedded defaults")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
