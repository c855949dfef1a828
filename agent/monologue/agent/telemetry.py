"""The indexer's /metrics, /healthz and /readyz, for Prometheus and the kubelet.

An indexer serves no requests, so without these nothing outside could tell
one that keeps up from one that is paused by an outage, or stuck. The
figures are read from the indexer's Progress at each scrape, so a catch-up
of hours shows its progress object by object; how far it has indexed is the
newest object's end, to compare with the shipper's
loki_shipper_complete_until_timestamp_seconds. /healthz fails once the
indexer has made no progress for STALE_SECONDS (the kubelet restarts it),
/readyz while an outage pauses it or before its first poll.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
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
        """Serves in a daemon thread; returns the server (its port: server.server_address[1])."""
        telemetry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    self._send(200, generate_latest(telemetry.registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = telemetry.healthy()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"no progress\n")
                elif self.path == "/readyz":
                    ok = telemetry.ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"paused or starting\n")
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
        threading.Thread(target=server.serve_forever, name="indexer-telemetry", daemon=True).start()
        return server
