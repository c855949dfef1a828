"""A small Kubernetes client: server-side apply, get, delete and status patches.

Server-side apply (with force, under one field manager) is how every child is
written: it creates a missing child, reverts hand edits of the fields the
operator sets, and is a no-op (same resourceVersion, no watch event) when
nothing changed, so reconciling often is cheap and never loops.

404 and 409 are expected outcomes here, not errors: `get` and `delete` of a
missing object return None/False, and a conflicting status write is left to
the next reconcile.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .naming import FIELD_MANAGER


# kind -> (API path prefix, plural); the only kinds the operator touches.
_PATHS = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Service"): ("/api/v1", "services"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("monologue.dev/v1alpha1", "Space"): ("/apis/monologue.dev/v1alpha1", "spaces"),
    ("monologue.dev/v1alpha1", "Agent"): ("/apis/monologue.dev/v1alpha1", "agents"),
    ("monologue.dev/v1alpha1", "ModelServer"): ("/apis/monologue.dev/v1alpha1", "modelservers"),
}


class KubeError(RuntimeError):
    """The API server refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def invalid(self) -> bool:
        """The request itself was wrong (retrying the same one cannot help)."""
        return self.status in (400, 422)


def connect(pool_size: int = 32) -> kubernetes.client.ApiClient:
    """An API client from the in-cluster service account, else from KUBECONFIG."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    # Handlers run in a thread pool; each may hold a connection.
    configuration.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(configuration)


class Kube:
    def __init__(self, api: kubernetes.client.ApiClient):
        self.api = api

    def _call(self, method: str, path: str, *, body: Any = None, query=None, content_type=None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        return self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params=headers,
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=30,
        )

    @staticmethod
    def path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
        prefix, plural = _PATHS[(api_version, kind)]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    def apply(self, obj: dict) -> dict:
        """Server-side apply `obj` (fully specified: apiVersion, kind, namespace, name)."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        try:
            return self._call(
                "PATCH",
                path,
                body=obj,
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                content_type="application/apply-patch+yaml",
            )
        except ApiException as e:
            raise _error(e, f"apply {obj['kind']} {meta['namespace']}/{meta['name']}") from None
        except Exception as e:  # urllib3 connection errors and timeouts
            raise KubeError(f"apply {obj['kind']} {meta['namespace']}/{meta['name']}: {e}") from None

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self._call("GET", self.path(api_version, kind, namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise _error(e, f"get {kind} {namespace}/{name}") from None
        except Exception as e:
            raise KubeError(f"get {kind} {namespace}/{name}: {e}") from None

    def list_all(self, api_version: str, kind: str) -> list[dict]:
        """Every object of a kind in every namespace, each with its apiVersion and kind
        (a list response leaves them out of the items)."""
        prefix, plural = _PATHS[(api_version, kind)]
        try:
            items = self._call("GET", f"{prefix}/{plural}").get("items", [])
        except ApiException as e:
            raise _error(e, f"list {kind}") from None
        except Exception as e:
            raise KubeError(f"list {kind}: {e}") from None
        return [{"apiVersion": api_version, "kind": kind, **item} for item in items]

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete (dependents are collected in the background); False when already gone."""
        try:
            self._call("DELETE", self.path(api_version, kind, namespace, name),
                       body={"propagationPolicy": "Background"})
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise _error(e, f"delete {kind} {namespace}/{name}") from None
        except Exception as e:
            raise KubeError(f"delete {kind} {namespace}/{name}: {e}") from None

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: dict) -> bool:
        """Merge-patch the status subresource; False when the object is gone or changed
        under us (409), both of which the next event of that object handles."""
        path = self.path(api_version, kind, namespace, name) + "/status"
        try:
            self._call("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
            return True
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise _error(e, f"patch status of {kind} {namespace}/{name}") from None
        except Exception as e:
            raise KubeError(f"patch status of {kind} {namespace}/{name}: {e}") from None


def _error(e: ApiException, what: str) -> KubeError:
    message = e.reason or ""
    try:
        message = json.loads(e.body).get("message", message)
    except (TypeError, ValueError, AttributeError):
        pass
    return KubeError(f"{what}: {e.status} {message}", e.status)
