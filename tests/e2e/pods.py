"""Run the pods of Deployments as local processes, since there is no kubelet here.

It does what a kubelet and cluster DNS do for the Deployments monologue's operator
writes, and nothing specific to any one of them, so that a spec that cannot run
(a wrong flag, a missing variable, a config the program cannot read) fails here:

- command: the image's executable becomes a local one (`Image.executables`); args as written;
- environment: only the image's (`Image.env`) and the container's own (`value`,
  `valueFrom` secretKeyRef/configMapKeyRef, `envFrom`), read through the API; `$(VAR)` expanded;
- configMap volumes: written to a directory, whose path replaces the mount path in args and env;
- networking: each containerPort gets a free loopback port. A Service address
  `<service>.<namespace>.svc:<port>` in args, env or a mounted file becomes `127.0.0.1:<the
  local port of the pod behind it>`; addresses outside the namespace (Loki, S3) come from a
  table. Where a container binds its own port P (`:P`, `0.0.0.0:P`, or an argument `P`), P
  becomes its local port;
- readiness: the container's readinessProbe (grpc, httpGet); without one, running is ready;
- stop: SIGTERM, as when a pod is deleted.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import kubernetes
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.process import Server, free_port, http_ok, tail

SERVICE_ADDRESS = re.compile(r"\b([a-z0-9][-a-z0-9]*)\.([a-z0-9][-a-z0-9]*)\.svc(?:\.cluster\.local)?:(\d+)\b")


@dataclass
class Image:
    """What of an image matters to run its containers here."""

    executables: dict[str, str]  # a container command's executable -> the local one
    env: dict[str, str] = field(default_factory=dict)  # the image's ENV


@dataclass
class Pod:
    deployment: str
    labels: dict[str, str]
    container: dict
    volumes: list[dict]
    ports: dict[int, int]  # containerPort -> local port
    server: Server | None = None

    def local_port(self, port: int | str) -> int:
        """The local port of a containerPort, given by number or by name."""
        if isinstance(port, str) and not port.isdigit():
            port = next(p["containerPort"] for p in self.container.get("ports", []) if p.get("name") == port)
        return self.ports[int(port)]

    def ready(self) -> bool:
        probe = self.container.get("readinessProbe")
        if not probe:
            return True
        if "grpc" in probe:
            with grpc.insecure_channel(f"127.0.0.1:{self.local_port(probe['grpc']['port'])}") as channel:
                try:
                    response = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=2)
                except grpc.RpcError:
                    return False
                return response.status == health_pb2.HealthCheckResponse.SERVING
        if "httpGet" in probe:
            get = probe["httpGet"]
            return http_ok(f"http://127.0.0.1:{self.local_port(get['port'])}{get.get('path', '/')}")
        raise ValueError(f"{self.deployment}: unsupported readinessProbe {probe}")


class LocalPods:
    """The pods of some Deployments of one namespace, as local processes."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, images: dict[str, Image],
                 external: dict[str, str], workdir: Path, logs: Path, base_env: dict[str, str]):
        self.api, self.namespace = api, namespace
        self.core, self.apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
        self.images, self.workdir, self.logs, self.base_env = images, workdir, logs, base_env
        self.addresses = dict(external)  # "<service>.<namespace>.svc:<port>" -> "127.0.0.1:<port>"
        self.pods: list[Pod] = []

    # ------------------------------------------------------------ plan

    def add(self, *deployments: str) -> None:
        """Read the Deployments and give every containerPort a local port (one pod each)."""
        specs = [self.api.sanitize_for_serialization(self.apps.read_namespaced_deployment(name, self.namespace))
                 for name in deployments]
        container_ports = {p["containerPort"] for d in specs for c in d["spec"]["template"]["spec"]["containers"]
                           for p in c.get("ports", [])}
        for spec in specs:
            pod_spec = spec["spec"]["template"]["spec"]
            if len(pod_spec["containers"]) != 1:
                raise ValueError(f"{spec['metadata']['name']}: one container per pod is supported")
            container = pod_spec["containers"][0]
            ports = {p["containerPort"]: _free_port_except(container_ports) for p in container.get("ports", [])}
            self.pods.append(Pod(spec["metadata"]["name"], spec["spec"]["template"]["metadata"].get("labels", {}),
                                 container, pod_spec.get("volumes", []), ports))
        self._route_services()

    def _route_services(self) -> None:
        for service in self.core.list_namespaced_service(self.namespace).items:
            selector = service.spec.selector or {}
            pod = next((p for p in self.pods if selector and selector.items() <= p.labels.items()), None)
            if pod is None:
                continue
            for port in service.spec.ports:
                target = port.target_port if port.target_port is not None else port.port
                self.addresses[f"{service.metadata.name}.{self.namespace}.svc:{port.port}"] = \
                    f"127.0.0.1:{pod.local_port(target)}"

    def address(self, service: str, port: int) -> str:
        """Where a client reaches a Service port here."""
        return self.addresses[f"{service}.{self.namespace}.svc:{port}"]

    # ------------------------------------------------------------ translation

    def _resolve_services(self, text: str) -> str:
        def local(match: re.Match) -> str:
            try:
                return self.addresses[match.group(0).replace(".cluster.local", "")]
            except KeyError:
                raise ValueError(f"{match.group(0)} names no Service that is running here "
                                 f"(known: {', '.join(sorted(self.addresses))})") from None
        return SERVICE_ADDRESS.sub(local, text)

    @staticmethod
    def _bind_ports(text: str, ports: dict[int, int]) -> str:
        for port, local in ports.items():
            text = re.sub(rf"(^|[\s\"'=])((?:0\.0\.0\.0)?):{port}(?!\d)", rf"\g<1>\g<2>:{local}", text)
        return text

    def _materialise_volumes(self, pod: Pod) -> dict[str, str]:
        """Write the pod's configMap volumes to directories: mount path -> local directory."""
        mounts = {}
        volumes = {v["name"]: v for v in pod.volumes}
        for mount in pod.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "configMap" not in volume:
                raise ValueError(f"{pod.deployment}: only configMap volumes are supported, not {volume}")
            data = self.core.read_namespaced_config_map(volume["configMap"]["name"], self.namespace).data or {}
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            directory = self.workdir / pod.deployment / mount["name"]
            for item in items:
                path = directory / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(self._bind_ports(self._resolve_services(data[item["key"]]), pod.ports))
            mounts[mount["mountPath"].rstrip("/")] = str(directory)
        return mounts

    def _secret(self, name: str) -> dict[str, str]:
        data = self.core.read_namespaced_secret(name, self.namespace).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _configmap(self, name: str) -> dict[str, str]:
        return self.core.read_namespaced_config_map(name, self.namespace).data or {}

    def _env(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            data = (self._configmap(source["configMapRef"]["name"]) if "configMapRef" in source
                    else self._secret(source["secretRef"]["name"]))
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for var in container.get("env", []):
            if "valueFrom" not in var:
                env[var["name"]] = _expand(var.get("value", ""), env)
                continue
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                env[var["name"]] = self._secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                env[var["name"]] = self._configmap(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
            else:
                raise ValueError(f"unsupported valueFrom {ref}")
        return env

    def _argv_and_env(self, pod: Pod) -> tuple[list[str], dict[str, str]]:
        container = pod.container
        image = self.images[container["image"].rsplit("/", 1)[-1].split(":")[0]]
        if not container.get("command"):
            raise ValueError(f"{pod.deployment}: a container without command runs its image's entrypoint, unknown here")
        env = {**self.base_env, **image.env, **self._env(container)}
        mounts = self._materialise_volumes(pod)

        def translate(text: str) -> str:
            for mount, directory in mounts.items():
                text = re.sub(rf"{re.escape(mount)}(?=/|$)", directory, text)
            return self._bind_ports(self._resolve_services(_expand(text, env)), pod.ports)

        command, *args = container["command"] + container.get("args", [])
        argv = [image.executables[command]]
        for arg in args:
            argv.append(str(pod.ports[int(arg)]) if arg.isdigit() and int(arg) in pod.ports else translate(arg))
        return argv, {name: translate(value) for name, value in env.items()}

    # ------------------------------------------------------------ run

    def start(self, timeout: float) -> None:
        """Start every pod at once, as a cluster would, and wait until all are ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for pod in self.pods:
            argv, env = self._argv_and_env(pod)
            pod.server = Server(pod.deployment, argv, self.logs / f"{pod.deployment}.log", env=env,
                                cwd=self.workdir, inherit_env=False).start(lambda: True)
        deadline = time.monotonic() + timeout
        waiting = list(self.pods)
        while waiting:
            self.check_running()
            waiting = [p for p in waiting if not p.ready()]
            if waiting and time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout:.0f} s: "
                                     + "; ".join(f"{p.deployment} (log {p.server.log_path}):\n"
                                                 f"{tail(p.server.log_path, 10)}" for p in waiting))
            time.sleep(0.1)

    def check_running(self) -> None:
        """A pod that exits fails the test (a kubelet would restart it, hiding the crash)."""
        for pod in self.pods:
            if pod.server.process.poll() is not None:
                raise AssertionError(f"{pod.deployment} exited with {pod.server.process.returncode}; "
                                     f"log {pod.server.log_path}:\n{tail(pod.server.log_path)}")

    def stop(self, grace: float = 30.0) -> dict[str, int | None]:
        """SIGTERM each pod, clients before servers (the reverse of the order added); exit codes."""
        codes = {}
        for pod in reversed(self.pods):
            if pod.server is not None:
                pod.server.stop(grace)
                codes[pod.deployment] = pod.server.process.returncode
        return codes


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def _free_port_except(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    return port
