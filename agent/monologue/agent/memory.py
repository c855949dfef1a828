"""Agent memory: one object per (redacted) log line, behind one small interface.

Two stores implement it and pass the same tests: LanceDB (embedded, a local
directory or S3) and Weaviate (cluster, one collection per Space). Each
object has the line's redacted text, its search terms (terms.py; the only
BM25-indexed field, split on whitespace by both stores so both match the same
words), template id and text, labels, level, timestamp, line_id, and a vector
(its template's by default). Object identity derives from line_id, so
re-indexing never duplicates.

Both stores rank by relative-score fusion: BM25 scaled to the best hit, plus
SIMILARITY_WEIGHT times the cosine with the question. BM25 uses b = BM25_B.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

# Columns of the rows handed to upsert (vectors travel beside them).
ROW_SCHEMA = pa.schema([
    ("line_id", pa.string()),
    ("text", pa.string()),
    ("terms", pa.string()),  # terms.line_terms(text)
    ("template_id", pa.string()),
    ("template", pa.string()),
    ("level", pa.string()),
    ("labels", pa.string()),  # JSON object
    ("timestamp", pa.timestamp("ns", tz="UTC")),
    ("space", pa.string()),
])


@dataclass
class Hit:
    line_id: str
    text: str
    template_id: str
    template: str
    level: str | None
    labels: dict[str, str]
    timestamp_ns: int
    space: str
    score: float


class StoreUnavailable(ConnectionError):
    """The vector store cannot be reached; retry later."""


class StoreOutdated(RuntimeError):
    """The memory was written in an older layout; it must be rebuilt."""


class VectorStore(Protocol):
    def ensure(self, collection: str, dimension: int) -> None: ...
    # known_new: the caller knows none of these line_ids is stored yet, so a
    # store may append instead of merging (LanceDB: several times faster).
    def upsert(self, collection: str, rows: pa.Table, vectors: np.ndarray, known_new: bool = False) -> None: ...
    # terms: the question's search terms (terms.query_terms), space-separated.
    def search(self, collection: str, terms: str, vector: np.ndarray | None, limit: int,
               since_ns: int | None = None, until_ns: int | None = None) -> list[Hit]: ...
    def count(self, collection: str) -> int: ...
    def drop(self, collection: str) -> None: ...
    # After a batch of upserts: make the new objects fast to search.
    def optimize(self, collection: str) -> None: ...


def collection_name(namespace: str, space: str) -> str:
    """A name both stores accept: Weaviate wants [A-Z][A-Za-z0-9_]*."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", f"{namespace}_{space}").strip("_")
    return f"Space_{cleaned}"


def object_uuid(line_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"monologue:line:{line_id}"))


def _hit(row: dict, score: float) -> Hit:
    ts = row["timestamp"]
    ts_ns = ts if isinstance(ts, int) else int(ts.timestamp() * 1e9) if ts else 0
    return Hit(row["line_id"], row["text"], row.get("template_id") or "", row.get("template") or "",
               row.get("level"), json.loads(row.get("labels") or "{}"), ts_ns, row.get("space") or "",
               float(score))


# ---------------------------------------------------------------- fusion

RRF_K = 60  # reciprocal-rank fusion across Spaces (recall.py), whose scores do not compare
# Words lead; meaning breaks ties and finds lines that share no word with the
# question. Measured on LogQA train (HDFS, OpenSSH, Spark): template vectors
# weighted more than this put a line's siblings of the same template (all with
# one vector) ahead of the line the words point at.
SIMILARITY_WEIGHT = 0.05
# Less length normalisation than the usual 0.75: a log line that holds more
# (a function name, a port) is not a worse match for it. Tuned on LogQA train.
BM25_B, BM25_K1 = 0.3, 1.2


def fuse(words: list[dict], meaning: list[dict], question: np.ndarray | None) -> list[tuple[dict, float]]:
    """Relative-score fusion of BM25 hits (with a "_score") and vector hits."""
    best = max((row["_score"] for row in words), default=0.0) or 1.0
    scores = {row["line_id"]: (row, row["_score"] / best) for row in words}
    for row in meaning:
        scores.setdefault(row["line_id"], (row, 0.0))
    if question is not None:
        q = question / (np.linalg.norm(question) or 1.0)
        for key, (row, score) in scores.items():
            v = np.asarray(row["vector"], np.float32)
            scores[key] = (row, score + SIMILARITY_WEIGHT * float(v @ q / (np.linalg.norm(v) or 1.0)))
    return sorted(scores.values(), key=lambda pair: first_occurrence_on_ties(pair[1], pair[0]["timestamp"]))


