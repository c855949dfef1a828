"""The Spaces' Weaviate collections: create, update, count, delete.

The operator creates the collection with the schema the indexer (which writes)
and the Agent (which reads) use: monologue.agent.memory.WeaviateStore's, which
tests/test_collection_schema.py checks this one against. The objects carry no
vectors: the indexer keeps one per template beside the Space's index.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass

import weaviate
from weaviate.classes.aggregate import Metrics
from weaviate.classes.config import Configure, DataType, Property, Reconfigure, StopwordsPreset, Tokenization
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from .settings import Settings



# BM25 over the terms (the agent's monologue.agent.memory.BM25_B, BM25_K1); no stopwords,
# since the agent makes the terms itself.
BM25 = dict(bm25_b=0.3, bm25_k1=1.2, stopwords_preset=StopwordsPreset.NONE)


def properties() -> list[Property]:
    keyword = dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False)
    return [
        Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD,
                 index_searchable=False, description="the redacted log line"),
        # The line's search terms, made by the agent (terms.py): the only property BM25 searches.
        Property(name="terms", data_type=DataType.TEXT, tokenization=Tokenization.WHITESPACE,
                 index_searchable=True, description="the line's search terms, space-separated"),
        Property(name="template_id", **keyword, description="id of the line's template"),
        Property(name="template", data_type=DataType.TEXT, tokenization=Tokenization.WORD,
                 index_searchable=False, description="the line's template"),
        Property(name="level", **keyword, description="trace, debug, info, warn, error or fatal"),
        Property(name="labels", data_type=DataType.TEXT, tokenization=Tokenization.WORD,
                 index_searchable=False, description="the stream labels, as a JSON object"),
        Property(name="timestamp", data_type=DataType.DATE, description="the line's timestamp"),
        Property(name="line_id", **keyword, description="the line's id in the Space's Parquet"),
        Property(name="space", **keyword, description="namespace/name of the Space"),
    ]


class VectorStoreUnavailable(RuntimeError):
    """Weaviate could not be reached or refused a request."""


@dataclass(frozen=True)
class CollectionStats:
    lines: int
    newest: str | None  # RFC 3339 timestamp of the newest line


class Weaviate:
    """One lazily (re)connected client shared by the handler threads."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: weaviate.WeaviateClient | None = None
        self._lock = threading.Lock()

    def _connected(self) -> weaviate.WeaviateClient:
        with self._lock:
            if self._client is None:
                s = self.settings
                auth = weaviate.auth.AuthApiKey(s.weaviate_api_key) if s.weaviate_api_key else None
                try:
                    self._client = weaviate.connect_to_custom(
                        http_host=s.weaviate_host, http_port=s.weaviate_http_port,
                        http_secure=s.weaviate_secure, grpc_host=s.weaviate_host,
                        grpc_port=s.weaviate_grpc_port, grpc_secure=s.weaviate_secure,
                        auth_credentials=auth, skip_init_checks=True,
                    )
                except WeaviateBaseError as e:
                    raise VectorStoreUnavailable(f"cannot connect to Weaviate at {s.weaviate_url}: {_brief(e)}") from None
            return self._client

    def _reset(self) -> None:
        """Forget the client after a failure, so the next call reconnects."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken client must not hide the real error
                pass

    def _failed(self, what: str, e: Exception) -> VectorStoreUnavailable:
        self._reset()
        return VectorStoreUnavailable(f"Weaviate at {self.settings.weaviate_url}: {what}: {_brief(e)}")

    def ensure_collection(self, name: str, description: str) -> bool:
        """Create the collection, or add what an older schema lacks; True if created."""
        client = self._connected()
        try:
            if not client.collections.exists(name):
                try:
                    client.collections.create(
                        name, description=description, properties=properties(),
                        inverted_index_config=Configure.inverted_index(**BM25),
                    )
                    return True
                except UnexpectedStatusCodeError as e:
                    if e.status_code != 422 or "already exists" not in str(e):
                        raise
                    # Created concurrently by another reconcile of the same Space: fine.
            collection = client.collections.get(name)
            config = collection.config.get()
            have = {p.name for p in config.properties}
            for prop in properties():
                if prop.name not in have:
                    collection.config.add_property(prop)
            index = config.inverted_index_config
            if (index.bm25.b, index.bm25.k1, index.stopwords.preset) != tuple(BM25.values()):
                collection.config.update(inverted_index_config=Reconfigure.inverted_index(**BM25))
            if config.description != description:
                collection.config.update(description=description)
            return False
        except WeaviateBaseError as e:
            raise self._failed(f"ensure collection {name}", e) from None

    def delete_collection(self, name: str) -> bool:
        """Delete the collection; False when there was none."""
        client = self._connected()
        try:
            if not client.collections.exists(name):
                return False
            client.collections.delete(name)
            return True
        except WeaviateBaseError as e:
            raise self._failed(f"delete collection {name}", e) from None

    def exists(self, name: str) -> bool:
        client = self._connected()
        try:
            return client.collections.exists(name)
        except WeaviateBaseError as e:
            raise self._failed(f"look up collection {name}", e) from None

    def stats(self, name: str) -> CollectionStats:
        client = self._connected()
        try:
            result = client.collections.get(name).aggregate.over_all(
                total_count=True, return_metrics=Metrics("timestamp").date_(maximum=True)
            )
        except WeaviateBaseError as e:
            raise self._failed(f"count collection {name}", e) from None
        newest = result.properties["timestamp"].maximum if result.properties else None
        if isinstance(newest, datetime.datetime):
            newest = newest.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return CollectionStats(lines=result.total_count or 0, newest=newest or None)

    def close(self) -> None:
        self._reset()


def _brief(e: Exception) -> str:
    """The first line of a client error: its full text can carry whole response bodies."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
