"""The harness's S3 endpoint is real: boto3 writes, pyarrow's S3FileSystem reads."""

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def test_boto3_puts_and_lists_and_pyarrow_reads_parquet(s3_env):
    client = boto3.client("s3")
    client.create_bucket(Bucket="smoke")
    table = pa.table({"line": ["hello", "world"]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    client.put_object(Bucket="smoke", Key="a/b.parquet", Body=sink.getvalue().to_pybytes())

    keys = [o["Key"] for o in client.list_objects_v2(Bucket="smoke")["Contents"]]
    assert keys == ["a/b.parquet"]

    fs = pafs.S3FileSystem(endpoint_override=s3_env.endpoint, region=s3_env.region)
    assert pq.read_table("smoke/a/b.parquet", filesystem=fs).equals(table)

    # and the other way round: pyarrow writes (with checksum trailers), boto3 reads
    pq.write_table(table, "smoke/c.parquet", filesystem=fs)
    body = client.get_object(Bucket="smoke", Key="c.parquet")["Body"].read()
    assert pq.read_table(pa.BufferReader(body)).equals(table)
