"""Recall: what an agent remembers about a question, from each of its Spaces.

Hybrid search (BM25 + template vectors, memory.hybrid_search) over each Space's memory,
with the question's search terms (terms.py) plus, for question words no
template of the Space uses, the template words nearest in meaning; hits from
several Spaces are fused by reciprocal rank, since their scores are not
comparable. The first lines' request and trace ids bring the lines the same
requests logged in other services (related). Then exact statistics over every line of the recalled
templates (count, first and last seen, most frequent label and field values),
summed from the indexer's per-object summaries (summaries.py) with DuckDB, so
"how often / since when / which pods" questions get numbers, not guesses.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow.compute as pc

from . import summaries
from . import terms as search_terms
from .memory import RRF_K, Hit, MemoryStore, TemplateVectors, hybrid_search
from .redact import Redactor
from .space import (LINES_DIR, Space, merged_spans, object_file, object_span, segment_file, span_meets,
                    time_range)
from .templates.patterns import PatternGroups

# A field that names one request (or trace) across services, and its value: an
# identifier, holding a digit (not "none"), without separators that would cut it
# into several search terms (terms.py).
REQUEST_ID = re.compile(r"""(?<![\w-])["']?((?:x[-_])?(?:req(?:uest)?|trace|correlation|transaction)[-_]?id)["']?"""
                        r"""\s*[:=]\s*["']?(?=[\w.-]*\d)([A-Za-z0-9][\w.-]{3,}[A-Za-z0-9])(?![\w.:/=@-])""", re.I)
RELATED_FROM = 3  # the first hits whose request ids are followed
# Related lines added at most, one per pattern: half as many as the lines
# recalled, up to 4. Each costs prompt tokens: 50 concurrent Asks of 3 lines
# took 235 s with 4 related lines, 170 s with 1, 135 s with none (2 cores).
RELATED_LINES = 4
PROBLEM_LEVELS = frozenset({"warn", "error", "fatal"})  # as logschema normalizes them
CANDIDATES_PER_RESULT = 3  # fetched per wanted line, so fusion has room
# A view Space filters its source's memory after the search (its SQL filter may
# use any column of `logs`, which the store does not have): fetch more.
VIEW_OVERFETCH = 10


@dataclass
class TemplateStat:
    space: str
    template_id: str
    template: str
    count: int
    first_seen_ns: int
    last_seen_ns: int
    top_values: list[tuple[str, str, int]] = field(default_factory=list)


@dataclass
class _IndexFigures:
    version: tuple | None  # the Space's index_version they were read at
    texts: dict[str, str]  # template_id -> template
    vectors: TemplateVectors
    rows: dict[str, list[tuple]] | None  # template_id -> summary rows; None: no summaries
    figures: dict[str, summaries.TemplateFigures] | None  # over all time
    groups: PatternGroups | None = None  # made at the first question, kept while the texts stay
    group_figures: dict[str, summaries.TemplateFigures | None] = field(default_factory=dict)  # see _all_time


@dataclass
class Recalled:
    hits: list[Hit]
    stats: list[TemplateStat]


