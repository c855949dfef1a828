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

A segment's summary rows are summed per template, key, value and time
bucket (a minute; an hour from level 2 on, about two hours of following), so
figures stay cheap to load. A question's time range that cuts a bucket is
answered by a scan instead, as one that cuts an object always was: the
figures stay exact either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import storage
from .space import (LINE_TEMPLATES, LINES_DIR, SEGMENT_OBJECTS_SCHEMA, SUMMARIES_DIR, IndexState, object_file,
                    segment_file)
from .summaries import MAX_DISTINCT, SUMMARY_SCHEMA

SEGMENT_OBJECTS = 64  # indexed objects that make a level-0 segment
MERGE_FACTOR = 8  # segments of one level that make one of the next
TOP_LEVEL = 3  # not merged further: each ~18 h of following; rewriting days of lines again gains little
GRACE_SECONDS = 60.0  # before a merged file is deleted: readers may still be opening it
SEGMENT_LINES = LINE_TEMPLATES.append(pa.field("object", pa.string()))


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


class Compactor:
    """Writes segments under a Space's index directory; the indexer owns the state."""

    def __init__(self, fs: pafs.FileSystem, index_root: str):
        self.fs, self.index_root = fs, index_root

    def _path(self, relative: str) -> str:
        return storage.join(self.index_root, relative)

    def _read(self, relative: str, schema: pa.Schema) -> pa.Table:
        return pq.read_table(self._path(relative), filesystem=self.fs, schema=schema)

    def can_merge(self, merge: Merge) -> bool:
        """An object indexed by an older monologue may have no summary: it stays out of segments."""
        return all(self.fs.get_file_info(self._path(f"{SUMMARIES_DIR}/{object_file(key)}")).type
                   == pafs.FileType.File for key in merge.objects)

    def write(self, merge: Merge, name: str, state: IndexState) -> None:
        """Writes segment `name` from the merge's members. Lines are streamed
        (a level-3 segment may hold a busy Space's day); summaries are small."""
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
        objects = [pa.table({"object": merge.objects, "size": [state.objects[k] for k in merge.objects],
                             "merged": [True] * len(merge.objects)}, schema=SEGMENT_OBJECTS_SCHEMA)]
        for member in merge.segments:
            members = self._read(segment_file(member, "objects"), SEGMENT_OBJECTS_SCHEMA)
            objects.append(members.set_column(2, "merged", pa.array([False] * members.num_rows)))
        for kind, table in (("summaries", summed(pa.concat_tables(summaries), bucket_seconds(merge.level))),
                            ("objects", pa.concat_tables(objects))):
            storage.write_atomic(self.fs, self._path(segment_file(name, kind)), storage.parquet_bytes(table))

    def replaced(self, name: str, members: list[str]) -> list[str]:
        """The files that segment `name` replaced: its objects' own and its member segments'."""
        try:
            objects = self._read(segment_file(name, "objects"), SEGMENT_OBJECTS_SCHEMA)
            merged = objects.filter(objects["merged"])["object"].to_pylist()
        except FileNotFoundError:  # itself merged and deleted since: its objects' files went before it
            merged = []
        return ([f"{directory}/{object_file(key)}" for key in merged for directory in (LINES_DIR, SUMMARIES_DIR)]
                + [segment_file(member, kind) for member in members for kind in ("lines", "summaries", "objects")])

    def objects_of(self, name: str) -> dict[str, int]:
        table = self._read(segment_file(name, "objects"), SEGMENT_OBJECTS_SCHEMA)
        return dict(zip(table["object"].to_pylist(), table["size"].to_pylist()))

    def line_ids_of(self, state: IndexState, key: str) -> set[str]:
        """The lines of an object that its segments already index."""
        ids: set[str] = set()
        for name in state.segments:
            table = pq.read_table(self._path(segment_file(name, "lines")), filesystem=self.fs,
                                  columns=["line_id"], filters=[("object", "=", key)])
            ids.update(table["line_id"].to_pylist())
        return ids

    def delete(self, files: list[str]) -> None:
        for relative in files:
            storage.delete_if_exists(self.fs, self._path(relative))


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
