"""What the deploy tests read: the rendered manifests, the images Deployment.sh builds,
and the Dockerfiles (stages, COPY sources, pip and go build lines), parsed from the files."""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.process import ROOT, binary

from monologue.operator import agent as agent_kind
from monologue.operator import modelserver as modelserver_kind
from monologue.operator import pods
from monologue.operator import space as space_kind
from monologue.operator.settings import Settings

DEPLOY = ROOT / "deploy"
CRDS = ROOT / "crds"
SCRIPT = ROOT / "Deployment.sh"
NAMESPACE = "monologue"


def kubectl_binary() -> Path:
    return binary("kubectl", "KUBERNETES_VERSION")


def kubectl(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(kubectl_binary()), *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def render(path: Path = DEPLOY) -> list[dict]:
    """`kubectl kustomize` of a kustomization directory, as objects."""
    return [d for d in yaml.safe_load_all(kubectl("kustomize", str(path)).stdout) if d]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/ and crds/ (kustomization files are not objects)."""
    files = [*DEPLOY.rglob("*.yaml"), *CRDS.rglob("*.yaml")]
    return sorted(f for f in files if f.name != "kustomization.yaml")


def containers(obj: dict) -> list[dict]:
    """The containers of a workload (Deployment, StatefulSet, DaemonSet, Job)."""
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} in the rendered manifests"
    return matches[0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def operator_env(objects: list[dict]) -> dict[str, str]:
    return env_of(containers(find(objects, "Deployment", "monologue-operator"))[0])


def operator_children(objects: list[dict]) -> list[dict]:
    """What the operator renders for the samples, with the settings of deploy/'s operator."""
    settings = Settings.from_env(operator_env(objects))
    spaces = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Space"}
    children = []
    for obj in objects:
        if obj["kind"] == "ModelServer":
            children += [modelserver_kind.deployment(obj, settings), modelserver_kind.service(obj)]
        elif obj["kind"] == "Space":
            storage = {**obj["spec"]["storage"], "space": obj["metadata"]["name"]}
            text = pods.to_json(space_kind.space_config(obj, storage, settings))
            children += [space_kind.configmap(obj, text), space_kind.indexer(obj, storage, text, settings),
                         space_kind.shipper(obj, storage, settings)]
        elif obj["kind"] == "Agent":
            configs = []
            for name in obj["spec"]["spaces"]:
                storage = {**spaces[name]["spec"]["storage"], "space": name}
                configs.append(space_kind.space_config(spaces[name], storage, settings))
            text = pods.to_json(agent_kind.agent_config(obj, configs))
            credentials = spaces[obj["spec"]["spaces"][0]]["spec"]["storage"].get("credentials")
            children += [agent_kind.configmap(obj, text), agent_kind.deployment(obj, credentials, text, settings),
                         agent_kind.service(obj)]
    return children


def script_images() -> dict[str, Path]:
    """image -> Dockerfile, as Deployment.sh builds them (read by sourcing the script)."""
    out = subprocess.run(
        ["bash", "-c", f'. {shlex.quote(str(SCRIPT))} && for e in "${{IMAGES[@]}}"; do echo "$e $TAG"; done'],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    images = {}
    for line in out.splitlines():
        entry, tag = line.split()
        name, dockerfile = entry.split(":", 1)
        images[f"monologue/{name}:{tag}"] = ROOT / dockerfile
    return images


# ---------------------------------------------------------------- Dockerfiles


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # ARGs declared before the first FROM, with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def entrypoint(self) -> list[str]:
        import json

        return json.loads(self.final.all("ENTRYPOINT")[-1])

    def pip_installs(self) -> list[list[str]]:
        """The positional arguments of every `pip install` (local paths and requirement names)."""
        installs = []
        for stage in self.stages:
            for run in stage.all("RUN"):
                for command in re.split(r"&&|;", run):
                    words = shlex.split(command)
                    if "pip" in " ".join(words[:3]) and "install" in words:
                        installs.append(_positionals(words[words.index("install") + 1:]))
        return installs


_OPTIONS_WITH_VALUES = {"-c", "--constraint", "-r", "--requirement", "-f", "--find-links", "-i", "--index-url"}


def _positionals(words: list[str]) -> list[str]:
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in _OPTIONS_WITH_VALUES:
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


def parse_dockerfile(path: Path) -> Dockerfile:
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not current):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args, stages = {}, []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and instruction == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return Dockerfile(path, args, stages)


def copy_sources(stage: Stage) -> list[str]:
    """Sources of the COPY instructions that read the build context (not --from=)."""
    sources = []
    for args in stage.all("COPY"):
        words = args.split()
        if any(w.startswith("--from=") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources += words[:-1]
    return sources


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignore_regex(pattern: str) -> re.Pattern:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.compile(regex + r"(?:/.*)?")


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `relative` (a path in the build context) out of the context.
    The file has no `!` exceptions (a test checks), so the last match needs no tracking."""
    relative = relative.strip("/")
    return any(_ignore_regex(p.strip("/")).fullmatch(relative) for p in patterns)
