"""Operator start and stop: kopf settings and the shared clients."""

from __future__ import annotations

import logging

import kopf

from . import k8s
from .reconciling import Context
from .resync import Resync
from .settings import Settings, SettingsError
from .vectorstore import Weaviate


def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    # kopf's bookkeeping lives in the operator's own annotation domain, and our
    # CRDs' status schemas are strict, so kopf must not write into status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="monologue.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="monologue.dev", key="last-handled-configuration")
    settings.persistence.finalizer = "monologue.dev/delete-collection"
    # Kubernetes Events only for warnings and errors: one per successful handler
    # would double the API writes of every reconcile.
    settings.posting.level = logging.WARNING
    # The handlers are synchronous (kubernetes and weaviate clients) and wait on
    # network I/O; more threads let 100 Spaces reconcile side by side.
    settings.execution.max_workers = 20
    # One line per Weaviate request would bury the operator's own logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        operator_settings = Settings.from_env()
    except SettingsError as e:
        raise kopf.PermanentError(f"invalid operator setting: {e}") from None  # stops the operator
    memo.ctx = Context(kube=k8s.Kube(k8s.connect()), store=Weaviate(operator_settings), settings=operator_settings)
    memo.resync = Resync(memo.ctx, operator_settings.resync_seconds).start()
    logger.info("monologue operator started", extra={"weaviate": operator_settings.weaviate_url,
                                                      "agent_image": operator_settings.agent_image})


def cleanup(memo: kopf.Memo, **_) -> None:
    if getattr(memo, "resync", None) is not None:
        memo.resync.stop()
    if getattr(memo, "ctx", None) is not None:
        memo.ctx.store.close()
