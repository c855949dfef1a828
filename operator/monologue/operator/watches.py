"""Reconciles triggered by other resources than the one reconciled.

Drift repair is watch-based rather than a timer: every child carries the
managed-by label and a label naming its owner, and a change or deletion of a
child (a hand edit, `kubectl delete`, a Deployment whose ready pods changed)
reconciles its owner at once. Server-side apply makes that cheap: a child that
already matches is not written, so the operator's own writes settle after one
extra no-op pass instead of looping. A slow periodic resync (resync.py) is the
backstop for what no Kubernetes watch sees, such as a collection deleted in
Weaviate by hand.

Cross-references work the same way: when a Space appears, changes or goes
away, the Agents and views naming it are reconciled (kopf indexes keep the
reverse mapping in memory, so no listing is needed).
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

import kopf

from . import agent, modelserver, space
from .k8s import KubeError
from .naming import API_VERSION, OWNER_LABELS
from .reconciling import Context, Outcome, publish_via_api

log = logging.getLogger(__name__)

RECONCILERS: dict[str, Callable[[Mapping, Context], Outcome]] = {
    space.KIND: space.reconcile,
    agent.KIND: agent.reconcile,
    modelserver.KIND: modelserver.reconcile,
}


def agents_by_space(namespace: str, name: str, spec: Mapping, **_) -> dict:
    """kopf index over Agents: (namespace, space) -> names of the Agents that use it."""
    return {(namespace, s): name for s in spec.get("spaces", [])}


def views_by_parent(namespace: str, name: str, spec: Mapping, **_) -> dict | None:
    """kopf index over Spaces: (namespace, parent) -> names of the views that read it."""
    view = spec.get("source", {}).get("view")
    return {(namespace, view["space"]): name} if view else None


def has_dependents(type: str | None, namespace: str, name: str, agents_by_space: kopf.Index,
                   views_by_parent: kopf.Index, **_) -> bool:
    """kopf filter of wake_dependents, so that most Space events cost no handler run. The
    initial listing (type None) is skipped: the resume handlers reconcile everything anyway."""
    key = (namespace, name)
    return type is not None and (key in agents_by_space or key in views_by_parent)


def wake_dependents(namespace: str, name: str, memo, agents_by_space: kopf.Index,
                    views_by_parent: kopf.Index, **_) -> None:
    """kopf event handler on Spaces: reconcile the Agents and views that name this Space."""
    key = (namespace, name)
    for dependent in agents_by_space.get(key, ()):
        reconcile_by_name(memo.ctx, agent.KIND, namespace, dependent)
    for dependent in views_by_parent.get(key, ()):
        reconcile_by_name(memo.ctx, space.KIND, namespace, dependent)


def child_changed(type: str | None, **_) -> bool:
    """kopf filter of repair_owner: ADDED is the operator's own create, and the initial
    listing (type None) is covered by the resume handlers."""
    return type in ("MODIFIED", "DELETED")


def repair_owner(body: Mapping, namespace: str, memo, **_) -> None:
    """kopf event handler on the operator's children: reconcile the owner of a child that
    was changed or deleted, which re-applies the child if it drifted."""
    labels = body.get("metadata", {}).get("labels", {})
    for kind, label in OWNER_LABELS.items():
        if label in labels:
            reconcile_by_name(memo.ctx, kind, namespace, labels[label])
            return


def reconcile_by_name(ctx: Context, kind: str, namespace: str, name: str) -> None:
    try:
        body = ctx.kube.get(API_VERSION, kind, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # gone or going: nothing to repair, owner references clean up
        publish_via_api(ctx, kind, body, RECONCILERS[kind](body, ctx))
    except KubeError as e:
        # No retry from here: the resource's own handlers and the resync retry.
        log.warning("cannot reconcile %s %s/%s: %s", kind, namespace, name, e)
