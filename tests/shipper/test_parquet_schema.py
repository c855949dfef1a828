"""The Parquet the Go writer produces, read by pyarrow, matches schema/logs.json."""

from __future__ import annotations

import json
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq

from shipper import support


def arrow_type_name(t: pa.DataType) -> str:
    # pyarrow names a map's entries after the Parquet group; the schema
    # describes the key and value types only.
    if pa.types.is_map(t):
        return f"map<{t.key_type}, {t.item_type}>"
    return str(t)


def test_a_file_written_by_the_go_writer_matches_the_shared_schema(tmp_path):
    sample = tmp_path / "sample.parquet"
    result = subprocess.run(
        ["go", "test", "-count=1", "-run", "TestWrittenFileMatchesTheSharedSchema", "./internal/parquet/"],
        cwd=support.MODULE, env={**support.go_env(), "MONOLOGUE_PARQUET_SAMPLE": str(sample)},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    spec = json.loads(support.SCHEMA.read_text())
    schema = pq.read_schema(sample)

    assert schema.names == [c["name"] for c in spec["columns"]]
    for column in spec["columns"]:
        field = schema.field(column["name"])
        assert arrow_type_name(field.type) == column["arrow_type"], column["name"]
        assert field.nullable == column["nullable"], column["name"]

    metadata = pq.ParquetFile(sample).metadata
    codecs = {metadata.row_group(g).column(c).compression
              for g in range(metadata.num_row_groups) for c in range(metadata.num_columns)}
    assert codecs == {spec["compression"].upper()}

    table = pq.read_table(sample)
    rows = table.drop_columns(["timestamp"]).to_pylist(maps_as_pydicts="strict")
    assert [r["level"] for r in rows] == ["info", None, "error"]
    assert rows[0]["fields"] == {"level": "info", "msg": "up"}
    assert rows[2]["truncated"] and rows[2]["repaired_utf8"]
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == [
        1700000000000000000, 1700000000000000001, 1700000000000000002]

    # The Python side (file ingest) reads fields and levels the same way.
    from monologue.agent import logschema

    for row in rows:
        fields = logschema.parse_fields(row["line"])
        assert (fields or {}) == row["fields"], row["line"]
        assert logschema.level_of(row["line"], fields) == row["level"], row["line"]


def test_line_id_vectors_agree_with_the_reference_in_the_schema_readme():
    vectors = json.loads((support.SCHEMA.parent / "line_id_vectors.json").read_text())["vectors"]
    for v in vectors:
        assert support.line_id(v["labels"], int(v["timestamp_ns"]), v["line"]) == v["line_id"], v["name"]
