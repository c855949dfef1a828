"""Fixed names, labels and endpoints of everything the operator creates.

Children have fixed names derived from their owner so that a restarted operator
finds them again instead of creating duplicates.
"""

from __future__ import annotations

import hashlib
import re

GROUP = "monologue.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "monologue-operator"
MANAGED_BY = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
GRPC_PORT = 50051
MODEL_HTTP_PORT = 8080
CONFIG_DIR = "/etc/monologue"

# The label naming a child's owner, per owner kind; the drift watch reads it
# to find which resource to reconcile when a child changes.
OWNER_LABELS = {"Space": "monologue.dev/space", "Agent": "monologue.dev/agent", "ModelServer": "monologue.dev/modelserver"}
PLURALS = {"Space": "spaces", "Agent": "agents", "ModelServer": "modelservers"}


def labels(owner_kind: str, owner: str, component: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/part-of": "monologue",
        OWNER_LABELS[owner_kind]: owner,
    }


def selector(owner: str, component: str) -> dict[str, str]:
    """The pod selector of a child Deployment (immutable, so kept minimal)."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": owner}


def collection_name(namespace: str, space: str) -> str:
    """The Weaviate collection of a Space.

    Weaviate class names match [A-Z][_0-9A-Za-z]*; namespaces and names may hold
    '-' and '.', which both become '_', so a short hash of the exact pair keeps
    two different pairs from sharing a collection (a-b/c and a/b-c).
    """
    readable = re.sub(r"[^0-9A-Za-z]", "_", f"{namespace}_{space}")
    digest = hashlib.sha256(f"{namespace}/{space}".encode()).hexdigest()[:8]
    return f"Space_{readable}_{digest}"


def space_configmap(space: str) -> str:
    return f"{space}-space"


def shipper(space: str) -> str:
    return f"{space}-shipper"


def indexer(space: str) -> str:
    return f"{space}-indexer"


def agent(name: str) -> str:
    return f"{name}-agent"


def model(name: str) -> str:
    return f"{name}-model"


def agent_endpoint(name: str, namespace: str) -> str:
    return f"{agent(name)}.{namespace}.svc:{GRPC_PORT}"


def model_endpoint(name: str, namespace: str) -> str:
    return f"{model(name)}.{namespace}.svc:{GRPC_PORT}"
