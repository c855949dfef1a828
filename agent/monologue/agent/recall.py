"""Recall: what an agent remembers about a question, from each of its Spaces.

Hybrid search (BM25 + vectors, fused by the store) over each Space's memory,
with the question's search terms (terms.py) plus, for question words no
template of the Space uses, the template words nearest in meaning; hits from
several Spaces are fused by reciprocal rank, since their scores are not
comparable. Then exact statistics over every line of the recalled
templates (count, first and last seen, most frequent label and field values),
from DuckDB over the Space's Parquet, so "how often / since when / which
pods" questions get numbers, not guesses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import duckdb
import numpy as np

from . import terms as search_terms
from .memory import RRF_K, Hit, VectorStore
from .space import Space

CANDIDATES_PER_RESULT = 3  # fetched per wanted line, so fusion has room
# A view Space filters its source's memory after the search (its SQL filter may
# use any column of `logs`, which the store does not have): fetch more.
VIEW_OVERFETCH = 10
TOP_VALUE_KEYS = 4
TOP_VALUES_PER_KEY = 3
MAX_DISTINCT_FOR_STATS = 20  # keys with more distinct values (ids, times) say little


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
class Recalled:
    hits: list[Hit]
    stats: list[TemplateStat]


class SpaceMemory:
    """A Space's memory (vector store collection) and its SQL (DuckDB) side."""

    def __init__(self, space: Space, store: VectorStore):
        self.space, self.store = space, store
        self._con: duckdb.DuckDBPyConnection | None = None
        self._version: tuple | None = None  # the Space's index_version when _con was made
        self._lock = threading.Lock()
        self.vocabulary = search_terms.Vocabulary()
        self._vocabulary_lock = threading.Lock()
        self._vocabulary_version: tuple | None = ()

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

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        # Registered Arrow datasets are visible to their own connection only, not
        # to its cursors: calls share the connection, one at a time.
        with self._lock:
            version = self.space.index_version()
            if self._con is None or version != self._version:
                self._con, self._version = self.space.connect(), version
            try:
                return self._con.execute(query, params or []).fetchall()
            except (duckdb.IOException, duckdb.InvalidInputException):
                # An index file was rewritten between the connection's listing and this read.
                self._con = self.space.connect()
                return self._con.execute(query, params or []).fetchall()

    def search(self, question: str, vector: np.ndarray | None, limit: int,
               since_ns: int | None, until_ns: int | None,
               word_vectors: dict[str, np.ndarray] | None = None) -> list[Hit]:
        """word_vectors: vectors of the question's content words, for expansion."""
        fetch = limit * CANDIDATES_PER_RESULT * (VIEW_OVERFETCH if self.space.where else 1)
        query = search_terms.query_terms(question)
        unknown = [v for w, v in (word_vectors or {}).items() if w not in self.vocabulary]
        if unknown:
            query += self.vocabulary.expand(np.vstack(unknown))
        hits = self.store.search(self.collection, " ".join(dict.fromkeys(query)), vector, fetch, since_ns, until_ns)
        for hit in hits:
            hit.space = self.space.name
        if self.space.where and hits:
            # A view Space shares its source's memory: keep what its filter keeps.
            keep = {row[0] for row in self.sql(
                "SELECT line_id FROM logs WHERE line_id IN (SELECT unnest(?))", [[h.line_id for h in hits]])}
            hits = [h for h in hits if h.line_id in keep]
        return hits

    def stats(self, template_ids: list[str], since_ns: int | None, until_ns: int | None) -> list[TemplateStat]:
        if not template_ids:
            return []
        where, params = ["template_id IN (SELECT unnest(?))"], [template_ids]
        if since_ns is not None:
            where.append("epoch_ns(timestamp) >= ?")
            params.append(since_ns)
        if until_ns is not None:
            where.append("epoch_ns(timestamp) < ?")
            params.append(until_ns)
        condition = " AND ".join(where)
        rows = self.sql(
            f"""SELECT template_id, count(*), epoch_ns(min(timestamp)), epoch_ns(max(timestamp))
                FROM logs WHERE {condition} GROUP BY template_id""", params)
        texts = dict(self.sql("SELECT template_id, template FROM template_texts WHERE template_id IN "
                              "(SELECT unnest(?))", [template_ids]))
        values = self.sql(
            f"""WITH m AS (SELECT template_id, labels, fields FROM logs WHERE {condition}),
                     kv AS (SELECT template_id, unnest(map_entries(labels)) AS e FROM m
                            UNION ALL SELECT template_id, unnest(map_entries(fields)) AS e FROM m)
                SELECT template_id, e.key, e.value, count(*) AS n FROM kv
                GROUP BY ALL ORDER BY template_id, e.key, n DESC""", params)
        by_template: dict[str, dict[str, list[tuple[str, int]]]] = {}
        for tid, key, value, n in values:
            by_template.setdefault(tid, {}).setdefault(key, []).append((value, n))
        stats = []
        for tid, count, first, last in rows:
            keys = by_template.get(tid, {})
            # Keys that vary a little say most (which pods, which users); keys
            # with one value come next; near-unique keys (ids, times) are left out.
            useful = sorted((k for k, vs in keys.items() if len(vs) <= MAX_DISTINCT_FOR_STATS),
                            key=lambda k: (len(keys[k]) == 1, len(keys[k])))[:TOP_VALUE_KEYS]
            top = [(k, v, n) for k in useful for v, n in keys[k][:TOP_VALUES_PER_KEY]]
            stats.append(TemplateStat(self.space.name, tid, texts.get(tid, ""), count, first, last, top))
        order = {tid: i for i, tid in enumerate(template_ids)}
        return sorted(stats, key=lambda s: order[s.template_id])

    def line_count(self) -> int:
        return self.sql("SELECT count(*) FROM logs")[0][0]


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
    stats = []
    for memory in memories:
        wanted = list(dict.fromkeys(h.template_id for h in hits if h.space == memory.space.name and h.template_id))
        stats += memory.stats(wanted[:max_stats], since_ns, until_ns)
    return Recalled(hits, stats)
