"""A Space: a named slice of the logs, queried with DuckDB.

A Space reads the Parquet objects under its storage URI (written by the
shipper or by file ingest) and exposes two DuckDB views:

  logs       one row per line (the shared schema) plus its template_id
  templates  one row per template: text, lines, first_seen, last_seen

and, once every indexed object has one, the table template_summaries
(summaries.py): recall's figures without a scan.

A view Space is another Space plus a SQL filter: the same objects, no copy.
DuckDB's httpfs extension cannot be fetched everywhere, so DuckDB scans
pyarrow datasets, and pyarrow.fs reaches S3 or the local disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import logschema, storage
from .summaries import SUMMARY_SCHEMA

INDEX_DIR = "_index"  # beside the data; pyarrow datasets skip "_" prefixes
LINE_TEMPLATES = pa.schema([("line_id", pa.string()), ("template_id", pa.string())])
TEMPLATE_TEXTS = pa.schema([("template_id", pa.string()), ("template", pa.string())])
LINES_DIR, SUMMARIES_DIR = "lines", "summaries"  # under INDEX_DIR, one file per indexed object
TEMPLATE_VECTORS = "template_vectors.parquet"  # under INDEX_DIR: template_id, vector


class SpaceNotFound(LookupError):
    pass


@dataclass
class Space:
    name: str
    uri: str  # storage of the Parquet objects (a view: its source Space's)
    where: str = ""  # SQL filter over `logs`, for a view Space
    collection: str = ""  # vector store collection of this Space's memory
    extra_patterns: list[str] = field(default_factory=list)

    @property
    def index_uri(self) -> str:
        return storage.join(self.uri, INDEX_DIR)

    def _dataset(self, relative: str, schema: pa.Schema) -> ds.Dataset:
        fs, root = storage.filesystem(self.uri)
        path = storage.join(root, relative) if relative else root
        try:
            info = fs.get_file_info(path)
        except OSError:
            info = None
        if info is None or info.type == pa.fs.FileType.NotFound:
            return ds.dataset(pa.table({f.name: pa.array([], f.type) for f in schema}, schema=schema))
        return ds.dataset(path, filesystem=fs, format="parquet", schema=schema,
                          partitioning="hive" if not relative else None,
                          exclude_invalid_files=False)

    def index_version(self) -> tuple | None:
        """Changes whenever the indexer finished an object (it writes state.json last):
        a connection made before then misses objects and reads rewritten index files."""
        fs, root = storage.filesystem(self.uri)
        info = fs.get_file_info(storage.join(root, INDEX_DIR, "state.json"))
        return None if info.type == pa.fs.FileType.NotFound else (info.mtime_ns, info.size)

    def template_vectors(self) -> tuple[list[str], np.ndarray]:
        """The indexer's template ids and their vectors (one row each); none before the first index."""
        fs, root = storage.filesystem(self.uri)
        data = storage.read_or_none(fs, storage.join(root, INDEX_DIR, TEMPLATE_VECTORS))
        if not data:
            return [], np.zeros((0, 0), np.float32)
        table = pq.read_table(pa.BufferReader(data))
        ids = table["template_id"].to_pylist()
        flat = table["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return ids, np.asarray(flat, np.float32).reshape(len(ids), -1)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the `logs` and `templates` views of this Space."""
        con = duckdb.connect(config={"threads": str(os.cpu_count() or 1)})
        raw = self._dataset("", logschema.arrow_schema())
        con.register("raw_logs", raw)
        con.register("line_templates", self._dataset(f"{INDEX_DIR}/{LINES_DIR}", LINE_TEMPLATES))
        con.register("template_texts", self._dataset(f"{INDEX_DIR}/templates", TEMPLATE_TEXTS))
        where = f"WHERE {self.where}" if self.where else ""
        con.execute(
            f"""CREATE VIEW logs AS
                SELECT r.*, i.template_id
                FROM raw_logs r LEFT JOIN line_templates i USING (line_id) {where}"""
        )
        con.execute(
            """CREATE VIEW templates AS
               SELECT l.template_id, any_value(t.template) AS template, count(*) AS lines,
                      min(l.timestamp) AS first_seen, max(l.timestamp) AS last_seen
               FROM logs l LEFT JOIN template_texts t USING (template_id)
               WHERE l.template_id IS NOT NULL
               GROUP BY l.template_id"""
        )
        self._load_summaries(con)
        # The views are all a Space's SQL needs: no file or network access
        # from a filter or a question's SQL.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con


    def _load_summaries(self, con: duckdb.DuckDBPyConnection) -> None:
        """template_summaries, in memory, if every indexed object has its summary.

        Not for a view Space: summaries count all of the source's lines, and a
        view keeps some. Listed once, so the files read are the files checked."""
        if self.where:
            return
        fs, root = storage.filesystem(self.uri)
        summaries = self._index_files(fs, root, SUMMARIES_DIR)
        if not summaries or not set(summaries) >= set(self._index_files(fs, root, LINES_DIR)):
            return
        con.register("object_summaries", ds.dataset(list(summaries.values()), filesystem=fs,
                                                    format="parquet", schema=SUMMARY_SCHEMA))
        con.execute("CREATE TEMP TABLE template_summaries AS SELECT * FROM object_summaries")
        con.unregister("object_summaries")

    @staticmethod
    def _index_files(fs: pafs.FileSystem, root: str, directory: str) -> dict[str, str]:
        selector = pafs.FileSelector(storage.join(root, INDEX_DIR, directory), allow_not_found=True)
        return {info.base_name: info.path for info in fs.get_file_info(selector)
                if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")}


class SpaceRegistry:
    """Embedded Spaces under one directory: <home>/spaces/<name>/{data,memory,space.json}."""

    def __init__(self, home: Path | None = None):
        self.home = Path(home or os.environ.get("MONOLOGUE_HOME") or Path.home() / ".local/share/monologue")

    def dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid Space name {name!r}")
        return self.home / "spaces" / name

    def create(self, name: str, view_of: str = "", where: str = "") -> Space:
        directory = self.dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        if view_of:
            self.get(view_of)  # must exist
            (directory / "space.json").write_text(json.dumps({"view": {"space": view_of, "where": where}}))
        return self.get(name)

    def get(self, name: str) -> Space:
        directory = self.dir(name)
        if not directory.is_dir():
            known = ", ".join(self.names()) or "none yet"
            raise SpaceNotFound(f"no Space {name!r} (known: {known}); create one with `monologue ingest`")
        config_file = directory / "space.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        if view := config.get("view"):
            source = self.get(view["space"])
            where = f"({source.where}) AND ({view['where']})" if source.where else view["where"]
            return Space(name, source.uri, where, collection=source.collection)
        return Space(name, str(directory / "data"), collection=name)

    def memory_dir(self, space: Space) -> Path:
        return self.dir(space.collection or space.name) / "memory"

    def names(self) -> list[str]:
        root = self.home / "spaces"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
