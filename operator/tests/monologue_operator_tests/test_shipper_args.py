"""The shipper arguments the operator renders, run by the real loki-shipper binary
(built from loki-shipper-go/) against the harness's real Loki and S3: the flags
parse and validate, and the Parquet lands where space.json says the Space lives."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import urllib.request

import boto3

from harness.process import ROOT
from monologue.operator import space as space_module
from monologue.operator.settings import Settings
from monologue_operator_tests.manifests import space


def build_shipper(out_dir) -> str:
    binary = out_dir / "loki-shipper"
    result = subprocess.run(
        ["go", "build", "-o", str(binary), "./cmd/loki-shipper"],
        cwd=ROOT / "loki-shipper-go", capture_output=True, text=True, timeout=600,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"},
    )
    assert result.returncode == 0, f"go build of loki-shipper failed:\n{result.stderr}"
    return str(binary)


def push_line(loki_url: str, labels: dict, when: datetime.datetime, line: str) -> None:
    body = json.dumps({"streams": [{"stream": labels, "values": [[str(int(when.timestamp() * 1e9)), line]]}]})
    request = urllib.request.Request(f"{loki_url}/loki/api/v1/push", body.encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def test_the_rendered_shipper_arguments_ship_to_the_spaces_prefix(tmp_path, loki, s3):
    binary = build_shipper(tmp_path)
    now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    start, end = now - datetime.timedelta(minutes=3), now - datetime.timedelta(minutes=2)
    push_line(loki.url, {"app": "checkout"}, start + datetime.timedelta(seconds=10), "error: card declined")

    manifest = space("checkout")
    manifest["metadata"]["namespace"] = "shop"
    manifest["spec"]["source"]["loki"]["start"] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    settings = Settings.from_env({"MONOLOGUE_LOKI_URL": loki.url, "AWS_ENDPOINT_URL": s3.endpoint,
                                  "AWS_REGION": s3.region})
    args = space_module.shipper_args(manifest, manifest["spec"]["storage"], settings)
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name=s3.region,
                          aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key)
    client.create_bucket(Bucket="logs")

    # --once and --end make the shipper stop after the window instead of following Loki.
    result = subprocess.run(
        [binary, *args, "--once", f"--end={end.strftime('%Y-%m-%dT%H:%M:%SZ')}", "--http.listen-address=127.0.0.1:0"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
    )
    assert result.returncode == 0, result.stderr

    keys = [o["Key"] for o in client.list_objects_v2(Bucket="logs").get("Contents", [])]
    expected = f"prod/spaces/shop/checkout/dt={start:%Y-%m-%d}/"
    assert any(k.startswith(expected) and k.endswith(".parquet") for k in keys), keys
