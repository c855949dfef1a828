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

import bisect
import datetime as dt
import json
import os
import re
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
# A segment's objects: every object it indexes; merged: this merge replaced the object's own files;
# stored_in: the combined object that holds the object's lines now (compaction.py), if any.
SEGMENT_OBJECTS_SCHEMA = pa.schema([("object", pa.string()), ("size", pa.int64()), ("merged", pa.bool_()),
                                    ("stored_in", pa.string())])
LINES_DIR, SUMMARIES_DIR = "lines", "summaries"  # under INDEX_DIR, one file per indexed object
SEGMENTS_DIR = "segments"  # under INDEX_DIR: merged index files (compaction.py)
TEMPLATE_VECTORS = "template_vectors.parquet"  # under INDEX_DIR: template_id, vector
STATE_FILE = "state.json"  # under INDEX_DIR: the IndexState
CHECKPOINT_FILE = "_checkpoint.json"  # the shipper's, beside the objects: complete_until
COMBINED_TAG = "_combined-"  # in the names of the objects compaction combines small ones into


def object_file(key: str) -> str:
    """The name of an object's own index files (lines/, summaries/): its key, flattened."""
    return key.replace("/", "__")


# <start>_<end>[_tag].parquet, UTC: the shipper's names (20240101T000000Z) and ingest's (with microseconds)
_SPAN_NAME = re.compile(r"(\d{8}T\d{6})(?:\.\d+)?Z_(\d{8}T\d{6})(?:\.\d+)?Z(?:_[^/]*)?\.parquet")


def object_span(key: str) -> tuple[int, int] | None:
    """[start, end) in ns of the lines an object can hold, read from its name and
    widened to whole seconds (the shipper's end is exclusive, ingest's the last
    line's); None for a name without one, whose object may hold any time."""
    match = _SPAN_NAME.fullmatch(key.rsplit("/", 1)[-1])
    if not match:
        return None
    start, end = (int(dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc).timestamp())
                  for stamp in match.groups())
    return start * 10**9, (end + 1) * 10**9


def time_range(since_ns: int | None = None, until_ns: int | None = None) -> tuple[int, int]:
    """[since, until) in ns, an open end as far as nanoseconds go."""
    return (-(2 ** 63) if since_ns is None else since_ns, 2 ** 63 - 1 if until_ns is None else until_ns)