class SpaceMemory:
    """A Space's memory (vector store collection) and its SQL (DuckDB) side."""

    def __init__(self, space: Space, store: MemoryStore):
        self.space, self.store = space, store
        self._connections: dict[bool, duckdb.DuckDBPyConnection] = {}  # with the lines' views or not
        self._version: tuple | None = None  # the Space's index_version when they were made
        self._lock = threading.Lock()
        self._index_figures: _IndexFigures | None = None
        self.redactor = Redactor(tuple(space.extra_patterns))
        self.vocabulary = search_terms.Vocabulary()
        self._vocabulary_lock = threading.Lock()
        self._vocabulary_version: tuple | None = ()
        # segment name -> (its objects with their spans, the span of them all): segments never change
        self._segments: dict[str, tuple[list[tuple[str, tuple[int, int] | None]], tuple[int, int] | None]] = {}

    def learn_vocabulary(self, embed) -> None:
        """Add the words of templates new since the last call, each with its vector.

        `embed` maps a list of words to their vectors. Cheap when nothing changed.
        """
        with self._vocabulary_lock:
            version = self.space.index_version()
            if version == self._vocabulary_version:
                return
            templates = [row[0] for row in self.sql("SELECT DISTINCT template FROM template_texts")]
            words = list(dict.fromkeys(w for t in templates for w in search_terms.template_words(t or "")))
            new = self.vocabulary.unknown_all(words)
            for start in range(0, len(new), 256):
                batch = new[start:start + 256]
                self.vocabulary.add(batch, embed(batch))
            self._vocabulary_version = version

    @property
    def collection(self) -> str:
        return self.space.collection or self.space.name

    def sql(self, query: str, params: list | None = None, lines: bool = False) -> list[tuple]:
        """lines: the query reads `logs` or `templates` (Space.connect)."""
        return self._with_connection(lambda con: con.execute(query, params or []).fetchall(), lines)

    def _with_connection(self, work, lines: bool = False):
        """work(connection) on a connection of the current index.

        Only a query over the lines lists the Space's objects: an agent
        reconnects at every index version, every 2 s while a Space follows
        Loki, and a day of following is 43,200 objects."""
        # Registered Arrow datasets are visible to their own connection only, not
        # to its cursors: calls share the connection, one at a time.
        with self._lock:
            version = self.space.index_version()
            if version != self._version:
                self._connections, self._version = {}, version
            if lines not in self._connections:
                self._connections[lines] = self.space.connect(lines)
            try:
                return work(self._connections[lines])
            except (duckdb.IOException, duckdb.InvalidInputException):
                # An index file was replaced between the connection's state and this read.
                self._connections[lines] = self.space.connect(lines)
                return work(self._connections[lines])

    def search(self, question: str, vector: np.ndarray | None, limit: int,
               since_ns: int | None, until_ns: int | None,
               word_vectors: dict[str, np.ndarray] | None = None) -> list[Hit]:
        """word_vectors: vectors of the question's content words, for expansion."""
        fetch = limit * CANDIDATES_PER_RESULT * (VIEW_OVERFETCH if self.space.where else 1)
        query = search_terms.query_terms(question)
        unknown = [v for w, v in (word_vectors or {}).items() if w not in self.vocabulary]
        if unknown:
            query += self.vocabulary.expand(np.vstack(unknown))
        hits = hybrid_search(self.store, self.collection, self._index().vectors, " ".join(dict.fromkeys(query)),
                             vector, fetch, since_ns, until_ns)
        return self._visible(hits)

    def lines_holding(self, terms: list[str], limit: int, since_ns: int | None,
                      until_ns: int | None) -> list[Hit]:
        """Lines that hold any of these terms (BM25: the rarer a term, the higher its lines)."""
        fetch = limit * (VIEW_OVERFETCH if self.space.where else 1)
        return self._visible(self.store.search(self.collection, " ".join(terms), fetch, since_ns, until_ns))

    def _visible(self, hits: list[Hit]) -> list[Hit]:
        """The hits this Space holds, named by it."""
        for hit in hits:
            hit.space = self.space.name
        if self.space.where and hits:
            # A view Space shares its source's memory: keep what its filter keeps,
            # reading only the objects that may hold the hits.
            times = [h.timestamp_ns for h in hits]
            around = ([(t, t + 1) for t in times] if None not in times else [time_range()])
            query = "SELECT line_id FROM logs WHERE line_id IN (SELECT unnest(?))"
            keep = {row[0] for row in self._scan(around, lambda con: con.execute(
                query, [[h.line_id for h in hits]]).fetchall())}
            hits = [h for h in hits if h.line_id in keep]
        return hits

    def stats(self, template_ids: list[str], since_ns: int | None, until_ns: int | None) -> list[TemplateStat]:
        """Exact figures of these templates, each over its lines and those of the
        templates it covers (templates.patterns): summed from the indexer's
        summaries where they lie inside the question's range, the rest by a scan
        of the lines."""
        if not template_ids:
            return []
        index = self._index()
        if index.groups is None:
            index.groups = PatternGroups(index.texts)
        groups = index.groups.group(template_ids)
        if since_ns is None and until_ns is None and index.figures is not None:
            figures = {tid: self._all_time(index, tid, members) for tid, members in groups.items()}
        else:
            pattern_of = {member: tid for tid, members in groups.items() for member in members}
            since, until = time_range(since_ns, until_ns)
            split = self._split_rows(index, list(pattern_of), since, until)
            if split is None:
                rows = self._scanned_rows(list(pattern_of), [(since, until)])
            else:
                rows, edges = split
                rows += self._scanned_rows(list(pattern_of), edges) if edges else []
            figures = summaries.figures([(pattern_of[row[0]], *row[1:]) for row in rows])
        return [TemplateStat(self.space.name, tid, index.texts.get(tid, ""), f.count, f.first_seen_ns,
                             f.last_seen_ns, f.top_values)
                for tid in groups if (f := figures.get(tid))]

    @staticmethod
    def _all_time(index: _IndexFigures, tid: str, members: list[str]) -> summaries.TemplateFigures | None:
        """A group's figures over all time: its template's own, or its members' summed once per index version."""
        if len(members) == 1:
            return index.figures.get(tid)
        if tid not in index.group_figures:
            rows = [(tid, *row[1:]) for member in members for row in index.rows.get(member, ())]
            index.group_figures[tid] = summaries.figures(rows).get(tid)
        return index.group_figures[tid]

    def _index(self) -> _IndexFigures:
        """The current index's template texts, vectors and summaries, read once per index version."""
        with self._lock:
            version = self.space.index_version()
            if self._index_figures is not None and self._index_figures.version == version:
                return self._index_figures
        texts = dict(self.sql("SELECT template_id, template FROM template_texts"))
        rows = None
        if self.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = 'template_summaries'"):
            rows = {}
            for row in self.sql("SELECT template_id, key, value, lines, epoch_ns(first_seen), epoch_ns(last_seen) "
                                "FROM template_summaries"):
                rows.setdefault(row[0], []).append(row)
        index = _IndexFigures(version, texts, TemplateVectors(*self.space.template_vectors()), rows,
                              None if rows is None else summaries.figures([r for rs in rows.values() for r in rs]))
        previous = self._index_figures
        if previous is not None and previous.texts == texts:
            # Templates change far less often than the index: a following Space's does every 2 s.
            index.groups = previous.groups
        self._index_figures = index
        return index

    @staticmethod
    def _split_rows(index: _IndexFigures, template_ids: list[str], since: int,
                    until: int) -> tuple[list[tuple], list[tuple[int, int]]] | None:
        """The summary rows that lie inside [since, until), and the windows left
        to scan: where a row (a time bucket or an object) straddles an edge of the
        range. A row that meets a window goes to the scan whole, widening it, so
        each line is counted once, by its row or by the scan. None: no summaries."""
        if index.rows is None:
            return None
        rows = [row for tid in template_ids for row in index.rows.get(tid, ()) if row[5] >= since and row[4] < until]
        windows = merged_spans([(max(row[4], since), min(row[5] + 1, until)) for row in rows
                           if row[4] < since or row[5] >= until])
        inside = [row for row in rows if row[4] >= since and row[5] < until]
        while windows:
            meets = [span_meets(windows, (row[4], row[5] + 1)) for row in inside]
            if not any(meets):
                break
            windows = merged_spans(windows + [(row[4], row[5] + 1) for row, m in zip(inside, meets) if m])
            inside = [row for row, m in zip(inside, meets) if not m]
        return inside, windows

    def _scanned_rows(self, template_ids: list[str], windows: list[tuple[int, int]]) -> list[tuple]:
        """Summary rows of the lines themselves, inside these [since, until) windows: a scan."""
        inside = " OR ".join(["(epoch_ns(timestamp) >= ? AND epoch_ns(timestamp) < ?)"] * len(windows))
        params = [template_ids] + [bound for window in windows for bound in window]

        def summarize(con):
            # Read once: the summary's queries name their source three times.
            con.execute("CREATE OR REPLACE TEMP TABLE scanned AS SELECT template_id, timestamp, labels, fields "
                        f"FROM logs WHERE template_id IN (SELECT unnest(?)) AND ({inside})", params)
            try:
                return summaries.summarize(con, "scanned", self.redactor)
            finally:
                con.execute("DROP TABLE scanned")

        scanned = self._scan(windows, summarize)
        return list(zip(*(scanned[c].to_pylist() for c in ("template_id", "key", "value", "lines")),
                        *(pc.cast(scanned[c], "int64").to_pylist() for c in ("first_seen", "last_seen"))))

    def _scan(self, intervals: list[tuple[int, int]], work):
        """`work` on a connection whose `logs` holds the indexed lines of the
        objects that may hold a line inside these [since, until) intervals, by
        the spans in their names: the index names them, so nothing is listed,
        and a Space that followed Loki for days is not read whole for a minute."""
        for attempt in range(2):
            objects, index_files = self._objects_meeting(intervals)
            if attempt:
                # An object is gone (a retention rule), or an index file was merged away
                # meanwhile: the index as it is now, and of its objects those still there.
                objects = self.space.existing(objects)
            with contextlib.closing(self.space.connect_objects(objects, index_files)) as con:
                try:
                    return work(con)
                except (duckdb.IOException, duckdb.InvalidInputException):
                    if attempt:
                        raise

    def _objects_meeting(self, intervals: list[tuple[int, int]]) -> tuple[list[str], list[str]]:
        """The indexed objects whose spans meet these intervals, and the index
        files (relative to the index) with their lines' templates."""
        merged = merged_spans(intervals)

        def meets(span: tuple[int, int] | None) -> bool:
            return span is None or span_meets(merged, span)  # no span in its name: it may hold any time

        state = self.space.index_state()
        objects, files = [], []
        for key in state.object_keys():
            if meets(object_span(key)):
                objects.append(key)
                files.append(f"{LINES_DIR}/{object_file(key)}")
        known = self._segments  # other threads may replace it meanwhile
        self._segments = segments = {name: known.get(name) or self._segment_spans(name) for name in state.segments}
        for name in sorted(segments):
            members, whole = segments[name]
            if meets(whole) and (found := [key for key, span in members if meets(span)]):
                objects += found
                files.append(segment_file(name, "lines"))
        return list(dict.fromkeys(objects)), files

    def _segment_spans(self, name: str):
        # Where a small object was combined into another, that one is read, for the part's span.
        members = [(holder or key, object_span(key)) for key, holder in self.space.segment_objects(name)]
        spans = [span for _, span in members]
        whole = None if None in spans or not spans else (min(s for s, _ in spans), max(e for _, e in spans))
        return members, whole

    def line_count(self) -> int:
        """Lines in memory (indexed): summed from the summaries, or, without them, counted."""
        figures = self._index().figures
        if figures is not None:
            return sum(f.count for f in figures.values())
        return self.sql("SELECT count(*) FROM logs WHERE template_id IS NOT NULL", lines=True)[0][0]


