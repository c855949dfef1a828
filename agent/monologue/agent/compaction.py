"""Compaction of a Space's index: many small per-object index files become a few segments.

A following shipper writes an object every 2 s, 43,200 a day, and the
indexer writes a line index and a summary beside each. Every reader opened
all of them at each new index version: an agent's reload grew with the
Space's age (2,000 objects: 1.4 s on a local disk; on S3 a request each).

So the indexer merges them, as an LSM tree does: every SEGMENT_OBJECTS
indexed objects become one level-0 segment, and every MERGE_FACTOR segments
of a level one segment of the next level, up to TOP_LEVEL: at 2 s an object,
levels 0-3 hold about 2 min, 17 min, 2.3 h and 18 h. So a Space has a few
dozen index files, plus about three a day of its age (a year: ~1,000, not
31 million). A segment has three files: its lines (line_id,
template_id and the object they came from), its summary, and its objects
(key and size, so the indexer knows them done).

Readers open the files the state names (IndexState), never a listing: the
state names a new segment in place of its members in one write, so a merge
is seen whole or not at all. The members' files are deleted GRACE_SECONDS
later, when no reader can still be opening them.

The shipper's small objects themselves are combined as well, level by
level as segments are written: runs of the objects that hold a segment's
lines (each object itself, or what a lower level combined it into) under
SMALL_OBJECT_BYTES become one of up to COMBINED_OBJECT_BYTES,
`<start>_<end>_combined-<hash>` beside them. So a day of following is a few
objects to read, not 43,200, and each line is rewritten at most once per
level, only while it sits in small objects. Only objects behind the
shipper's checkpoint are combined: a restarted shipper adopts the one beyond
it. The segment's objects file says which object holds each one's lines now
(stored_in); readers follow it, and what it replaced is deleted after the
grace period, like merged index files. Each line id stays with its own
object in the lines file, so a backfill that rewrites one finds what was
indexed of it.

A segment's summary rows are summed per template, key, value and time
bucket (a minute; an hour from level 2 on, about two hours of following), so
figures stay cheap to load. A question's time range that cuts a bucket is
answered by a scan instead, as one that cuts an object always was: the
figures stay exact either way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import logschema, storage
from .space import (CHECKPOINT_FILE, COMBINED_TAG, INDEX_DIR, LINE_TEMPLATES, LINES_DIR, SEGMENT_OBJECTS_SCHEMA,
                    SUMMARIES_DIR, IndexState, object_file, object_span, segment_file)
from .summaries import MAX_DISTINCT, SUMMARY_SCHEMA

SEGMENT_OBJECTS = 64  # indexed objects that make a level-0 segment
MERGE_FACTOR = 8  # segments of one level that make one of the next
TOP_LEVEL = 3  # not merged further: each ~18 h of following; rewriting days of lines again gains little
GRACE_SECONDS = 60.0  # before a merged file is deleted: readers may still be opening it
SEGMENT_LINES = LINE_TEMPLATES.append(pa.field("object", pa.string()))
# A shipper object under SMALL_OBJECT_BYTES is combined with its neighbours into
# one of up to COMBINED_OBJECT_BYTES (Parquet of ~1M log lines): few enough
# objects to open, each small enough to rewrite once.
SMALL_OBJECT_BYTES = 8 << 20
COMBINED_OBJECT_BYTES = 64 << 20


def bucket_seconds(level: int) -> int:
    """Time resolution of a segment's summary rows."""
    return 60 if level < 2 else 3600


@dataclass
class Merge:
    objects: list[str]  # indexed objects (keys) to merge
    segments: list[str]  # segments (names) to merge
    level: int  # of the new segment


def next_merge(state: IndexState) -> Merge | None:
    if len(state.objects) >= SEGMENT_OBJECTS:
        return Merge(sorted(state.objects), [], 0)
    levels: dict[int, list[str]] = {}
    for name, level in state.segments.items():
        levels.setdefault(level, []).append(name)
    for level in sorted(levels):
        if level < TOP_LEVEL and len(levels[level]) >= MERGE_FACTOR:
            return Merge([], sorted(levels[level])[:MERGE_FACTOR], level + 1)
    return None


def shipped_until(fs: pafs.FileSystem, root: str) -> int | None:
    """The shipper's checkpoint (complete_until, in ns, whole seconds down), None without one."""
    data = storage.read_or_none(fs, storage.join(root, CHECKPOINT_FILE))
    try:
        stamp = json.loads(data)["complete_until"] if data else ""
    except (ValueError, KeyError, TypeError):
        return None
    match = re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stamp or "")
    if not match or not stamp.endswith("Z"):  # the shipper writes UTC
        return None
    return int(dt.datetime.fromisoformat(match.group(0)).replace(tzinfo=dt.timezone.utc).timestamp()) * 10**9


def holders(objects: pa.Table) -> list[str]:
    """Per row of a segment's objects file, the object that holds its lines now."""
    return [holder or key for key, holder in zip(objects["object"].to_pylist(), objects["stored_in"].to_pylist())]


