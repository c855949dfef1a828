"""The indexer: a Space's new Parquet objects become memory.

For each object not indexed yet: redact every line, mine its template, embed
each NEW template once (the model server never sees unredacted text), and
write one memory object per line (id from line_id) to the store. Beside the
data under _index/, first: which template each line has (the `logs`/`templates`
views join it), the object's template summary (the figures recall gives,
summaries.py), the template texts and vectors; then the lines go to the
store; last the miner's state and which objects are done. So a crash anywhere
re-does one object, and re-doing it changes nothing (ids are stable).

A Parquet object that cannot be read is moved to _quarantine/ and reported;
an embedder, store or storage (S3) outage pauses indexing, which resumes by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import compaction, storage
from .embedder import Embedder
from .memory import ROW_SCHEMA, MemoryStore
from .redact import Redactor
from .space import (COMBINED_TAG, INDEX_DIR, LINE_TEMPLATES, LINES_DIR, STATE_FILE, SUMMARIES_DIR, TEMPLATE_TEXTS,
                    TEMPLATE_VECTORS, IndexState, Space, object_file)
from .summaries import summarize
from .templates import TemplateMiner
from .terms import TermsPool

log = logging.getLogger("monologue.indexer")
Prepared = tuple[list[str], Callable[[], list[str]]]  # an object's redacted lines, and their terms to come
QUARANTINE_DIR = "_quarantine"
FULL_LISTING_SECONDS = 300.0  # between listings of every object (see Indexer.pending)


@dataclass
class Progress:
    """What an indexer has done since it started, as it goes (telemetry.py reads it)."""

    objects: int = 0
    lines: int = 0
    quarantined: int = 0
    segments: int = 0
    pauses: int = 0  # polls an outage paused
    paused: bool = False  # by an outage, now
    at: float = field(default_factory=time.monotonic)  # of the last progress: an object, a poll, a pause


@dataclass
class IndexReport:
    objects: int = 0
    lines: int = 0
    new_templates: int = 0
    quarantined: list[str] = field(default_factory=list)
    segments: int = 0  # written by compaction
    seconds: float = 0.0


class Indexer:
    def __init__(self, space: Space, store: MemoryStore, embedder: Embedder):
        self.space, self.store, self.embedder = space, store, embedder
        self.redactor = Redactor(tuple(space.extra_patterns))
        self.terms = TermsPool()
        self._duck = duckdb.connect()
        self.fs, self.root = storage.filesystem(space.uri)
        self.index_root = storage.join(self.root, INDEX_DIR)
        self._listed_all_at: float | None = None  # time.monotonic() of the last full listing
        self._workdir = tempfile.TemporaryDirectory(prefix="monologue-indexer-")
        self._miner_file = Path(self._workdir.name) / "miner.json"
        self.state: IndexState | None = None  # read back by the first run_once: storage may be out now
        self.progress = Progress()

    # ------------------------------------------------------------ state beside the data

    def _path(self, name: str) -> str:
        return storage.join(self.index_root, name)

    def _restore(self) -> None:
        """Reads back what was done; self.state is set last, so a storage outage
        halfway leaves it unset and the next run_once reads it all again."""
        # state.inflight: the object being indexed when the last run stopped: its
        # lines may be in the store already, so it is merged, not appended.
        state = IndexState.parse(storage.read_or_none(self.fs, self._path(STATE_FILE)))
        self.compactor = compaction.Compactor(self.fs, self.root)
        self.done: dict[str, int] = {}  # every indexed object: key -> size
        self.combined: set[str] = set()  # objects that compaction combined others into: nothing to index
        for name in sorted(state.segments):
            sizes, combined = self.compactor.objects_of(name)
            self.done.update(sizes)
            self.combined |= combined
        for _, _, members in state.garbage:  # what they combined is deleted when the grace period ends
            for name in members:
                with contextlib.suppress(FileNotFoundError):
                    self.combined |= self.compactor.objects_of(name)[1]
        self.compacted = set(self.done)  # objects with lines in a segment
        self.done.update(state.objects)
        self.newest = max(self.done, default=None)  # the key a poll lists after (pending)
        miner = storage.read_or_none(self.fs, self._path("miner.json"))
        if miner:
            self._miner_file.write_bytes(miner)
        self.miner = TemplateMiner(self._miner_file)
        ids, matrix = self.space.template_vectors()
        self.template_vectors: dict[str, np.ndarray] = dict(zip(ids, matrix))
        self.state = state

    def _write_templates(self, new: bool) -> None:
        """Every template's text (a text generalises as lines come), and its vector if any is new."""
        ids = list(self.template_vectors)
        if new:
            matrix = np.vstack([self.template_vectors[i] for i in ids]).astype(np.float32)
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])
            storage.write_atomic(self.fs, self._path(TEMPLATE_VECTORS), storage.parquet_bytes(pa.table({
                "template_id": pa.array(ids, pa.string()), "vector": vectors})))
        storage.write_atomic(self.fs, self._path("templates/templates.parquet"), storage.parquet_bytes(pa.table({
            "template_id": ids,
            "template": [self.miner.template(i) for i in ids],
        }, schema=TEMPLATE_TEXTS)))

    def _save(self, key: str, size: int) -> None:
        self.miner.save()
        storage.write_atomic(self.fs, self._path("miner.json"), self._miner_file.read_bytes())
        self.done[key] = self.state.objects[key] = size
        self.newest = max(self.newest or key, key)
        self.state.inflight = None
        self._write_state()

    def _write_state(self) -> None:
        storage.write_atomic(self.fs, self._path(STATE_FILE), self.state.dump())

    def compact(self, now: float | None = None) -> int:
        """Deletes what merges replaced a grace period ago, then merges what is due
        (compaction.py); returns the number of segments written."""
        now = time.time() if now is None else now
        expired = [g for g in self.state.garbage if now - g[0] >= compaction.GRACE_SECONDS]
        if expired:
            # The state first: a crash then leaves files nobody names, never a name without its file.
            self.state.garbage = [g for g in self.state.garbage if now - g[0] < compaction.GRACE_SECONDS]
            self._write_state()
            live = set(self.state.files("lines") + self.state.files("summaries"))  # a key indexed again since
            for _, segment, members in expired:
                files, objects = self.compactor.replaced(segment, members)
                self.compactor.delete([f for f in files if f not in live],
                                      [key for key in objects if key not in self.state.objects])
        written, shipped_until = 0, None
        while (merge := compaction.next_merge(self.state)) and self.compactor.can_merge(merge):
            name = f"{self.state.next_segment:08d}"
            if shipped_until is None:  # read once per compaction, when there is a merge to do
                shipped_until = compaction.shipped_until(self.fs, self.root)
            self.combined.update(self.compactor.write(merge, name, self.state, shipped_until))
            for key in merge.objects:
                del self.state.objects[key]
                self.compacted.add(key)
            for member in merge.segments:
                del self.state.segments[member]
            self.state.segments[name] = merge.level
            self.state.next_segment += 1
            # What the segment replaced is deleted after the grace period; named
            # by the segment, so the state stays small through a long catch-up.
            self.state.garbage.append((now, name, merge.segments))
            self._write_state()
            written += 1
        return written

    # ------------------------------------------------------------ work

    def pending(self) -> list[tuple[str, int]]:
        """The objects to index, (path, size) in key order.

        A following shipper writes 43,200 objects a day, each named after its
        start, so each poll lists only the keys after the newest indexed one
        (on S3: a request for them alone, not one per 1,000 objects of the
        Space's whole history). Every FULL_LISTING_SECONDS it lists them all,
        for what sorts earlier: a backfill, an object rewritten."""
        now = time.monotonic()
        full = self._listed_all_at is None or now - self._listed_all_at >= FULL_LISTING_SECONDS
        after = None if full or self.newest is None else storage.join(self.root, self.newest)
        files = storage.list_files(self.fs, self.root, after)
        if full:
            self._listed_all_at = now
        skip = (f"{self.root}/{INDEX_DIR}/", f"{self.root}/{QUARANTINE_DIR}/")
        pending = []
        for path, size in files:
            key = self._key(path)
            if not path.endswith(".parquet") or path.startswith(skip) or self.done.get(key) == size:
                continue
            if COMBINED_TAG in key:
                if key not in self.combined:  # written by a compaction that crashed before naming it
                    storage.delete_if_exists(self.fs, path)
                continue  # its lines are indexed, as its parts'
            pending.append((path, size))
        return sorted(pending)

    def _key(self, path: str) -> str:
        return path[len(self.root) + 1:]

    def run_once(self, stop: threading.Event | None = None) -> IndexReport:
        """Indexes what is pending; with `stop`, stops between two objects once it is set."""
        report, started = IndexReport(), time.monotonic()
        if self.state is None:
            self._restore()
        for path, size, table, prepared in self._read_ahead(self.pending(), report):
            if stop is not None and stop.is_set():
                break
            key = self._key(path)
            if key in self.compacted:  # known now, not when it was read: a merge may have come between
                table, prepared = self._not_in_segments(key, table, prepared)
            known_new = key not in self.done and key != self.state.inflight
            self.state.inflight = key
            report.new_templates += self._index_table(path, table, prepared, known_new)
            self._save(key, size)
            report.objects += 1
            report.lines += table.num_rows
            segments = self.compact()  # as it goes: a catch-up's state stays small
            report.segments += segments
            self._progressed(objects=1, lines=table.num_rows, segments=segments)  # a catch-up may take hours
        if report.lines:
            self.store.optimize(self.space.collection or self.space.name)
        segments = self.compact()  # deletes what the grace period released
        report.segments += segments
        self._progressed(segments=segments)
        report.seconds = time.monotonic() - started
        return report

    def _read_ahead(self, pending: list[tuple[str, int]], report: IndexReport):
        """(path, size, table, prepared) of each object, one object ahead: while
        one object is mined and written, the next one's search terms are made
        in the worker processes, which would otherwise wait for it."""
        ahead = None
        for path, size in pending:
            table = self._read(path, report)
            if table is None:
                continue
            current, ahead = ahead, (path, size, table, self._prepare(table))
            if current is not None:
                yield current
        if ahead is not None:
            yield ahead

    def _read(self, path: str, report: IndexReport) -> pa.Table | None:
        """An object's lines; None if it is gone or quarantined.

        Fetched, then parsed: a storage outage (an OSError here) pauses
        indexing, and only an object that is not Parquet is quarantined."""
        data = storage.read_or_none(self.fs, path)
        if data is None:
            return None  # deleted since the listing
        try:
            table = pq.read_table(pa.BufferReader(data),
                                  columns=["timestamp", "labels", "line", "line_id", "level", "fields"])
        except (pa.ArrowInvalid, OSError) as err:
            self._quarantine(path, err)
            report.quarantined.append(self._key(path))
            self.progress.quarantined += 1
            return None
        return table

    def _not_in_segments(self, key: str, table: pa.Table, prepared: Prepared) -> tuple[pa.Table, Prepared]:
        """An object rewritten after a merge (a backfill): a segment indexes the lines it had."""
        indexed = self.compactor.line_ids_of(self.state, key)
        keep = [i not in indexed for i in table["line_id"].to_pylist()]
        lines, terms = prepared
        return table.filter(pa.array(keep)), ([line for line, k in zip(lines, keep) if k],
                                              lambda: [t for t, k in zip(terms(), keep) if k])

    def _prepare(self, table: pa.Table) -> Prepared:
        """The object's redacted lines, and their search terms (under way in other processes)."""
        lines = self.redactor.redact_many(table["line"].to_pylist())
        return lines, self.terms.submit(lines)

    def _index_table(self, object_path: str, table: pa.Table,
                     prepared: Prepared, known_new: bool) -> int:
        lines, terms = prepared
        labels = _labels_json(table["labels"])
        matches = [self.miner.add(line, stream) for line, stream in zip(lines, labels)]
        template_ids = [m.template_id for m in matches]
        new = [tid for tid in dict.fromkeys(template_ids) if tid not in self.template_vectors]
        if new:
            vectors = self.embedder.embed([self.miner.template(tid) for tid in new])
            self.template_vectors.update(zip(new, vectors))
        rows = pa.table({
            "line_id": table["line_id"],
            "text": pa.array(lines, pa.string()),
            "terms": pa.array(terms(), pa.string()),
            "template_id": pa.array(template_ids, pa.string()),
            "template": pa.array([self.miner.template(t) for t in template_ids], pa.string()),
            "level": table["level"],
            "labels": pa.array(labels, pa.string()),
            "timestamp": table["timestamp"],
            "space": pa.array([self.space.name] * len(lines), pa.string()),
        }, schema=ROW_SCHEMA)
        # The figures' files and template vectors first, the store after: a
        # store such as Weaviate serves a line as soon as it holds it, and an
        # answer citing a line must count it in its figures and know its
        # template's vector. A crash in between re-does the object.
        name = object_file(self._key(object_path))
        storage.write_atomic(self.fs, self._path(f"{LINES_DIR}/{name}"), storage.parquet_bytes(pa.table({
            "line_id": table["line_id"], "template_id": pa.array(template_ids, pa.string())},
            schema=LINE_TEMPLATES)))
        storage.write_atomic(self.fs, self._path(f"{SUMMARIES_DIR}/{name}"), storage.parquet_bytes(
            self._summary(table, template_ids)))
        if rows.num_rows:
            self._write_templates(bool(new))
            # The state names the object in flight (a crash from here on merges
            # it again), and writing it changes the index version: an agent
            # reads the new figures and vectors before it can recall these lines.
            self._write_state()
            self.store.ensure(self.space.collection or self.space.name)
            self.store.upsert(self.space.collection or self.space.name, rows, known_new)
        return len(new)

    def _summary(self, table: pa.Table, template_ids: list[str]) -> pa.Table:
        lines = pa.table({"template_id": pa.array(template_ids, pa.string()), "timestamp": table["timestamp"],
                          "labels": table["labels"], "fields": table["fields"]})
        # One in-memory database for every object: opening one costs more than
        # summarizing a shipper's 2-second object.
        self._duck.register("object_lines", lines)
        try:
            return summarize(self._duck, "object_lines", self.redactor)
        finally:
            self._duck.unregister("object_lines")

    def _quarantine(self, path: str, err: Exception) -> None:
        target = storage.join(self.root, QUARANTINE_DIR, self._key(path))
        storage.ensure_parent(self.fs, target)
        self.fs.move(path, target)
        log.error("quarantined an unreadable object", extra={"object": self._key(path), "error": str(err),
                                                             "moved_to": self._key(target)})

    def _progressed(self, **counts: int) -> None:
        for name, count in counts.items():
            setattr(self.progress, name, getattr(self.progress, name) + count)
        self.progress.at = time.monotonic()

    def run(self, stop: threading.Event, poll_seconds: float = 2.0, max_backoff: float = 60.0) -> None:
        """Index until stop is set (between two objects); outages back off and resume by themselves."""
        backoff = poll_seconds
        while not stop.is_set():
            try:
                report = self.run_once(stop)
                backoff = poll_seconds
                self.progress.paused = False
                self._progressed()
                if report.objects or report.quarantined:
                    log.info("indexed", extra=vars(report))
            except OSError as err:  # the embedder or the store (ConnectionErrors), or the storage, is out
                self.progress.paused = True
                self._progressed(pauses=1)
                log.warning("indexing paused", extra={"error": str(err), "retry_seconds": backoff})
                backoff = min(backoff * 2, max_backoff)
            stop.wait(backoff)


def _labels_json(column: pa.ChunkedArray) -> list[str]:
    """Labels as JSON text per row. A stream's rows share one labels set: each
    distinct set is found in Arrow (no Python per row) and encoded once."""
    labels = column.combine_chunks()
    separators = any(pc.any(pc.match_substring_regex(part, "[\\x00\\x01]")).as_py()
                     for part in (labels.keys, labels.items))
    if labels.null_count or separators:  # rare: the simple way
        return [json.dumps(dict(pairs or []), sort_keys=True) for pairs in labels.to_pylist()]
    pairs = pc.binary_join_element_wise(labels.keys, labels.items, "\x00", null_handling="replace")
    per_row = pc.binary_join(pa.ListArray.from_arrays(labels.offsets, pairs), "\x01").dictionary_encode()
    indices = per_row.indices.to_numpy(zero_copy_only=False)
    _, first_rows = np.unique(indices, return_index=True)  # a row of each set, in code order
    encoded = [json.dumps(dict(labels[int(row)].as_py()), sort_keys=True) for row in first_rows]
    return [encoded[code] for code in indices.tolist()]