def first_occurrence_on_ties(score: float, timestamp_ns: int | None) -> tuple:
    """Sort key: best score first; among lines that match equally, the oldest.
    The first occurrence is when a condition began, what an incident's
    responder looks for (the figures carry the last seen time). Measured on
    LogQA train against newest first: recall@1 +1.4 points on HDFS, +0.9 on
    OpenSSH, -0.8 on Spark; recall@5 +4.7 on HDFS."""
    return -round(score, 6), timestamp_ns or 0


def _length_factor(length: np.ndarray, average: float, b: float) -> np.ndarray:
    return (BM25_K1 + 1) / (1 + BM25_K1 * (1 - b + b * length / average))


# ---------------------------------------------------------------- LanceDB

FTS_INDEX = "terms_idx"  # LanceDB's name for the index on `terms`
REBUILD_SHARE = 0.5  # of a table's rows not in its FTS index, above which optimize() rebuilds it


def _fts_config():
    from lancedb.index import FTS

    # terms.py made the words: split on spaces only, nothing more.
    return FTS(with_position=False, base_tokenizer="whitespace", lower_case=False, stem=False,
               remove_stop_words=False, ascii_folding=False, max_token_length=None)


class LanceStore:
    """Embedded: one LanceDB table per collection under a directory or s3:// URI."""

    def __init__(self, uri: str):
        # Lance's Rust side logs deprecation notices to stderr, into the user's answer.
        os.environ.setdefault("LANCE_LOG", "error")
        import lancedb

        self.db = lancedb.connect(uri)
        self._tables: dict = {}
        self._average_terms: dict[str, tuple[int, float]] = {}  # collection -> (rows, mean terms per row)

    def _table(self, collection: str):
        if collection not in self._tables:
            table = self.db.open_table(collection)
            if "terms" not in table.schema.names:
                raise StoreOutdated(
                    f"memory {collection} was built by an older monologue without search terms; "
                    "delete the Space's memory and its state/_index, then index again")
            self._tables[collection] = table
        return self._tables[collection]

    def ensure(self, collection: str, dimension: int) -> None:
        if collection in self.db.list_tables().tables:
            return
        schema = ROW_SCHEMA.append(pa.field("vector", pa.list_(pa.float32(), dimension)))
        table = self.db.create_table(collection, schema=schema)
        table.create_index("terms", config=_fts_config())
        self._tables[collection] = table

    def upsert(self, collection: str, rows: pa.Table, vectors: np.ndarray, known_new: bool = False) -> None:
        if rows.num_rows == 0:
            return
        dim = vectors.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), dim)
        data = rows.select(ROW_SCHEMA.names).append_column("vector", column)
        table = self._table(collection)
        if known_new:
            table.add(data)
        else:
            (table.merge_insert("line_id").when_matched_update_all().when_not_matched_insert_all()
             .execute(data))

    def _exists(self, collection: str) -> bool:
        return collection in self._tables or collection in self.db.list_tables().tables

    def _mean_terms(self, collection: str) -> float:
        """Mean terms per row, for BM25 length normalisation; re-measured as the table grows."""
        import pyarrow.compute as pc

        rows = self.count(collection)
        measured_rows, mean = self._average_terms.get(collection, (0, 0.0))
        if not measured_rows or rows > measured_rows * 1.1:
            terms = self._table(collection).search().select(["terms"]).limit(None).to_arrow()["terms"]
            mean = float(pc.mean(pc.list_value_length(pc.split_pattern(terms, " "))).as_py() or 1.0)
            self._average_terms[collection] = (rows, mean)
        return mean

    def _bm25_b(self, collection: str, words: list[dict]) -> None:
        """LanceDB scores with b = 0.75 and no way to set it: rescale its scores to BM25_B.

        Terms are unique per row (tf = 1), so a row's score is its length
        factor times the idf of the matched terms; swapping the factor is exact.
        """
        if not words:
            return
        mean = self._mean_terms(collection)
        length = np.array([len(row["terms"].split(" ")) for row in words], np.float64)
        ratio = _length_factor(length, mean, BM25_B) / _length_factor(length, mean, 0.75)
        for row, r in zip(words, ratio):
            row["_score"] *= float(r)

    def search(self, collection, terms, vector, limit, since_ns=None, until_ns=None) -> list[Hit]:
        if not self._exists(collection):
            return []  # a Space with nothing indexed yet
        table = self._table(collection)
        where = _lance_time_filter(since_ns, until_ns)

        def ranked(query) -> list[dict]:
            if where:
                query = query.where(where, prefilter=True)
            found = query.limit(limit).to_arrow()
            # As int nanoseconds: a datetime cannot hold Loki's nanoseconds.
            found = found.set_column(found.schema.get_field_index("timestamp"), "timestamp",
                                     found["timestamp"].cast(pa.int64()))
            return found.to_pylist()

        words = ranked(table.search(terms, query_type="fts", fts_columns="terms")) if terms.strip() else []
        self._bm25_b(collection, words)
        # Vectors order the word hits (fuse); a scan of every vector is only
        # worth it when words found too little (the vectors have no ANN index:
        # lines of one template share theirs, so one would not narrow much).
        meaning = (ranked(table.search(vector.astype(np.float32)))
                   if vector is not None and len(words) < limit else [])
        return [_hit(row, score) for row, score in fuse(words, meaning, vector)][:limit]

    def count(self, collection: str) -> int:
        return self._table(collection).count_rows() if self._exists(collection) else 0

    def optimize(self, collection: str) -> None:
        """Fold appended rows into the FTS index: unindexed rows are scanned on every search.

        Mostly new rows (a first pass, a backfill): building the index afresh
        is 3x faster than merging them into it; a few: merge (and compact)."""
        if not self._exists(collection):
            return
        table = self._table(collection)
        stats = table.index_stats(FTS_INDEX)
        if stats and stats.num_unindexed_rows > REBUILD_SHARE * (stats.num_indexed_rows + stats.num_unindexed_rows):
            table.create_index("terms", config=_fts_config(), replace=True)
        else:
            table.optimize()

    def drop(self, collection: str) -> None:
        if collection in self.db.list_tables().tables:
            self.db.drop_table(collection)
        self._tables.pop(collection, None)


