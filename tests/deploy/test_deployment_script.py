"""Deployment.sh, run for real against a kube-apiserver of its own (installing, upgrading
and uninstalling must not disturb the session's shared one), with test doubles for the
`microk8s` and `docker` commands: the doubles record every call, keep addon and image
state in files, and send `microk8s kubectl` to the real kubectl and API server. Nothing
here has pods running (no kubelet), so the script runs with --no-wait."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from deploy import support
from deploy.support import DEPLOY, NAMESPACE, SCRIPT, render
from harness import servers

from monologue.operator import space as space_kind
from monologue.operator.settings import Settings

MICROK8S = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    printf 'microk8s %s\\n' "$*" >>"$STUB_STATE/calls"
    case "$1" in
      status) if [ "${2:-}" = --addon ]; then
                if [ -e "$STUB_STATE/addon-$3" ]; then echo enabled; else echo disabled; fi
              fi ;;
      enable) touch "$STUB_STATE/addon-$2" ;;
      ctr) case "$2 $3" in
             "images ls") cat "$STUB_STATE/imported" 2>/dev/null || true ;;
             "image import") read -r image; echo "docker.io/$image" >>"$STUB_STATE/imported" ;;
             *) exit 2 ;;
           esac ;;
      kubectl) shift; exec "$STUB_KUBECTL" --kubeconfig "$STUB_KUBECONFIG" "$@" ;;
      *) echo "microk8s double: unexpected: $*" >&2; exit 2 ;;
    esac
    """
)
DOCKER = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    printf 'docker %s\\n' "$*" >>"$STUB_STATE/calls"
    key() { printf '%s' "$1" | tr '/:' '__'; }
    case "$1" in
      info) ;;
      image) file="$STUB_STATE/image-$(key "${!#}")"; [ -e "$file" ] || exit 1; cat "$file" ;;
      build) echo "sha256:$(cat "$STUB_STATE/generation")-$5" >"$STUB_STATE/image-$(key "$5")" ;;
      save) echo "$2" ;;
      *) echo "docker double: unexpected: $*" >&2; exit 2 ;;
    esac
    """
)
MUTATING = ("microk8s enable", "microk8s ctr image import", "docker build", "docker save",
            "kubectl apply", "kubectl create", "kubectl delete", "kubectl rollout restart")


@pytest.fixture(scope="module")
def own_apiserver(tmp_path_factory):
    logs = Path(os.environ.get("MONOLOGUE_TEST_LOGS") or tmp_path_factory.mktemp("logs")) / "deploy-apiserver"
    logs.mkdir(parents=True, exist_ok=True)
    handle = servers.start_kubernetes(tmp_path_factory.mktemp("deploy-apiserver"), logs)
    yield handle
    handle.stop()


class Machine:
    """A PATH with the doubles, their state directory, and the real API server behind them."""

    def __init__(self, root: Path, apiserver):
        self.state = root / "state"
        self.bin = root / "bin"
        self.state.mkdir()
        self.bin.mkdir()
        for name, text in (("microk8s", MICROK8S), ("docker", DOCKER)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        (self.state / "generation").write_text("1\n")
        self.kubeconfig = apiserver.kubeconfig
        self.env = {**os.environ, "PATH": f"{self.bin}:/usr/bin:/bin", "STUB_STATE": str(self.state),
                    "STUB_KUBECTL": str(support.kubectl_binary()), "STUB_KUBECONFIG": str(apiserver.kubeconfig)}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        (self.state / "calls").write_text("")
        return subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=300)

    def calls(self) -> list[str]:
        return (self.state / "calls").read_text().splitlines()

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return support.kubectl(*args, kubeconfig=self.kubeconfig, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture
def machine(tmp_path, own_apiserver) -> Machine:
    return Machine(tmp_path, own_apiserver)


def mutating(calls: list[str]) -> list[str]:
    return [c for c in calls if any(m in c for m in MUTATING)]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_help_names_every_option():
    out = ok(subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True))
    for option in ("--dry-run", "--uninstall", "--no-build", "--no-wait", "--timeout"):
        assert option in out


def test_an_unknown_argument_fails():
    result = subprocess.run([str(SCRIPT), "--frobnicate"], capture_output=True, text=True)
    assert result.returncode != 0 and "unknown argument: --frobnicate" in result.stderr


def test_missing_prerequisites_stop_it_with_what_to_do(tmp_path):
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True,
                            env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "microk8s is not installed. Install it with: sudo snap install microk8s --classic" in result.stderr
    assert "docker is not installed" in result.stderr
    assert "==> microk8s addons" not in result.stdout, "nothing is done before the prerequisites are met"


def test_a_dry_run_changes_nothing(machine):
    out = ok(machine.run("--dry-run"))
    assert mutating(machine.calls()) == []
    assert machine.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0
    assert machine.kubectl("get", "crd", "spaces.monologue.dev", check=False).returncode != 0
    # ... and says what it would do, in order.
    steps = ["microk8s enable dns", "docker build --file", "microk8s ctr image import",
             "kubectl apply -f", "kubectl apply -k", "rollout status", "port-forward svc/default-sre-agent"]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), out
    assert out.count("would run: docker build") == len(support.script_images())


def secret_data(machine: Machine) -> dict[str, str]:
    data = machine.get("secret", "monologue-s3", "-n", NAMESPACE)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def annotations(machine: Machine, name: str) -> dict:
    return machine.get("deployment", name, "-n", NAMESPACE)["spec"]["template"]["metadata"].get("annotations") or {}


def test_install_then_a_second_run_upgrades(machine):
    out = ok(machine.run("--no-wait"))
    calls = machine.calls()
    assert {"microk8s enable dns", "microk8s enable hostpath-storage"} <= set(calls)
    assert len([c for c in calls if c.startswith("docker build")]) == 4
    imported = (machine.state / "imported").read_text().split()
    assert sorted(imported) == sorted(f"docker.io/{image}" for image in support.script_images())
    assert "kubectl -n monologue port-forward svc/default-sre-agent 50051:50051" in out
    assert "monologue.api.v1.AgentService/Ask" in out

    # Everything in deploy/ exists now, the CRDs are established.
    for obj in render(DEPLOY):
        scope = ["-n", obj["metadata"]["namespace"]] if "namespace" in obj["metadata"] else []
        machine.kubectl("get", obj["kind"].lower(), obj["metadata"]["name"], *scope)
    # The Secret: random keys, and the object store's identity carrying the same keys.
    secret = secret_data(machine)
    assert set(secret) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "s3.json"}
    assert len(secret["AWS_SECRET_ACCESS_KEY"]) == 40 and secret["AWS_ACCESS_KEY_ID"] != secret["AWS_SECRET_ACCESS_KEY"]
    identity = json.loads(secret["s3.json"])["identities"][0]
    assert identity["credentials"] == [{"accessKey": secret["AWS_ACCESS_KEY_ID"],
                                        "secretKey": secret["AWS_SECRET_ACCESS_KEY"]}]
    assert "Admin" in identity["actions"]

    # A child the operator renders, as it would exist on a running cluster.
    operator = machine.get("deployment", "monologue-operator", "-n", NAMESPACE)
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    space = machine.get("space", "default-logs", "-n", NAMESPACE)
    storage = {**space["spec"]["storage"], "space": "default-logs"}
    indexer = space_kind.indexer(space, storage, "{}", Settings.from_env(env))
    (machine.state / "indexer.json").write_text(json.dumps(indexer))
    machine.kubectl("apply", "-f", str(machine.state / "indexer.json"))

    # Second run, nothing changed: no addon enabled again, no image imported, keys kept,
    # nothing restarted.
    out = ok(machine.run("--no-wait"))
    calls = machine.calls()
    assert not [c for c in calls if c.startswith("microk8s enable") or c.startswith("microk8s ctr image import")]
    assert out.count("unchanged, already imported") == 4
    assert "Secret monologue-s3 exists: its S3 keys are kept" in out
    assert secret_data(machine) == secret
    assert "kubectl.kubernetes.io/restartedAt" not in annotations(machine, "default-logs-indexer")
    assert any("delete job s3-bucket" in c for c in calls), "the bucket Job is re-created"

    # Third run after the sources changed: every image is re-imported and the pods running
    # them (the operator and the indexer) restart onto the new content.
    (machine.state / "generation").write_text("2\n")
    ok(machine.run("--no-wait"))
    calls = machine.calls()
    assert len([c for c in calls if c.startswith("microk8s ctr image import")]) == 4
    assert "kubectl.kubernetes.io/restartedAt" in annotations(machine, "monologue-operator")
    assert "kubectl.kubernetes.io/restartedAt" in annotations(machine, "default-logs-indexer")


def test_uninstall_removes_the_resources_and_the_crds(machine):
    ok(machine.run("--no-build", "--no-wait"))
    assert machine.kubectl("get", "space", "default-logs", "-n", NAMESPACE, check=False).returncode == 0
    ok(machine.run("--uninstall"))
    assert not [c for c in machine.calls() if c.startswith("docker")], "uninstalling needs no docker"
    for crd in ("spaces", "agents", "modelservers"):
        assert machine.kubectl("get", "crd", f"{crd}.monologue.dev", check=False).returncode != 0
    assert machine.kubectl("get", "clusterrole", "monologue-operator", check=False).returncode != 0
    # No namespace controller runs here: the namespace is left terminating, not gone.
    namespace = machine.kubectl("get", "namespace", NAMESPACE, "-o", "json", check=False)
    assert namespace.returncode != 0 or json.loads(namespace.stdout)["metadata"].get("deletionTimestamp")
