"""The harness's kube-apiserver is real: CRDs, custom resources, both clients."""

import json
import subprocess
import textwrap

import kubernetes as k8s

CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.smoke.monologue.dev
    spec:
      group: smoke.monologue.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                properties:
                  size: {type: integer, minimum: 1}
    """
)

WIDGET = textwrap.dedent(
    """\
    apiVersion: smoke.monologue.dev/v1
    kind: Widget
    metadata: {name: first}
    spec: {size: 3}
    """
)


def kubectl(kube, *args, stdin=None):
    return subprocess.run(
        [str(kube.kubectl), f"--kubeconfig={kube.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_kubectl_applies_a_crd_and_a_custom_resource_and_reads_it_back(kubernetes):
    applied = kubectl(kubernetes, "apply", "-f", "-", stdin=CRD)
    assert applied.returncode == 0, applied.stderr
    waited = kubectl(
        kubernetes, "wait", "--for=condition=Established", "--timeout=30s",
        "crd/widgets.smoke.monologue.dev",
    )
    assert waited.returncode == 0, waited.stderr

    created = kubectl(kubernetes, "apply", "-f", "-", stdin=WIDGET)
    assert created.returncode == 0, created.stderr
    got = kubectl(kubernetes, "get", "widget", "first", "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["spec"] == {"size": 3}

    invalid = kubectl(kubernetes, "apply", "-f", "-", stdin=WIDGET.replace("size: 3", "size: 0"))
    assert invalid.returncode != 0
    assert "spec.size" in invalid.stderr


def test_python_client_uses_the_same_kubeconfig(kubernetes):
    client = k8s.config.new_client_from_config(config_file=str(kubernetes.kubeconfig))
    version = k8s.client.VersionApi(client).get_code()
    assert version.git_version == "v1.34.4"
    namespaces = k8s.client.CoreV1Api(client).list_namespace()
    assert "default" in {ns.metadata.name for ns in namespaces.items}
