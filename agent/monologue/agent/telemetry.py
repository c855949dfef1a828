"""/metrics, /healthz and /readyz of the indexer and the agent, for Prometheus and the kubelet.

An indexer serves no requests, so without these nothing outside could tell
one that keeps up from one that is paused by an outage, or stuck. The
figures are read from the indexer's Progress at each scrape, so a catch-up
of hours shows its progress object by object; how far it has indexed is the
newest object's end, to compare with the shipper's
loki_shipper_complete_until_timestamp_seconds. /healthz fails once the
indexer has made no progress for STALE_SECONDS (the kubelet restarts it),
/readyz while an outage pauses it or before its first poll.

An agent counts its requests by method and status code, and measures what an
answer costs (recall and generation time, tokens) and how often its model
states figures that none of its lines holds: what to alert on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .indexer import Indexer
from .space import object_span

STALE_SECONDS = 600.0  # without progress (an object indexed, a poll, a paused retry): unhealthy


class IndexerTelemetry:
    """indexer None: a view Space's, which has nothing to index and is always healthy and ready."""

    def __init__(self, space: str, indexer: Indexer | None, stale_seconds: float = STALE_SECONDS):
        self.space, self.indexer, self.stale_seconds = space, indexer, stale_seconds
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def collect(self):
        """The metrics, from the indexer's Progress now (prometheus_client's collector protocol)."""
        if self.indexer is None:
            return
        progress, space = self.indexer.progress, [self.space]
        for name, text, value in (("objects", "Objects indexed.", progress.objects),
                                  ("lines", "Lines indexed.", progress.lines),
                                  ("quarantined_objects", "Unreadable objects moved to _quarantine/.",
                                   progress.quarantined),
                                  ("segments", "Index segments written by compaction.", progress.segments),
                                  ("pauses", "Polls that an outage (embedder, store, storage) paused.",
                                   progress.pauses)):
            family = CounterMetricFamily(f"monologue_indexer_{name}", text, labels=["space"])
            family.add_metric(space, value)
            yield family
        newest = getattr(self.indexer, "newest", None)  # set once it has read its state
        newest = newest and object_span(newest)
        for name, text, value in (
                ("paused", "1 while an outage pauses indexing.", float(progress.paused)),
                ("last_progress_timestamp_seconds", "When the indexer last made progress.",
                 time.time() - (time.monotonic() - progress.at)),
                ("indexed_until_timestamp_seconds", "End of the newest indexed object's time span (its name's).",
                 newest[1] / 1e9 - 1 if newest else None)):
            if value is not None:
                family = GaugeMetricFamily(f"monologue_indexer_{name}", text, labels=["space"])
                family.add_metric(space, value)
                yield family

    def healthy(self) -> bool:
        return self.indexer is None or time.monotonic() - self.indexer.progress.at < self.stale_seconds

    def ready(self) -> bool:
        return self.indexer is None or (self.indexer.state is not None and not self.indexer.progress.paused)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        return serve_http(self.registry, host, port, self.healthy, self.ready, "indexer")


class AgentMetrics:
    """What an agent's requests and answers cost, and how they ended (service.py records them)."""

    def __init__(self, sessions: Callable[[], int] | None = None):
        self.registry = CollectorRegistry()
        self.requests = Counter("monologue_agent_requests", "Requests finished, by gRPC method and status code.",
                                ["method", "code"], registry=self.registry)
        self.in_flight = Gauge("monologue_agent_requests_in_flight", "Requests being answered.",
                               registry=self.registry)
        self.recall_seconds = Histogram(
            "monologue_agent_recall_seconds", "Recall per answer: search and the exact figures.",
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=self.registry)
        self.generation_seconds = Histogram(
            "monologue_agent_generation_seconds", "Generation per generated answer.",
            buckets=(0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160), registry=self.registry)
        self.prompt_tokens = Counter("monologue_agent_prompt_tokens", "Prompt tokens of generated answers.",
                                     registry=self.registry)
        self.completion_tokens = Counter("monologue_agent_completion_tokens", "Tokens generated in answers.",
                                         registry=self.registry)
        self.unsupported = Counter(
            "monologue_agent_answers_with_unsupported_figures",
            "Answers stating a figure that no line or statistic of their prompt holds.", registry=self.registry)
        if sessions is not None:
            Gauge("monologue_agent_sessions", "Chat sessions kept.",
                  registry=self.registry).set_function(sessions)

    @contextlib.contextmanager
    def request(self, method: str):
        """Counts one request; the body sets `outcome["code"]` (a grpc.StatusCode name) if it is not OK."""
        outcome = {"code": "OK"}
        self.in_flight.inc()
        try:
            yield outcome
        finally:
            self.in_flight.dec()
            self.requests.labels(method, outcome["code"]).inc()

    def answered(self, answer) -> None:
        """answer: answering.Answer."""
        self.recall_seconds.observe(answer.recall_ms / 1000)
        if answer.generation_ms:
            self.generation_seconds.observe(answer.generation_ms / 1000)
            self.prompt_tokens.inc(answer.prompt_tokens)
            self.completion_tokens.inc(answer.completion_tokens)
        if answer.unsupported_figures:
            self.unsupported.inc()


def serve_http(registry: CollectorRegistry, host: str, port: int, healthy: Callable[[], bool],
               ready: Callable[[], bool], name: str) -> ThreadingHTTPServer:
    """/metrics of the registry, /healthz and /readyz, served in a daemon thread;
    returns the server (its port: server.server_address[1])."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"no progress\n")
            elif self.path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready: paused, starting or stopping\n")
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds: not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{name}-telemetry", daemon=True).start()
    return server