def merged_spans(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[since, until) intervals, sorted and joined where they meet."""
    out: list[tuple[int, int]] = []
    for since, until in sorted(intervals):
        if out and since <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], until))
        else:
            out.append((since, until))
    return out


def span_meets(merged: list[tuple[int, int]], span: tuple[int, int]) -> bool:
    """Whether [start, end) overlaps any of these merged_spans() intervals."""
    i = bisect.bisect_left(merged, (span[1],))  # the intervals that start before the span ends
    return i > 0 and merged[i - 1][1] > span[0]


def _inside_a_combined_object(keys: list[str]) -> bool:
    """Whether the span of any of these objects lies inside that of another,
    combined one (compaction.py) of the same directory."""
    combined: dict[str, list[tuple[int, int, str]]] = {}
    for key in keys:
        if COMBINED_TAG in key and (span := object_span(key)):
            combined.setdefault(key.rpartition("/")[0], []).append((*span, key))
    if not combined:
        return False
    for spans in combined.values():
        spans.sort()
    for key in keys:
        spans, span = combined.get(key.rpartition("/")[0]), object_span(key)
        if spans and span:
            i = bisect.bisect_right(spans, (span[0], 2 ** 63))  # those starting at or before it
            if any(spans[j][1] >= span[1] and spans[j][2] != key for j in range(max(i - 2, 0), i)):
                return True
    return False


def segment_file(name: str, kind: str) -> str:
    """A segment's file of one kind (lines, summaries, objects), relative to INDEX_DIR."""
    return f"{SEGMENTS_DIR}/{name}.{kind}.parquet"


@dataclass
class IndexState:
    """What the indexer has done, written last after each step (state.json).

    Readers open the index files it names, never a listing: so a compaction,
    which writes a segment and then names it in place of its members, is seen
    whole or not at all."""

    objects: dict[str, int] = field(default_factory=dict)  # indexed, not in a segment: key -> size
    inflight: str | None = None  # being indexed: its files are written, its lines may be in the store
    segments: dict[str, int] = field(default_factory=dict)  # segment name -> level
    next_segment: int = 0
    # (since, segment, its member segments): what a merge replaced, to delete after a grace period
    garbage: list[tuple[float, str, list[str]]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | None) -> "IndexState":
        state = json.loads(data or b"{}")
        return cls(state.get("objects", {}), state.get("inflight"), state.get("segments", {}),
                   state.get("next_segment", 0), [tuple(g) for g in state.get("garbage", [])])

    def dump(self) -> bytes:
        return json.dumps({"objects": self.objects, "inflight": self.inflight, "segments": self.segments,
                           "next_segment": self.next_segment, "garbage": self.garbage}).encode()

    def object_keys(self) -> list[str]:
        """The objects whose own index files are current: indexed or in flight."""
        return list(self.objects) + ([self.inflight] if self.inflight and self.inflight not in self.objects else [])

    def files(self, kind: str) -> list[str]:
        """The current index files of a kind ("lines" or "summaries"), relative to INDEX_DIR."""
        directory = {"lines": LINES_DIR, "summaries": SUMMARIES_DIR}[kind]
        return ([segment_file(name, kind) for name in sorted(self.segments)]
                + [f"{directory}/{object_file(key)}" for key in self.object_keys()])


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
        """The Parquet files under a directory (relative to the Space), listed."""
        fs, root = storage.filesystem(self.uri)
        path = storage.join(root, relative)
        try:
            info = fs.get_file_info(path)
        except OSError:
            info = None
        if info is None or info.type == pa.fs.FileType.NotFound:
            return ds.dataset(pa.table({f.name: pa.array([], f.type) for f in schema}, schema=schema))
        return ds.dataset(path, filesystem=fs, format="parquet", schema=schema, exclude_invalid_files=False)

    def index_version(self) -> tuple | None:
        """Changes whenever the indexer finished a step (it writes state.json last):
        a connection made before then misses objects and reads replaced index files."""
        fs, root = storage.filesystem(self.uri)
        info = fs.get_file_info(storage.join(root, INDEX_DIR, STATE_FILE))
        return None if info.type == pa.fs.FileType.NotFound else (info.mtime_ns, info.size)

    def index_state(self) -> IndexState:
        fs, root = storage.filesystem(self.uri)
        return IndexState.parse(storage.read_or_none(fs, storage.join(root, INDEX_DIR, STATE_FILE)))

    def _index_dataset(self, files: list[str], schema: pa.Schema) -> ds.Dataset:
        """Exactly these index files (relative to INDEX_DIR), never a listing (see IndexState)."""
        return self._files_dataset([storage.join(INDEX_DIR, f) for f in files], schema)

    def _files_dataset(self, relative: list[str], schema: pa.Schema) -> ds.Dataset:
        """Exactly these files, not even looked up before the scan (a request each
        on S3): a missing one fails the query (duckdb.InvalidInputException)."""
        if not relative:
            return ds.dataset(pa.table({f.name: pa.array([], f.type) for f in schema}, schema=schema))
        fs, root = storage.filesystem(self.uri)
        return ds.FileSystemDataset.from_paths([storage.join(root, path) for path in relative], schema=schema,
                                               format=ds.ParquetFileFormat(), filesystem=fs)

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

    def segment_objects(self, name: str) -> list[tuple[str, str | None]]:
        """The objects a segment indexes: (key, the combined object holding its lines or None)."""
        fs, root = storage.filesystem(self.uri)
        table = pq.read_table(storage.join(root, INDEX_DIR, segment_file(name, "objects")), filesystem=fs,
                              columns=["object", "stored_in"], schema=SEGMENT_OBJECTS_SCHEMA)
        return list(zip(table["object"].to_pylist(), table["stored_in"].to_pylist()))

    def connect(self, lines: bool = True, since_ns: int | None = None,
                until_ns: int | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the index's tables (line_templates,
        template_texts, template_summaries) and, with `lines`, the `logs` and
        `templates` views over the Space's objects, which are listed only then.
        With a time range, `logs` holds the lines inside it, read from the
        objects whose names' spans meet it alone."""
        con = duckdb.connect(config={"threads": str(os.cpu_count() or 1)})
        state = self.index_state()
        con.register("line_templates", self._index_dataset(state.files("lines"), LINE_TEMPLATES))
        con.register("template_texts", self._dataset(f"{INDEX_DIR}/templates", TEMPLATE_TEXTS))
        if lines:
            since, until = time_range(since_ns, until_ns)
            objects = self._listed_objects_meeting(state, since, until)
            ranged = since_ns is not None or until_ns is not None
            self._create_logs(con, self._files_dataset(objects, logschema.arrow_schema()),
                              f"epoch_ns(r.timestamp) >= {int(since)} AND epoch_ns(r.timestamp) < {int(until)}"
                              if ranged else "")
        if lines:
            con.execute(
                """CREATE VIEW templates AS
                   SELECT l.template_id, any_value(t.template) AS template, count(*) AS lines,
                          min(l.timestamp) AS first_seen, max(l.timestamp) AS last_seen
                   FROM logs l LEFT JOIN template_texts t USING (template_id)
                   WHERE l.template_id IS NOT NULL
                   GROUP BY l.template_id"""
            )
        self._load_summaries(con, state)
        return self._locked(con)

    def existing(self, objects: list[str]) -> list[str]:
        """Those of these objects that storage still has."""
        fs, root = storage.filesystem(self.uri)
        infos = fs.get_file_info([storage.join(root, key) for key in objects])
        return [key for key, info in zip(objects, infos) if info.type == pafs.FileType.File]

    def connect_objects(self, objects: list[str], index_files: list[str]) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection whose `logs` view reads exactly these objects,
        their template ids from these index files (relative to INDEX_DIR): a
        scan of part of the Space, with no listing."""
        con = duckdb.connect(config={"threads": str(os.cpu_count() or 1)})
        con.register("line_templates", self._index_dataset(index_files, LINE_TEMPLATES))
        self._create_logs(con, self._files_dataset(objects, logschema.arrow_schema()))
        return self._locked(con)

    def _listed_objects_meeting(self, state: IndexState, since: int, until: int) -> list[str]:
        """The Space's objects, listed, that may hold a line in [since, until),
        each line in one of them: of small objects that compaction combined, as
        the index read before the listing has it, either the parts (the combined
        object is not named yet) or the combined object (the parts may not be
        deleted yet), never both."""
        fs, root = storage.filesystem(self.uri)
        keys = [path[len(root):].lstrip("/") for path, _ in storage.list_files(fs, root)]
        keys = [key for key in keys if key.endswith(".parquet")
                and not any(part[:1] in "_." for part in key.split("/"))]  # as a dataset skips
        keys = [key for key in keys if (span := object_span(key)) is None or span_meets([(since, until)], span)]
        if _inside_a_combined_object(keys):
            # Parts not deleted yet, or a combined object that a crash left unnamed:
            # the index says which holds the lines (else, as usual, no segment is read).
            stored_in = {key: holder for name in state.segments for key, holder in self.segment_objects(name)
                         if holder is not None and key not in state.objects}  # not indexed again since
            named = set(stored_in.values())
            keys = [key for key in keys if key not in stored_in and (COMBINED_TAG not in key or key in named)]
        return keys

    def _create_logs(self, con: duckdb.DuckDBPyConnection, raw_logs: ds.Dataset, time_filter: str = "") -> None:
        con.register("raw_logs", raw_logs)
        conditions = [f"({condition})" for condition in (self.where, time_filter) if condition]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        con.execute(
            f"""CREATE VIEW logs AS
                SELECT r.*, i.template_id
                FROM raw_logs r LEFT JOIN line_templates i USING (line_id) {where}"""
        )

    @staticmethod
    def _locked(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        # The views are all a Space's SQL needs: no file or network access
        # from a filter or a question's SQL.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con


    def _load_summaries(self, con: duckdb.DuckDBPyConnection, state: IndexState) -> None:
        """template_summaries, in memory, if every indexed object has its summary
        (a segment always has; an object indexed by an older monologue may not).

        Not for a view Space: summaries count all of the source's lines, and a
        view keeps some."""
        if self.where:
            return
        fs, root = storage.filesystem(self.uri)
        selector = pafs.FileSelector(storage.join(root, INDEX_DIR, SUMMARIES_DIR), allow_not_found=True)
        written = {info.base_name for info in fs.get_file_info(selector) if info.type == pafs.FileType.File}
        if not state.files("summaries") or not written >= {object_file(k) for k in state.object_keys()}:
            return
        con.register("object_summaries", self._index_dataset(state.files("summaries"), SUMMARY_SCHEMA))
        con.execute("CREATE TEMP TABLE template_summaries AS SELECT * FROM object_summaries")
        con.unregister("object_summaries")


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
