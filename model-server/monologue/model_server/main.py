"""monologue-model-server: serve one GGUF model over gRPC and an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from monologue.common import jsonlog

from . import openmp

openmp.configure()  # before llama.cpp is loaded (by the imports below)

from .engine import ROLES  # noqa: E402
from .openai_http import start_http  # noqa: E402
from .service import ModelServer, Settings, create_server  # noqa: E402

log = logging.getLogger("monologue.model_server")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"MODEL_SERVER_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monologue-model-server",
        description="Serve one GGUF model (generation or embedding) with llama.cpp over gRPC "
        "(ModelService, health, reflection) and an OpenAI-compatible HTTP API. "
        "Every flag can also be set as MODEL_SERVER_<FLAG> (e.g. MODEL_SERVER_MODEL).",
    )
    p.add_argument("--model", default=_env("MODEL"), required=_env("MODEL") is None,
                   help="a GGUF file path, a packaged model name (see `python -m "
                   "monologue.model_server.catalog list`), or s3://bucket/key")
    p.add_argument("--role", choices=ROLES, default=_env("ROLE", "generation"))
    p.add_argument("--sha256", default=_env("SHA256", ""),
                   help="expected sha256 of the model file; refuses to serve another file")
    p.add_argument("--context-size", type=int, default=int(_env("CONTEXT_SIZE", "2048")))
    p.add_argument("--threads", type=int, default=int(_env("THREADS", "0")) or None,
                   help="llama.cpp threads (default: all cores)")
    p.add_argument("--parallel", type=int, default=int(_env("PARALLEL", "4")),
                   help="generations decoded together, each with its own --context-size "
                   "of KV cache (more: more tokens/s in total, more memory)")
    p.add_argument("--max-queue", type=int, default=int(_env("MAX_QUEUE", "64")),
                   help="requests allowed to wait; more get RESOURCE_EXHAUSTED")
    p.add_argument("--max-tokens", type=int, default=int(_env("MAX_TOKENS", "256")),
                   help="default max_tokens when a request gives none")
    p.add_argument("--listen", default=_env("LISTEN", "0.0.0.0"), help="address to bind")
    p.add_argument("--grpc-port", type=int, default=int(_env("GRPC_PORT", "50051")))
    p.add_argument("--http-port", type=int, default=int(_env("HTTP_PORT", "8080")),
                   help="OpenAI-compatible API, /metrics, /healthz, /readyz (0: pick one)")
    p.add_argument("--grace", type=float, default=float(_env("GRACE", "20")),
                   help="seconds in-flight requests get to finish on SIGTERM")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    jsonlog.setup(args.log_level)
    for flag in ("context_size", "max_queue", "max_tokens", "parallel"):
        if getattr(args, flag) <= 0:
            print(f"error: --{flag.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    model = ModelServer(Settings(
        model=args.model, role=args.role, sha256=args.sha256, context_size=args.context_size,
        threads=args.threads, max_queue=args.max_queue, default_max_tokens=args.max_tokens,
        parallel=args.parallel,
    ))
    server, grpc_port = create_server(f"{args.listen}:{args.grpc_port}", model)
    server.start()
    httpd, http_port = start_http(args.listen, args.http_port, model)
    log.info("listening", extra={"grpc_port": grpc_port, "http_port": http_port})
    # Serve health (NOT_SERVING) at once; the model loads meanwhile.
    loader = model.load_in_background()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and (loader.is_alive() or model.engine is not None):
        stop.wait(1)
    failed = model.engine is None and not stop.is_set()

    log.info("stopping", extra={"grace_seconds": args.grace})
    server.stop(args.grace).wait()  # refuses new RPCs, lets running ones finish
    httpd.shutdown()
    model.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
