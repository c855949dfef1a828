"""The periodic resync: every resource reconciled again at a slow interval.

It is the backstop for drift no Kubernetes watch sees (a collection deleted in
Weaviate by hand, an outage that ended while nothing changed) and it refreshes
the Spaces' line counts. It is one operator-wide loop rather than a kopf timer
per resource because kopf timers put a finalizer on every resource, which
would block every deletion while the operator is down.
"""

from __future__ import annotations

import logging
import threading

from . import agent, modelserver, space
from .k8s import KubeError
from .naming import API_VERSION
from .reconciling import Context, publish_via_api
from .watches import RECONCILERS

log = logging.getLogger(__name__)

KINDS = (space.KIND, modelserver.KIND, agent.KIND)


def resync_once(ctx: Context) -> int:
    """Reconcile every resource of every kind once; the number reconciled."""
    count = 0
    for kind in KINDS:
        try:
            items = ctx.kube.list_all(API_VERSION, kind)
        except KubeError as e:
            log.warning("resync: cannot list %s: %s", kind, e)
            continue
        for body in items:
            if body["metadata"].get("deletionTimestamp"):
                continue
            try:
                publish_via_api(ctx, kind, body, RECONCILERS[kind](body, ctx))
                count += 1
            except KubeError as e:
                log.warning("resync: %s %s/%s: %s", kind, body["metadata"]["namespace"],
                            body["metadata"]["name"], e)
    return count


class Resync:
    """The loop in a thread of its own (the reconcile code is synchronous)."""

    def __init__(self, ctx: Context, interval: float):
        self.ctx, self.interval = ctx, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monologue-resync", daemon=True)

    def start(self) -> "Resync":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        # wait() returns True when stopped: the first pass waits a full interval, so
        # a start or restart does not reconcile everything twice (resume does it).
        while not self._stop.wait(self.interval):
            try:
                log.info("resync: %d resources reconciled", resync_once(self.ctx))
            except Exception:  # the loop must survive any single bad pass
                log.exception("resync pass failed")
