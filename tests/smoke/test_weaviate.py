"""The harness's Weaviate is real: a collection is created, filled, hybrid-queried."""

import weaviate as weaviate_client
from weaviate.classes.config import Configure, DataType, Property


def test_collection_created_filled_and_queried_hybrid(weaviate):
    client = weaviate_client.connect_to_local(
        host=weaviate.host, port=weaviate.http_port, grpc_port=weaviate.grpc_port
    )
    try:
        client.collections.delete("Smoke")
        smoke = client.collections.create(
            "Smoke",
            properties=[Property(name="text", data_type=DataType.TEXT)],
            vector_config=Configure.Vectors.self_provided(),
        )
        with smoke.batch.fixed_size(batch_size=10) as batch:
            batch.add_object({"text": "disk full on node-3"}, vector=[1.0, 0.0, 0.0])
            batch.add_object({"text": "user login succeeded"}, vector=[0.0, 1.0, 0.0])
        assert smoke.batch.failed_objects == []
        found = smoke.query.hybrid(query="disk", vector=[0.9, 0.1, 0.0], limit=1)
        assert [o.properties["text"] for o in found.objects] == ["disk full on node-3"]
    finally:
        client.close()
