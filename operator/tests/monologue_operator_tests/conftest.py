"""Fixtures of the operator tests: the CRDs and RBAC installed into the harness's real
kube-apiserver, and the operator itself run as `kopf run` under its own
ServiceAccount's token, so every test also proves the ClusterRole suffices."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import kubernetes
from kubernetes.client import ApiextensionsV1Api
import pytest
import weaviate as weaviate_lib
import yaml

from harness.process import ROOT, free_port, http_ok, tail

CRDS = ROOT / "crds"
RBAC = ROOT / "deploy" / "operator" / "rbac.yaml"
LOG_DIR = Path(os.environ.get("MONOLOGUE_TEST_LOGS", ROOT / "build" / "test-logs"))
_operator_runs = itertools.count(1)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll until `predicate` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    kubernetes: object  # harness.servers.Kubernetes
    operator_kubeconfig: Path
    api: kubernetes.client.ApiClient

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.kubernetes.kubectl), f"--kubeconfig={self.kubernetes.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, manifest: dict | str, namespace: str) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl("apply", "-n", namespace, "-f", "-", input=text)

    # --- reads as the admin (never as the operator)
    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.api)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object("monologue.dev", "v1alpha1", namespace, plural, name)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def deployment(self, namespace: str, name: str):
        try:
            return self.apps.read_namespaced_deployment(name, namespace)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def configmap(self, namespace: str, name: str):
        try:
            return self.core.read_namespaced_config_map(name, namespace)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def service(self, namespace: str, name: str):
        try:
            return self.core.read_namespaced_service(name, namespace)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise


def condition(obj: dict | None, kind: str = "Ready") -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return cond
    return {}


@pytest.fixture(scope="session")
def cluster(kubernetes, tmp_path_factory) -> Cluster:
    api = kubernetes_client(kubernetes.kubeconfig)
    c = Cluster(kubernetes, Path(), api)
    c.kubectl("apply", "-f", str(CRDS))
    # Not `kubectl wait`: it fails instead of waiting while a new CRD has no conditions yet.
    extensions = ApiextensionsV1Api(api)
    for crd in ("spaces", "agents", "modelservers"):
        wait_for(lambda: any(c.type == "Established" and c.status == "True"
                             for c in extensions.read_custom_resource_definition(f"{crd}.monologue.dev").status.conditions or ()),
                 30, f"the CRD {crd}.monologue.dev established")
    c.kubectl("apply", "-f", str(ROOT / "deploy" / "operator" / "namespace.yaml"))
    c.kubectl("apply", "-f", str(RBAC))
    token = c.kubectl("create", "token", "monologue-operator", "-n", "monologue",
                      "--duration=4h").stdout.strip()
    config = tmp_path_factory.mktemp("operator") / "kubeconfig"
    admin = kubernetes_config_dict(kubernetes.kubeconfig)
    cluster_entry = admin["clusters"][0]
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": "monologue-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_entry["name"], "user": "monologue-operator"}}],
        "current-context": "operator",
    }))
    c.operator_kubeconfig = config
    return c


def kubernetes_config_dict(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def kubernetes_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


@pytest.fixture
def namespace(cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="session")
def weaviate_client(weaviate):
    c = weaviate_lib.connect_to_custom(
        http_host=weaviate.host, http_port=weaviate.http_port, http_secure=False,
        grpc_host=weaviate.host, grpc_port=weaviate.grpc_port, grpc_secure=False,
    )
    yield c
    c.close()


class Operator:
    """`kopf run` in a child process, as the operator's ServiceAccount."""

    def __init__(self, cluster: Cluster, env: dict[str, str]):
        self.cluster = cluster
        self.env = env
        self.process: subprocess.Popen | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"operator-{os.getpid()}-{next(_operator_runs)}.log"
        self.health_port = free_port()

    def start(self, timeout: float = 30) -> "Operator":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "--log-format=json",
             f"--liveness=http://127.0.0.1:{self.health_port}/healthz", "-m", "monologue.operator.main"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "KUBECONFIG": str(self.cluster.operator_kubeconfig), **self.env},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not http_ok(f"http://127.0.0.1:{self.health_port}/healthz"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the operator did not start; log {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def records(self) -> list[dict]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"message": line})
        return records

    def messages_about(self, kind: str, namespace: str, name: str) -> list[str]:
        return [
            r["message"] for r in self.records()
            if (r.get("object") or {}).get("kind") == kind
            and r["object"].get("namespace") == namespace and r["object"].get("name") == name
        ]


@pytest.fixture
def operator_env(weaviate) -> dict[str, str]:
    return {
        "WEAVIATE_URL": f"http://{weaviate.host}:{weaviate.http_port}",
        "WEAVIATE_GRPC_PORT": str(weaviate.grpc_port),
        "MONOLOGUE_LOKI_URL": "http://loki.test:3100",
        "AWS_ENDPOINT_URL": "http://s3.test:9000",
        "AWS_REGION": "eu-west-1",
    }


@pytest.fixture
def start_operator(cluster, request):
    """Start operators (one at a time); on teardown, delete the test's resources while
    the last operator still runs (finalizers need it), then stop it."""
    started: list[Operator] = []

    def start(env: dict[str, str]) -> Operator:
        op = Operator(cluster, env).start()
        started.append(op)
        return op

    yield start
    namespace = request.getfixturevalue("namespace")
    live = [op for op in started if op.process and op.process.poll() is None]
    if live:
        cluster.kubectl("delete", "spaces,agents,modelservers", "--all", "-n", namespace,
                        "--wait=true", "--timeout=30s", check=False)
    for op in started:
        op.stop()


@pytest.fixture
def operator(start_operator, operator_env) -> Operator:
    return start_operator(operator_env)
