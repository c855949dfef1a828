"""Where a model comes from: a local path, a packaged name, or an s3:// URI.

An S3 model is downloaded once into the cache directory (under its sha256 when
given, so two URIs of the same file share it) and verified on every load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse

from . import catalog
from .catalog import ModelError, cache_dir, sha256_of, verify


def resolve(source: str, sha256: str = "", directory: Path | None = None) -> tuple[Path, str]:
    """The local path of a verified model file and its sha256."""
    if source.startswith("s3://"):
        path = _from_s3(source, sha256, directory or cache_dir())
    elif source in catalog.CATALOG:
        path = catalog.path_of(source, directory)
        sha256 = sha256 or catalog.CATALOG[source].sha256
    else:
        path = Path(source)
        if not path.is_file():
            known = ", ".join(sorted(catalog.CATALOG))
            raise ModelError(
                f"model {source!r} is neither a file, an s3:// URI, nor a packaged model ({known})"
            )
    if sha256:
        verify(path, sha256)
        return path, sha256
    return path, sha256_of(path)


def _from_s3(uri: str, sha256: str, directory: Path) -> Path:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise ModelError(f"{uri}: expected s3://bucket/key")
    name = sha256 or hashlib.sha256(uri.encode()).hexdigest()
    target = directory / "s3" / f"{name}.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    try:
        boto3.client("s3").download_file(bucket, key, str(partial))
    except (BotoCoreError, ClientError) as err:
        partial.unlink(missing_ok=True)
        raise ModelError(f"cannot download {uri}: {err}") from err
    try:
        verify(partial, sha256)
    except ModelError:
        partial.unlink()
        raise
    partial.replace(target)
    return target
