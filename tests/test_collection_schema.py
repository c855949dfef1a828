"""The operator creates a Space's Weaviate collection; the indexer writes it and the Agent
searches it with the schema of monologue.agent.memory.WeaviateStore. The two must agree
(they are separate images, so each has its own copy): checked in the real Weaviate."""

from __future__ import annotations

import uuid

import pytest
from weaviate.classes.config import Configure, DataType, Property, Tokenization

from monologue.agent.memory import WeaviateStore
from monologue.operator.settings import Settings
from monologue.operator.vectorstore import Weaviate


def schema(store: WeaviateStore, name: str) -> tuple:
    config = store.client.collections.get(name).config.get()
    index = config.inverted_index_config
    return ({p.name: (p.data_type, p.tokenization, p.index_searchable, p.index_filterable) for p in config.properties},
            (index.bm25.b, index.bm25.k1, index.stopwords.preset), (config.vector_config, config.vectorizer))


@pytest.fixture
def stores(weaviate):
    agent = WeaviateStore(f"http://{weaviate.host}:{weaviate.http_port}", weaviate.grpc_port)
    operator = Weaviate(Settings.from_env({"WEAVIATE_URL": f"http://{weaviate.host}:{weaviate.http_port}",
                                           "WEAVIATE_GRPC_PORT": str(weaviate.grpc_port)}))
    names: list[str] = []
    yield agent, operator, names
    for name in names:
        agent.drop(name)
    agent.close()
    operator.close()


def test_the_operator_creates_a_collection_as_the_indexer_would(stores):
    agent, operator, names = stores
    by_agent, by_operator = f"Schema_agent_{uuid.uuid4().hex[:8]}", f"Schema_operator_{uuid.uuid4().hex[:8]}"
    names += [by_agent, by_operator]
    agent.ensure(by_agent)
    assert operator.ensure_collection(by_operator, "a Space")
    assert schema(agent, by_operator) == schema(agent, by_agent)
    agent.ensure(by_operator)  # the indexer takes it as it is


def test_the_operator_brings_a_collection_of_an_older_schema_up_to_date(stores):
    agent, operator, names = stores
    old = f"Schema_old_{uuid.uuid4().hex[:8]}"
    names.append(old)
    agent.client.collections.create(old, vector_config=Configure.Vectors.self_provided(), properties=[
        Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD)])
    assert not operator.ensure_collection(old, "a Space")
    properties, bm25, _ = schema(agent, old)
    assert properties["terms"] == (DataType.TEXT, Tokenization.WHITESPACE, True, True)
    assert bm25 == schema(agent, _fresh(agent, names))[1]
    agent.ensure(old)


def _fresh(agent: WeaviateStore, names: list[str]) -> str:
    name = f"Schema_fresh_{uuid.uuid4().hex[:8]}"
    names.append(name)
    agent.ensure(name)
    return name
