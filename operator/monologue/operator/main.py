"""Registers the operator's handlers with kopf; the handlers live in one module per kind.

Run: kopf run --standalone --all-namespaces --log-format=json -m monologue.operator.main
"""

from __future__ import annotations

import kopf

from . import agent, lifecycle, modelserver, space, watches
from .naming import GROUP, MANAGED_BY, VERSION

kopf.on.startup()(lifecycle.startup)
kopf.on.cleanup()(lifecycle.cleanup)

for plural, kind in (("spaces", space), ("agents", agent), ("modelservers", modelserver)):
    # One reconcile per kind, for every way a resource can need one.
    kopf.on.create(GROUP, VERSION, plural, id="reconcile")(kind.handle)
    kopf.on.resume(GROUP, VERSION, plural, id="reconcile")(kind.handle)
    kopf.on.update(GROUP, VERSION, plural, id="reconcile", field="spec")(kind.handle)
# Drift repair: watches on the children (watches.py) plus a periodic resync (resync.py,
# started by lifecycle.startup).

# The collection is outside the cluster: only it needs a delete handler (and a finalizer),
# and only under deletionPolicy Delete.
kopf.on.delete(GROUP, VERSION, "spaces", id="delete-collection",
               when=space.deletes_collection)(space.delete_collection)

kopf.index(GROUP, VERSION, "agents", id="agents_by_space")(watches.agents_by_space)
kopf.index(GROUP, VERSION, "spaces", id="views_by_parent")(watches.views_by_parent)
kopf.on.event(GROUP, VERSION, "spaces", id="wake-dependents",
              when=watches.has_dependents)(watches.wake_dependents)

for group_version, plural in (("apps/v1", "deployments"), ("v1", "configmaps"), ("v1", "services")):
    kopf.on.event(group_version, plural, id="repair-drift", labels=MANAGED_BY,
                  when=watches.child_changed)(watches.repair_owner)