def _lance_time_filter(since_ns, until_ns) -> str:
    parts = []
    if since_ns is not None:
        parts.append(f"timestamp >= arrow_cast({int(since_ns)}, 'Timestamp(Nanosecond, Some(\"UTC\"))')")
    if until_ns is not None:
        parts.append(f"timestamp < arrow_cast({int(until_ns)}, 'Timestamp(Nanosecond, Some(\"UTC\"))')")
    return " AND ".join(parts)


# ---------------------------------------------------------------- Weaviate


class WeaviateStore:
    """Cluster: one Weaviate collection per Space, bring-your-own vectors."""

    def __init__(self, url: str, grpc_port: int = 50051):
        import weaviate
        from weaviate.exceptions import WeaviateBaseError

        parsed = urlparse(url)
        try:
            self.client = weaviate.connect_to_custom(
                http_host=parsed.hostname, http_port=parsed.port or 8080, http_secure=parsed.scheme == "https",
                grpc_host=parsed.hostname, grpc_port=grpc_port, grpc_secure=parsed.scheme == "https",
            )
        except WeaviateBaseError as err:
            raise StoreUnavailable(f"cannot reach Weaviate at {url}: {err}") from err

    def close(self) -> None:
        self.client.close()

    def ensure(self, collection: str, dimension: int) -> None:
        from weaviate.classes.config import Configure, DataType, Property, StopwordsPreset, Tokenization

        if self.client.collections.exists(collection):
            if not any(p.name == "terms" for p in self.client.collections.get(collection).config.get().properties):
                raise StoreOutdated(f"collection {collection} was built by an older monologue without search "
                                    "terms; delete it and the Space's state/_index, then index again")
            return
        keyword = dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False)
        self.client.collections.create(
            collection,
            description="monologue Space memory: one object per redacted log line",
            properties=[
                Property(name="text", data_type=DataType.TEXT, index_searchable=False),
                # terms.py made the words: split on spaces only, nothing more.
                Property(name="terms", data_type=DataType.TEXT, tokenization=Tokenization.WHITESPACE),
                Property(name="line_id", **keyword),
                Property(name="template_id", **keyword),
                Property(name="template", data_type=DataType.TEXT, index_searchable=False),
                Property(name="level", **keyword),
                Property(name="labels", data_type=DataType.TEXT, index_searchable=False),
                Property(name="timestamp", data_type=DataType.DATE),
                Property(name="space", **keyword),
            ],
            vector_config=Configure.Vectors.self_provided(),
            inverted_index_config=Configure.inverted_index(
                bm25_b=BM25_B, bm25_k1=BM25_K1, stopwords_preset=StopwordsPreset.NONE),
        )

    def upsert(self, collection: str, rows: pa.Table, vectors: np.ndarray, known_new: bool = False) -> None:
        # Object ids derive from line_id: importing again overwrites, known_new or not.
        handle = self.client.collections.get(collection)
        # Weaviate dates (and Python datetimes) hold microseconds; Loki's timestamps have nanoseconds.
        column = rows.schema.get_field_index("timestamp")
        rows = rows.set_column(column, "timestamp", rows["timestamp"].cast(pa.timestamp("us", tz="UTC"), safe=False))
        with handle.batch.fixed_size(batch_size=500, concurrent_requests=2) as batch:
            for row, vector in zip(rows.to_pylist(), vectors):
                properties = {k: row[k] for k in ROW_SCHEMA.names if row[k] is not None}
                batch.add_object(properties, uuid=object_uuid(row["line_id"]), vector=vector.tolist())
        failed = handle.batch.failed_objects
        if failed:
            raise StoreUnavailable(f"{len(failed)} objects failed to import: {failed[0].message}")

    def search(self, collection, terms, vector, limit, since_ns=None, until_ns=None) -> list[Hit]:
        import datetime as dt

        from weaviate.classes.query import Filter, HybridFusion, MetadataQuery

        if not self.client.collections.exists(collection):
            return []  # a Space with nothing indexed yet
        handle = self.client.collections.get(collection)
        filters = None
        for bound, op in ((since_ns, "greater_or_equal"), (until_ns, "less_than")):
            if bound is not None:
                moment = dt.datetime.fromtimestamp(bound / 1e9, dt.timezone.utc)
                condition = getattr(Filter.by_property("timestamp"), op)(moment)
                filters = condition if filters is None else filters & condition
        if terms.strip():
            # alpha: the vector's share after both sides are scaled to [0, 1], as SIMILARITY_WEIGHT is for LanceDB.
            alpha = SIMILARITY_WEIGHT / (1 + SIMILARITY_WEIGHT) if vector is not None else 0.0
            found = handle.query.hybrid(
                query=terms, vector=None if vector is None else vector.tolist(), alpha=alpha,
                limit=limit, filters=filters, fusion_type=HybridFusion.RELATIVE_SCORE,
                query_properties=["terms"], return_metadata=MetadataQuery(score=True),
            )
        else:
            found = handle.query.near_vector(vector.tolist(), limit=limit, filters=filters,
                                             return_metadata=MetadataQuery(distance=True))
        hits = []
        for obj in found.objects:
            props = dict(obj.properties)
            props["timestamp"] = props.get("timestamp")
            score = obj.metadata.score if obj.metadata.score is not None else -(obj.metadata.distance or 0)
            hits.append(_hit(props, score))
        return sorted(hits, key=lambda hit: first_occurrence_on_ties(hit.score, hit.timestamp_ns))

    def count(self, collection: str) -> int:
        if not self.client.collections.exists(collection):
            return 0
        return self.client.collections.get(collection).aggregate.over_all(total_count=True).total_count

    def optimize(self, collection: str) -> None:
        pass  # Weaviate indexes each object as it is imported

    def drop(self, collection: str) -> None:
        self.client.collections.delete(collection)