def combined_runs(keys: list[str], sizes: dict[str, int], shipped_until: int | None) -> list[list[str]]:
    """Runs of these objects (in key order, which is time order) to combine:
    small ones, behind the checkpoint, of one directory, up to COMBINED_OBJECT_BYTES."""
    runs: list[list[str]] = []
    run: list[str] = []
    for key in sorted(keys):
        span = object_span(key)
        small = (shipped_until is not None and span is not None and span[1] - 10**9 <= shipped_until
                 and sizes[key] < SMALL_OBJECT_BYTES)
        if run and not (small and key.rpartition("/")[0] == run[0].rpartition("/")[0]
                        and sum(sizes[k] for k in run) + sizes[key] <= COMBINED_OBJECT_BYTES):
            runs.append(run)
            run = []
        if small:
            run.append(key)
    runs.append(run)
    return [run for run in runs if len(run) > 1]


def combined_key(run: list[str]) -> str:
    """<first start>_<last end>_combined-<hash of the parts>.parquet, beside the first:
    its span covers theirs, and writing the same run again gives the same object."""
    directory, _, first = run[0].rpartition("/")
    last = max(run, key=lambda key: object_span(key)[1])  # a backfilled one may end before the one before it
    start, end = first.split("_")[0], last.rpartition("/")[2].split("_")[1].removesuffix(".parquet")
    digest = hashlib.sha256("\n".join(run).encode()).hexdigest()[:12]
    return storage.join(directory, f"{start}_{end}{COMBINED_TAG}{digest}.parquet")