def recall(memories: list[SpaceMemory], question: str, vector: np.ndarray | None, top_k: int,
           since_ns: int | None = None, until_ns: int | None = None, max_stats: int = 5,
           word_vectors: dict[str, np.ndarray] | None = None) -> Recalled:
    fused: dict[tuple[str, str], tuple[float, Hit]] = {}
    for memory in memories:
        for rank, hit in enumerate(memory.search(question, vector, top_k, since_ns, until_ns, word_vectors)):
            key = (hit.space, hit.line_id)
            previous = fused.get(key, (0.0, hit))[0]
            fused[key] = (previous + 1.0 / (RRF_K + rank + 1), hit)
    ranked = sorted(fused.values(), key=lambda pair: -pair[0])[:top_k]
    hits = []
    for score, hit in ranked:
        hit.score = score
        hits.append(hit)
    # Right after the lines they relate to: before more lines like those, for a
    # prompt's budget and a small model's attention.
    hits[RELATED_FROM:RELATED_FROM] = related(memories, hits, since_ns, until_ns,
                                              min(RELATED_LINES, max(1, top_k // 2)))
    # Figures of the matching lines' patterns only: a related line's pattern is often
    # a service's every request (the gateway's 7,424 lines), and with its figures in
    # the prompt the 0.5B model gave them for the payments failures' count and times.
    stats = []
    for memory in memories:
        wanted = list(dict.fromkeys(h.template_id for h in hits
                                    if h.space == memory.space.name and h.template_id and not h.via))
        stats += memory.stats(wanted[:max_stats], since_ns, until_ns)
    return Recalled(hits, stats)


def request_ids(text: str) -> dict[str, str]:
    """The request and trace ids a line names: value (lower-cased) -> "key=value"."""
    return {value.lower(): f"{key}={value}" for key, value in REQUEST_ID.findall(text)}


def related(memories: list[SpaceMemory], hits: list[Hit], since_ns: int | None,
            until_ns: int | None, limit: int = RELATED_LINES) -> list[Hit]:
    """Lines of other patterns that share a request id with the first hits: what
    the same requests did in other services. A failure's cause is often one
    service upstream, in words the question does not use ("why did checkouts
    fail?": "checkout failed: payments returned 503" <- payments' "timeout
    acquiring database connection" of the same req_id). The first such line of
    each pattern not recalled yet, at most `limit`; each carries the id it
    shares (Hit.via)."""
    patterns = {(h.space, h.template_id) for h in hits}
    out: list[Hit] = []
    for memory in memories:
        ids: dict[str, str] = {}
        for hit in [h for h in hits if h.space == memory.space.name][:RELATED_FROM]:
            ids |= request_ids(hit.text)
        terms = [t for value in ids if (t := search_terms.identifier_term(value)) is not None]
        if not terms:
            continue
        found = memory.lines_holding(terms, RELATED_LINES * 8, since_ns, until_ns)
        # What went wrong in those requests first, then what else they did; each in time order.
        for hit in sorted(found, key=lambda h: (h.level not in PROBLEM_LEVELS, h.timestamp_ns)):
            shared = [named for value, named in request_ids(hit.text).items() if value in ids]
            # A term may match in another role (a path, a message): only a shared id relates.
            if shared and (hit.space, hit.template_id) not in patterns:
                hit.via, hit.score = shared[0], 0.0
                patterns.add((hit.space, hit.template_id))
                out.append(hit)
    return out[:limit]
