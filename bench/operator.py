"""Benchmark: 100 Spaces applied at once, time until every one is Ready.

Runs the real kube-apiserver + etcd and Weaviate of the test harness and the
operator as `kopf run` (its own process, as in production). Baseline, same
run and same API server: applying 100 plain ConfigMaps with kubectl, i.e. the
cost of merely storing 100 objects. Prints one JSON object per figure (bench,
metric, value, unit, baseline, ratio, target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubernetes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import servers  # noqa: E402
from harness.process import free_port, http_ok, tail  # noqa: E402

from figures import emit_ratio  # noqa: E402

COUNT = 100
TARGET_SECONDS = 30.0
TIMEOUT = 180.0


def emit(metric, value, unit, baseline, target):
    emit_ratio("operator", metric, value, unit, baseline, target)


def kubectl(k8s, *args, input=None) -> str:
    result = subprocess.run([str(k8s.kubectl), f"--kubeconfig={k8s.kubeconfig}", *args],
                            input=input, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def documents(kind: str, n: int) -> str:
    items = []
    for i in range(n):
        if kind == "ConfigMap":
            items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"plain-{i:03d}"},
                          "data": {"space.json": json.dumps({"name": f"space-{i:03d}"})}})
        else:
            items.append({
                "apiVersion": "monologue.dev/v1alpha1", "kind": "Space", "metadata": {"name": f"space-{i:03d}"},
                "spec": {"source": {"loki": {"query": f'{{app="svc-{i}"}} |= "error"'}},
                         "storage": {"uri": "s3://bench-logs"}},
            })
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def wait_all_ready(k8s, namespace: str, started: float) -> float:
    """Watch the Spaces (no polling: a kubectl per poll would steal the CPU being measured)
    until all are Ready; the seconds since `started`."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(k8s.kubeconfig), client_configuration=configuration)
    api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))
    ready: set[str] = set()
    stream = kubernetes.watch.Watch().stream(
        api.list_namespaced_custom_object, "monologue.dev", "v1alpha1", namespace, "spaces",
        timeout_seconds=int(TIMEOUT))
    for event in stream:
        space = event["object"]
        conditions = (space.get("status") or {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            ready.add(space["metadata"]["name"])
        if len(ready) == COUNT:
            return time.monotonic() - started
    raise SystemExit(f"only {len(ready)}/{COUNT} Spaces Ready after {TIMEOUT:.0f} s")


def main() -> None:
    logs = ROOT / "build" / "bench-logs" / time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="monologue-bench-operator-") as work:
        work = Path(work)
        k8s = servers.start_kubernetes(work / "kubernetes", logs)
        store = None
        operator = None
        try:
            store = servers.start_weaviate(work / "weaviate", logs)
            kubectl(k8s, "apply", "-f", str(ROOT / "crds"))
            # Not `kubectl wait`: it fails instead of waiting while a new CRD has no conditions yet.
            deadline = time.monotonic() + 30
            while "Established" not in kubectl(k8s, "get", "crd", "spaces.monologue.dev", "-o",
                                               'jsonpath={.status.conditions[?(@.status=="True")].type}'):
                if time.monotonic() > deadline:
                    raise SystemExit("the Space CRD was not established within 30 s")
                time.sleep(0.1)
            kubectl(k8s, "create", "namespace", "baseline")
            kubectl(k8s, "create", "namespace", "bench")

            started = time.monotonic()
            kubectl(k8s, "apply", "-n", "baseline", "-f", "-", input=documents("ConfigMap", COUNT))
            baseline = time.monotonic() - started

            health = free_port()
            operator_log = logs / "operator.log"
            with open(operator_log, "ab") as log:
                operator = subprocess.Popen(
                    [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "--log-format=json",
                     f"--liveness=http://127.0.0.1:{health}/healthz", "-m", "monologue.operator.main"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "KUBECONFIG": str(k8s.kubeconfig),
                         "WEAVIATE_URL": f"http://{store.host}:{store.http_port}",
                         "WEAVIATE_GRPC_PORT": str(store.grpc_port)},
                )
            deadline = time.monotonic() + 60
            while not http_ok(f"http://127.0.0.1:{health}/healthz"):
                if operator.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the operator did not start:\n{tail(operator_log)}")
                time.sleep(0.1)

            started = time.monotonic()
            kubectl(k8s, "apply", "-n", "bench", "-f", "-", input=documents("Space", COUNT))
            elapsed = wait_all_ready(k8s, "bench", started)
            emit(f"seconds_until_{COUNT}_spaces_ready", elapsed, "s", baseline, TARGET_SECONDS)
        finally:
            if operator is not None and operator.poll() is None:
                operator.terminate()
                operator.wait(30)
            if store is not None:
                store.stop()
            k8s.stop()


if __name__ == "__main__":
    main()