class Compactor:
    """Writes segments under a Space's index directory, and combined objects
    beside the Space's objects; the indexer owns the state."""

    def __init__(self, fs: pafs.FileSystem, root: str):
        self.fs, self.root, self.index_root = fs, root, storage.join(root, INDEX_DIR)

    def _path(self, relative: str) -> str:
        return storage.join(self.index_root, relative)

    def _read(self, relative: str, schema: pa.Schema) -> pa.Table:
        return pq.read_table(self._path(relative), filesystem=self.fs, schema=schema)

    def can_merge(self, merge: Merge) -> bool:
        """An object indexed by an older monologue may have no summary: it stays out of segments."""
        return all(self.fs.get_file_info(self._path(f"{SUMMARIES_DIR}/{object_file(key)}")).type
                   == pafs.FileType.File for key in merge.objects)

    def write(self, merge: Merge, name: str, state: IndexState, shipped_until: int | None = None) -> list[str]:
        """Writes segment `name` from the merge's members, and first the objects
        that combine its small objects behind `shipped_until` (returned). Lines
        are streamed (a level-3 segment may hold a busy Space's day); summaries are small."""
        objects = [pa.table({"object": merge.objects, "size": [state.objects[k] for k in merge.objects],
                             "merged": [True] * len(merge.objects), "stored_in": [None] * len(merge.objects)},
                            schema=SEGMENT_OBJECTS_SCHEMA)]
        for member in merge.segments:
            members = self._read(segment_file(member, "objects"), SEGMENT_OBJECTS_SCHEMA)
            objects.append(members.set_column(2, "merged", pa.array([False] * members.num_rows)))
        objects = pa.concat_tables(objects)
        objects, combined = self._combined(objects, shipped_until)
        lines = [(f"{LINES_DIR}/{object_file(key)}", key) for key in merge.objects]
        lines += [(segment_file(member, "lines"), None) for member in merge.segments]
        with storage.open_atomic(self.fs, self._path(segment_file(name, "lines"))) as out, \
                pq.ParquetWriter(out, SEGMENT_LINES, compression="zstd") as writer:
            for relative, key in lines:
                with self.fs.open_input_file(self._path(relative)) as source:
                    for batch in pq.ParquetFile(source).iter_batches(batch_size=1 << 16):
                        if key is not None:  # an object's own file: which object, from the merge
                            batch = batch.append_column("object", pa.array([key] * batch.num_rows, pa.string()))
                        writer.write_batch(batch.select(SEGMENT_LINES.names))
        summaries = [self._read(f"{SUMMARIES_DIR}/{object_file(key)}", SUMMARY_SCHEMA) for key in merge.objects]
        summaries += [self._read(segment_file(member, "summaries"), SUMMARY_SCHEMA) for member in merge.segments]
        for kind, table in (("summaries", summed(pa.concat_tables(summaries), bucket_seconds(merge.level))),
                            ("objects", objects)):
            storage.write_atomic(self.fs, self._path(segment_file(name, kind)), storage.parquet_bytes(table))
        return combined

    def _combined(self, objects: pa.Table, shipped_until: int | None) -> tuple[pa.Table, list[str]]:
        """A segment's objects, with the small ones that hold its lines (each
        object itself, or what it was combined into at a lower level) combined
        further; and the new combined objects."""
        held = holders(objects)
        sizes: dict[str, int] = {}
        for unit, size in zip(held, objects["size"].to_pylist()):  # a combined one: about its parts' sum
            sizes[unit] = sizes.get(unit, 0) + size
        now_in: dict[str, str] = {}
        for run in combined_runs(list(sizes), sizes, shipped_until):
            found = self.fs.get_file_info([storage.join(self.root, unit) for unit in run])
            run = [unit for unit, info in zip(run, found) if info.type == pafs.FileType.File]  # not a retention rule's
            if len(run) > 1:
                now_in.update(dict.fromkeys(run, self._combine(run)))
        if not now_in:
            return objects, []
        stored_in = [now_in.get(unit, holder) for unit, holder in zip(held, objects["stored_in"].to_pylist())]
        return (objects.set_column(3, "stored_in", pa.array(stored_in, pa.string())),
                list(dict.fromkeys(now_in.values())))

    def _combine(self, run: list[str]) -> str:
        """Writes the lines of these objects, in order, as one object; returns its key."""
        key, schema = combined_key(run), logschema.arrow_schema()
        parts = ds.FileSystemDataset.from_paths([storage.join(self.root, part) for part in run], schema=schema,
                                                format=ds.ParquetFileFormat(), filesystem=self.fs)
        with storage.open_atomic(self.fs, storage.join(self.root, key)) as out, \
                pq.ParquetWriter(out, schema, compression="zstd") as writer:
            for batch in parts.to_batches():  # streamed: a run may be COMBINED_OBJECT_BYTES
                writer.write_batch(batch)
        return key

    def replaced(self, name: str, members: list[str]) -> tuple[list[str], list[str]]:
        """What segment `name` replaced: the index files (its objects' own and its
        member segments'), and the objects that hold lines no more: those that
        it combined, or whose combined objects it combined again."""
        try:
            objects = self._read(segment_file(name, "objects"), SEGMENT_OBJECTS_SCHEMA)
        except FileNotFoundError:  # itself merged and deleted since: its objects' files went before it
            return [segment_file(member, kind) for member in members for kind in ("lines", "summaries", "objects")], []
        merged = objects.filter(objects["merged"])["object"].to_pylist()
        before = set(merged)
        for member in members:
            try:
                table = self._read(segment_file(member, "objects"), SEGMENT_OBJECTS_SCHEMA)
            except FileNotFoundError:  # a crash halfway through deleting this before
                continue
            before.update(holders(table))
        after = set(holders(objects))
        return ([f"{directory}/{object_file(key)}" for key in merged for directory in (LINES_DIR, SUMMARIES_DIR)]
                + [segment_file(member, kind) for member in members for kind in ("lines", "summaries", "objects")],
                sorted(before - after))

    def objects_of(self, name: str) -> tuple[dict[str, int], set[str]]:
        """A segment's objects (key -> size), and the combined objects that hold some of their lines."""
        table = self._read(segment_file(name, "objects"), SEGMENT_OBJECTS_SCHEMA)
        return (dict(zip(table["object"].to_pylist(), table["size"].to_pylist())),
                {holder for holder in table["stored_in"].to_pylist() if holder is not None})

    def line_ids_of(self, state: IndexState, key: str) -> set[str]:
        """The lines of an object that its segments already index."""
        ids: set[str] = set()
        for name in state.segments:
            table = pq.read_table(self._path(segment_file(name, "lines")), filesystem=self.fs,
                                  columns=["line_id"], filters=[("object", "=", key)])
            ids.update(table["line_id"].to_pylist())
        return ids

    def delete(self, files: list[str], objects: list[str] = ()) -> None:
        """Deletes index files (relative to the index) and objects (keys)."""
        for path in [self._path(relative) for relative in files] + [storage.join(self.root, key) for key in objects]:
            storage.delete_if_exists(self.fs, path)


def summed(rows: pa.Table, bucket: int) -> pa.Table:
    """Summary rows summed per template, key, value and time bucket (seconds).

    A key with more than MAX_DISTINCT values in a bucket, or already marked so,
    has more overall: it becomes one marker row (no value), as in summaries.py."""
    with duckdb.connect() as con:
        con.register("parts", rows)
        return con.sql(f"""
            WITH grouped AS (
                SELECT template_id, key, value, sum(lines)::BIGINT AS lines, min(first_seen) AS first_seen,
                       max(last_seen) AS last_seen, epoch_ns(first_seen) // {bucket * 10**9} AS bucket
                FROM parts GROUP BY template_id, key, value, bucket),
            marked AS (
                SELECT *, key IS NOT NULL AND (count(*) OVER w > {MAX_DISTINCT}
                                               OR bool_or(value IS NULL) OVER w) AS unbounded
                FROM grouped WINDOW w AS (PARTITION BY template_id, key, bucket))
            SELECT template_id, key, value, lines, first_seen, last_seen FROM marked WHERE NOT unbounded
            UNION ALL
            SELECT template_id, key, NULL, sum(lines)::BIGINT, min(first_seen), max(last_seen)
            FROM marked WHERE unbounded GROUP BY template_id, key, bucket
            ORDER BY template_id, key, first_seen""").to_arrow_table().cast(SUMMARY_SCHEMA)
