"""The images, checked from their Dockerfiles without a Docker engine: Deployment.sh builds
every image the cluster runs; bases are pinned; Python images install the pinned lock; the
build context holds what each COPY reads; and every container command of our images —
in deploy/ and in the children the operator renders — exists in the image that runs it,
with flags its program accepts and imports its installed packages satisfy."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy import support
from deploy.support import DEPLOY, ROOT, operator_children, operator_env, parse_dockerfile, render

from monologue.model_server.catalog import CATALOG
from monologue.operator.settings import Settings

VENV_BIN = Path(sys.executable).parent
DIGEST = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
# Imports inside functions that the cluster image does not need, and why.
OPTIONAL_IMPORTS = {
    "drain3": "only `monologue eval templates` (the Drain3 baseline) imports it",
    "monologue.model_server": "embedded mode runs models in process; cluster pods call model servers",
}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(DEPLOY)


@pytest.fixture(scope="module")
def images() -> dict[str, Path]:
    return support.script_images()


def our_containers(rendered: list[dict]) -> list[tuple[str, dict]]:
    """(where, container) for every container running one of our images, in deploy/ and
    in the children the operator renders for the samples."""
    found = []
    for obj in [*rendered, *operator_children(rendered)]:
        for container in support.containers(obj):
            if container["image"].startswith("monologue/"):
                found.append((f"{obj['kind']}/{obj['metadata']['name']}", container))
    return found


# ---------------------------------------------------------------- which images


def test_deployment_sh_builds_every_image_the_cluster_runs(rendered, images):
    settings = Settings.from_env(operator_env(rendered))
    running = {c["image"] for _, c in our_containers(rendered)}
    running |= {settings.agent_image, settings.shipper_image, settings.model_server_image}
    defaults = Settings.from_env({})
    assert {defaults.agent_image, defaults.shipper_image, defaults.model_server_image} <= running
    assert running == set(images)
    for dockerfile in images.values():
        assert dockerfile.exists(), dockerfile


def test_every_base_image_is_pinned_by_tag_and_digest(images):
    for dockerfile in images.values():
        parsed = parse_dockerfile(dockerfile)
        stage_names = {s.name for s in parsed.stages if s.name}
        for stage in parsed.stages:
            assert stage.base in stage_names or DIGEST.match(stage.base), f"{dockerfile}: FROM {stage.base}"


def test_third_party_images_have_explicit_versions(rendered):
    for obj in rendered:
        for container in support.containers(obj):
            image = container["image"]
            tag = image.split("@")[0].rsplit(":", 1)
            assert len(tag) == 2 and tag[1] not in ("latest", ""), image
            assert re.search(r"\d", tag[1]), f"{image}: a version tag"


# ---------------------------------------------------------------- Dockerfiles


def test_the_build_context_holds_what_every_copy_reads(images):
    patterns = support.dockerignore_patterns()
    assert not [p for p in patterns if p.startswith("!")], "no exceptions: support.ignored does not handle them"
    for dockerfile in images.values():
        for stage in parse_dockerfile(dockerfile).stages:
            for source in support.copy_sources(stage):
                assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} (the context is the repository root)"
                assert not support.ignored(source, patterns), f"{dockerfile}: COPY {source} is in .dockerignore"


def test_the_context_leaves_out_environments_and_caches():
    patterns = support.dockerignore_patterns()
    for path in [".venv/bin/python", ".git/HEAD", "build/test-logs/x", "agent/monologue/agent/__pycache__/x.pyc",
                 "operator/monologue_operator.egg-info/PKG-INFO", "operator/tests/monologue_operator_tests/conftest.py"]:
        assert support.ignored(path, patterns), path
    for path in ["agent/pyproject.toml", "proto/python/monologue/api/v1/agent_pb2.py", "requirements.lock",
                 "loki-shipper-go/cmd/loki-shipper/main.go", "model-server/monologue/model_server/catalog.py"]:
        assert not support.ignored(path, patterns), path


def test_runtime_images_run_as_a_numeric_non_root_user_without_build_tools(images):
    for dockerfile in images.values():
        final = parse_dockerfile(dockerfile).final
        users = final.all("USER")
        assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), f"{dockerfile}: USER {users}"
        runs = " ".join(final.all("RUN"))
        for tool in ("build-essential", "cmake", "gcc", "golang"):
            assert tool not in runs, f"{dockerfile}: {tool} in the runtime stage"
        assert not final.base.startswith("golang"), dockerfile


def test_python_images_install_from_the_lock(images):
    for dockerfile in images.values():
        parsed = parse_dockerfile(dockerfile)
        if not parsed.pip_installs():
            continue
        runs = [r for s in parsed.stages for r in s.all("RUN") if "pip install" in r]
        assert runs and all("--constraint requirements.lock" in r for r in runs), dockerfile
        assert "requirements.lock" in [s for st in parsed.stages for s in support.copy_sources(st)]


def test_the_model_server_builds_llama_cpp_portable_at_the_locked_version(images):
    dockerfile = images["monologue/model-server:0.1.0"]
    text = dockerfile.read_text()
    assert "-DGGML_NATIVE=OFF" in text
    pattern = re.search(r"grep -i '([^']+)' requirements.lock", text).group(1)
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    matches = [line for line in lock if re.search(pattern, line, re.IGNORECASE)]
    assert len(matches) == 1 and matches[0].startswith("llama_cpp_python==")


def test_the_model_server_image_carries_the_models_of_the_samples(rendered, images):
    baked = parse_dockerfile(images["monologue/model-server:0.1.0"]).final
    arg = next(a for s in parse_dockerfile(images["monologue/model-server:0.1.0"]).stages for a in s.all("ARG")
               if a.startswith("PACKAGED_MODELS="))
    names = set(arg.split("=", 1)[1].strip('"').split())
    assert names <= set(CATALOG)
    used = {o["spec"]["model"]["packaged"] for o in rendered if o["kind"] == "ModelServer"}
    assert used <= names, "the sample ModelServers start without downloading"
    assert any("/home/monologue/.cache/monologue" in c for c in baked.all("COPY"))
    assert "MONOLOGUE_CACHE=/home/monologue/.cache/monologue" in " ".join(baked.all("ENV"))


# ---------------------------------------------------------------- what each Python image installs


def local_projects() -> dict[str, Path]:
    """distribution name -> project directory, for the components installed from the tree."""
    projects = {}
    for pyproject in ROOT.glob("*/pyproject.toml"):
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        projects[canonicalize_name(name)] = pyproject.parent
    return projects


def pyproject(directory: Path) -> dict:
    return tomllib.loads((directory / "pyproject.toml").read_text())["project"]


def image_closure(install_args: list[str]) -> tuple[set[str], set[str]]:
    """(local project dirs, every third-party distribution) that `pip install ARGS` installs,
    from the dependency metadata of the development environment (the same lock)."""
    projects = local_projects()
    local, third_party, seen = set(), set(), set()
    stack = []
    for arg in install_args:
        if arg.startswith("./"):
            stack.append(canonicalize_name(pyproject(ROOT / arg[2:])["name"]))
        elif arg.startswith("/") and arg.endswith(".whl"):  # a wheel built in an earlier stage
            stack.append(Path(arg).name.split("-")[0])
        else:
            stack.append(arg)
    while stack:
        requirement = Requirement(stack.pop())
        name = canonicalize_name(requirement.name)
        key = (name, tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        if name in projects:
            local.add(str(projects[name].relative_to(ROOT)))
            stack += pyproject(projects[name]).get("dependencies", [])
            continue
        third_party.add(name)
        for dependency in md.requires(name) or []:
            dep = Requirement(dependency)
            if dep.marker is None or any(
                dep.marker.evaluate({**default_environment(), "extra": extra}) for extra in (requirement.extras or {""})
            ):
                stack.append(dependency)
    return local, third_party


def lock_names() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(line.split("==")[0]) for line in lines if "==" in line}


def python_images(images: dict[str, Path]) -> dict[str, list[str]]:
    """image -> the arguments of its pip install (one install per Python image)."""
    out = {}
    for image, dockerfile in images.items():
        installs = parse_dockerfile(dockerfile).pip_installs()
        if installs:
            assert len(installs) == 1, f"{dockerfile}: one pip install"
            out[image] = installs[0]
    return out


def test_every_distribution_a_python_image_installs_is_pinned_by_the_lock(images):
    pinned = lock_names()
    for image, args in python_images(images).items():
        local, third_party = image_closure(args)
        assert local, image
        assert third_party - pinned == set(), f"{image} would install unpinned distributions"


def imports_of(directory: Path) -> tuple[set[str], set[str]]:
    """(module-level, function-level) imports of a project's code outside the standard library;
    monologue.* as its subpackage (monologue.api), others as their top-level module."""
    top, lazy = set(), set()
    for path in directory.rglob("*.py"):
        if "tests" in path.relative_to(directory).parts:
            continue
        tree = ast.parse(path.read_text())
        module_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] in sys.stdlib_module_names:
                    continue
                module = ".".join(parts[:2]) if parts[0] == "monologue" else parts[0]
                (top if id(node) in module_level else lazy).add(module)
    return top, lazy


def test_the_code_an_image_installs_finds_every_module_it_imports(images):
    distributions_of = md.packages_distributions()
    for image, args in python_images(images).items():
        local, third_party = image_closure(args)
        provided = {f"monologue.{p.name}" for d in local for p in (ROOT / d).glob("**/monologue/*") if p.is_dir()}
        for module in [m for d in local for m in imports_of(ROOT / d)[0]]:
            if module.startswith("monologue."):
                assert module in provided, f"{image}: imports {module}, which it does not install"
            else:
                owners = {canonicalize_name(d) for d in distributions_of.get(module, [])}
                assert owners & third_party, f"{image}: imports {module} ({owners or 'unknown'}) at module level, not installed"
        for module in [m for d in local for m in imports_of(ROOT / d)[1]]:
            owners = {canonicalize_name(d) for d in distributions_of.get(module, [])}
            if module in provided or owners & third_party:
                continue
            assert module in OPTIONAL_IMPORTS, f"{image}: a function imports {module}, which the image lacks"


# ---------------------------------------------------------------- commands


def console_scripts(args: list[str]) -> dict[str, str]:
    """command name -> where it comes from, for what `pip install ARGS` puts on PATH."""
    local, third_party = image_closure(args)
    scripts = {name: d for d in local for name in pyproject(ROOT / d).get("scripts", {})}
    for dist in third_party:
        for entry in md.distribution(dist).entry_points.select(group="console_scripts"):
            scripts[entry.name] = dist
    return {**scripts, "python": "the base image"}


def go_binaries(dockerfile: Path) -> dict[str, Path]:
    """path in the image -> the Go main package built into it."""
    parsed = parse_dockerfile(dockerfile)
    outputs = {}
    for stage in parsed.stages:
        for run in stage.all("RUN"):
            match = re.search(r"go build .*-o (\S+) (\./\S+)", run)
            if match:
                workdir = stage.all("WORKDIR")[-1]
                copied = [c.split() for c in stage.all("COPY") if c.split()[-1] in (".", workdir, workdir + "/")]
                source_dir = ROOT / copied[-1][-2]
                outputs[match.group(1)] = source_dir / match.group(2)
    binaries = {}
    for copy in parsed.final.all("COPY"):
        words = copy.split()
        if words[0].startswith("--from=") and words[1] in outputs:
            binaries[words[2]] = outputs[words[1]]
    return binaries


def test_every_container_command_of_our_images_exists_in_its_image(rendered, images):
    checked = 0
    for where, container in our_containers(rendered):
        dockerfile = images[container["image"]]
        parsed = parse_dockerfile(dockerfile)
        command = container.get("command") or parsed.entrypoint()
        installs = parsed.pip_installs()
        if installs:
            scripts = console_scripts(installs[0])
            assert command[0] in scripts, f"{where}: {command[0]} is not installed by {dockerfile.relative_to(ROOT)}"
            if "-m" in command:
                module = command[command.index("-m") + 1]
                local, _ = image_closure(installs[0])
                files = [ROOT / d / (module.replace(".", "/") + ".py") for d in local]
                assert any(f.exists() for f in files), f"{where}: python module {module} is not in the image"
        else:
            binaries = go_binaries(dockerfile)
            assert command[0] in binaries, f"{where}: {command[0]} is not built into {dockerfile.relative_to(ROOT)}"
            package = binaries[command[0]]
            assert any("package main" in f.read_text() for f in package.glob("*.go")), package
        checked += 1
    kinds = {where.split("/")[1] for where, _ in our_containers(rendered)}
    assert checked >= 7 and {"monologue-operator", "s3-bucket", "default-logs-indexer", "default-logs-shipper",
                             "default-sre-agent", "minilm-model", "smollm-model"} <= kinds


def test_the_flags_of_python_commands_are_accepted(rendered):
    # The operator's children call our CLIs with flags; each must be in the CLI's help.
    # (/loki-shipper's rendered flags are run by the real binary in the operator's tests.)
    seen = set()
    for where, container in our_containers(rendered):
        command = container.get("command") or []
        if not command or command[0] not in ("monologue", "monologue-model-server"):
            continue
        words = [*command[1:], *container.get("args", [])]
        subcommands = []
        for word in words:
            if word.startswith("-"):
                break
            subcommands.append(word)
        help_text = subprocess.run([str(VENV_BIN / command[0]), *subcommands, "--help"],
                                   capture_output=True, text=True, timeout=120)
        assert help_text.returncode == 0, f"{where}: {help_text.stderr}"
        for flag in [w.split("=")[0] for w in words if w.startswith("--")]:
            assert re.search(rf"(^|\s|,){re.escape(flag)}\b", help_text.stdout), f"{where}: {command[0]} {' '.join(subcommands)} has no {flag}"
        seen.add(" ".join([command[0], *subcommands]))
    assert seen == {"monologue indexer", "monologue agent serve", "monologue-model-server"}
