"""Storage addressed by URI: s3://bucket/prefix or a local directory, one API.

Everything that reads or writes a Space's objects goes through pyarrow.fs, so
the embedded (local directory) and cluster (S3) modes share one code path.
S3 credentials, region and endpoint come from the standard AWS variables.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a URI and the path of the URI inside it."""
    if uri.startswith("s3://"):
        rest = uri[len("s3://"):].strip("/")
        if not rest:
            raise ValueError(f"{uri}: expected s3://bucket/prefix")
        region, endpoint = _s3_settings()
        return pafs.S3FileSystem(region=region, **({"endpoint_override": endpoint} if endpoint else {})), rest
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"{uri}: unsupported storage URI (use s3://bucket/prefix or a local path)")
    path = Path(uri.removeprefix("file://")).expanduser().resolve()
    return pafs.LocalFileSystem(), str(path)


def _s3_settings() -> tuple[str, str | None]:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return region, os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


@functools.lru_cache(maxsize=4)
def _s3_client(region: str, endpoint: str | None):
    import boto3

    return boto3.client("s3", region_name=region, endpoint_url=endpoint)


def list_files(fs: pafs.FileSystem, root: str, after: str | None = None) -> list[tuple[str, int]]:
    """(path, size) of the files under root; with `after`, only those whose path sorts after it.

    On S3 that listing starts at `after` (pyarrow's listing cannot), so it
    costs requests for the newer keys alone; elsewhere it filters a full listing."""
    if after is not None and isinstance(fs, pafs.S3FileSystem):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, prefix = root.partition("/")
        pages = _s3_client(*_s3_settings()).get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", StartAfter=after.partition("/")[2])
        try:
            return [(f"{bucket}/{item['Key']}", item["Size"]) for page in pages
                    for item in page.get("Contents", ()) if not item["Key"].endswith("/")]
        except (BotoCoreError, ClientError) as err:  # as pyarrow's listing fails: an OSError
            raise OSError(f"listing s3://{root} after {after}: {err}") from err
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return [(info.path, info.size) for info in infos
            if info.type == pafs.FileType.File and (after is None or info.path > after)]


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def ensure_parent(fs: pafs.FileSystem, path: str) -> None:
    """Local directories must exist; S3 has none (creating them writes marker objects)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Whole-or-nothing write: S3 puts are atomic; locally, write then rename."""
    with open_atomic(fs, path) as out:
        out.write(data)


@contextlib.contextmanager
def open_atomic(fs: pafs.FileSystem, path: str):
    """An output stream whose file appears whole when the block ends (locally:
    a rename; on S3 the upload completes then), and locally not at all if it fails."""
    ensure_parent(fs, path)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with fs.open_output_stream(tmp) as out:
                yield out
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        with fs.open_output_stream(path) as out:
            yield out


def read_or_none(fs: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def delete_if_exists(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
