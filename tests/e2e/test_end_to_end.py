"""End to end: the Deployments the operator writes, run as they are written.

The operator (kopf, against the real kube-apiserver) reconciles two ModelServers, a
Space reading Loki and an Agent; the pods of the Deployments it creates (model servers,
shipper, indexer, agent) run as local processes from their container specs (pods.py);
lines pushed into the real Loki are answered about by the Agent over gRPC, citing them.
Freshness, the seconds from pushing a line to an Ask that cites it, is reported in the
terminal summary; `bench/freshness.py` turns it into a benchmark figure.
"""

from __future__ import annotations

import calendar
import datetime
import json
import os
import random
import statistics
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import grpc

from e2e.pods import Image, LocalPods
from harness.process import CACHE
from monologue.api.v1 import agent_pb2 as pb
from monologue.api.v1 import agent_pb2_grpc
from monologue_operator_tests.conftest import condition, wait_for
from monologue_operator_tests.manifests import agent, modelserver, space
from shipper import support

BIN = Path(sys.executable).parent
# The Services of the cluster outside the test's namespace, as the operator is told them.
LOKI_SERVICE, S3_SERVICE = "loki.monologue.svc:3100", "s3.monologue.svc:9000"
SAMPLES = int(os.environ.get("MONOLOGUE_E2E_FRESHNESS_SAMPLES", "3"))
ANSWERABLE_TIMEOUT = 60.0


def images(shipper_binary: Path) -> dict[str, Image]:
    """The images the operator names, and what runs in their place here."""
    return {
        "loki-shipper": Image({"/loki-shipper": str(shipper_binary)}),
        "agent": Image({"monologue": str(BIN / "monologue")}),
        # The image's ENV points at the models baked into it; here, the test cache.
        "model-server": Image({"monologue-model-server": str(BIN / "monologue-model-server")},
                              {"MONOLOGUE_CACHE": str(CACHE)}),
    }


def order_line(token: str) -> str:
    return f'level=error msg="payment declined" order={token} provider=acme reason=insufficient_funds'


def noise(n: int) -> list[str]:
    rng = random.Random(n)
    shapes = [
        lambda i: f'level=info msg="request served" path=/api/cart/{i} status=200 duration_ms={rng.randint(3, 90)}',
        lambda i: f'level=warn msg="slow upstream" upstream=inventory latency_ms={rng.randint(500, 2000)}',
        lambda i: f'level=info msg="payment authorized" order=ord{i:05d} provider=acme',
    ]
    return [shapes[i % 3](i) for i in range(n)]


def loki_has(loki_url: str, query: str, token: str) -> bool:
    params = urllib.parse.urlencode({"query": f'{query} |= "{token}"', "limit": 1,
                                     "start": time.time_ns() - 300 * 10**9, "end": time.time_ns() + 10**9})
    with urllib.request.urlopen(f"{loki_url}/loki/api/v1/query_range?{params}", timeout=10) as r:
        return bool(json.load(r)["data"]["result"])


def shipped_at(shipper_log: Path, ts_ns: int) -> float | None:
    """When the shipper wrote the object holding a line stamped ts_ns (epoch seconds), from its log."""
    for record in map(json.loads, shipper_log.read_text().splitlines()):
        if record.get("msg") != "object written":
            continue
        start, end = (calendar.timegm(time.strptime(t, "%Y%m%dT%H%M%SZ")) * 10**9
                      for t in record["object"].rsplit("/", 1)[1].removesuffix(".parquet").split("_"))
        if start <= ts_ns < end:
            seconds, _, fraction = record["time"].rstrip("Z").partition(".")
            return calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{fraction or 0}")
    return None


def test_the_operators_pods_answer_about_lines_pushed_seconds_ago(
        cluster, namespace, start_operator, loki, s3, weaviate, shipper_binary,
        generation_model, embedding_model, tmp_path, report_figure):
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    support.s3_client(s3).create_bucket(Bucket=bucket)
    cluster.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "s3-keys"},
        "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}})
    start_operator({
        "WEAVIATE_URL": f"http://{weaviate.host}:{weaviate.http_port}",  # the operator calls it too
        "WEAVIATE_GRPC_PORT": str(weaviate.grpc_port),
        "MONOLOGUE_LOKI_URL": f"http://{LOKI_SERVICE}",
        "AWS_ENDPOINT_URL": f"http://{S3_SERVICE}",
        "AWS_REGION": s3.region,
    })

    app = f"checkout-{uuid.uuid4().hex[:6]}"
    query = f'{{app="{app}"}}'
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=2)
    embedder = modelserver("minilm", "embedding", packaged="all-minilm-l6-v2")
    generator = modelserver("smollm", "generation", packaged="smollm2-135m-instruct")
    for server, context in ((embedder, 512), (generator, 4096)):
        server["spec"].update(contextSize=context, threads=1)  # two cores, shared
    manifests = [embedder, generator,
                 space("checkout", policy="Delete",
                       source={"loki": {"query": query, "start": started.strftime("%Y-%m-%dT%H:%M:%SZ")}},
                       storage={"uri": f"s3://{bucket}/e2e", "credentials": {"secretRef": {"name": "s3-keys"}}}),
                 agent("sre", ["checkout"], topK=3)]
    for manifest in manifests:
        cluster.apply(manifest, namespace)
    deployments = ["minilm-model", "smollm-model", "checkout-shipper", "checkout-indexer", "sre-agent"]
    wait_for(lambda: all(cluster.deployment(namespace, d) for d in deployments), 30, "the operator's Deployments")
    wait_for(lambda: condition(cluster.get("spaces", namespace, "checkout")).get("status") == "True", 30,
             "the Space Ready")
    wait_for(lambda: condition(cluster.get("agents", namespace, "sre")).get("status") == "True", 30,
             "the Agent Ready")

    pods = LocalPods(cluster.api, namespace, images(shipper_binary),
                     {LOKI_SERVICE: loki.url.removeprefix("http://"), S3_SERVICE: s3.endpoint.removeprefix("http://")},
                     tmp_path / "pods", Path(os.environ["MONOLOGUE_TEST_LOGS"]) / namespace,
                     {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]})
    pods.add(*deployments)
    try:
        pods.start(timeout=180)
        channel = grpc.insecure_channel(pods.address("sre-agent", 50051))
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        labels = {"app": app, "pod": "checkout-7d9f8c-x2x4q"}
        now = time.time_ns()
        support.push_lines(loki.url, labels, [(now - (200 - i) * 10**7, line) for i, line in enumerate(noise(200))])

        def ask(token: str, **options) -> pb.AskResponse:
            return stub.Ask(pb.AskRequest(question=f"Why was the payment of order {token} declined?", **options),
                            timeout=120)

        def cites(token: str) -> bool:
            pods.check_running()
            return any(token in c.line for c in ask(token, retrieval_only=True).citations)

        shipper_log = next(p.server.log_path for p in pods.pods if p.deployment == "checkout-shipper")

        def seconds_until_answerable(token: str) -> tuple[float, float, float]:
            """Seconds from the push until Loki returns the line, until it is on S3, until an Ask cites it."""
            stamp = time.time_ns()
            support.push_lines(loki.url, labels, [(stamp, order_line(token))])
            pushed, pushed_wall = time.monotonic(), time.time()
            wait_for(lambda: loki_has(loki.url, query, token), 10, "the line in Loki", interval=0.01)
            in_loki = time.monotonic() - pushed
            wait_for(lambda: cites(token), ANSWERABLE_TIMEOUT, f"an Ask citing order {token}", interval=0.2)
            answerable = time.monotonic() - pushed
            return in_loki, shipped_at(shipper_log, stamp) - pushed_wall, answerable

        # The first line also pays for first uses: a new template to embed, connections.
        _, _, cold = seconds_until_answerable(f"ord{uuid.uuid4().hex[:10]}")
        loki_seconds, shipped, fresh = [], [], []
        rng = random.Random()
        for _ in range(SAMPLES):
            time.sleep(rng.uniform(0, 2))  # land anywhere between two flushes
            token = f"ord{uuid.uuid4().hex[:10]}"
            for figures, value in zip((loki_seconds, shipped, fresh), seconds_until_answerable(token)):
                figures.append(value)

        answer = ask(token)  # with generation, through the generation ModelServer
        citation = next((c for c in answer.citations if token in c.line), None)
        assert citation is not None, [c.line for c in answer.citations]
        assert answer.answer.strip()
        assert citation.space == "checkout" and citation.labels["app"] == app
        assert any(s.template_id == citation.template_id and s.count >= SAMPLES + 1 for s in answer.stats), answer.stats
        report_figure(
            f"freshness_seconds={statistics.median(fresh):.2f} max_seconds={max(fresh):.2f} "
            f"samples={','.join(f'{s:.2f}' for s in fresh)} first_line_seconds={cold:.2f} "
            f"loki_seconds={statistics.median(loki_seconds):.3f} shipped_seconds={statistics.median(shipped):.2f}")
        report_figure(f"answer (cited [{citation.number}]: {citation.cited}): {answer.answer.strip()[:300]!r}")
    except BaseException:
        pods.stop()
        raise
    codes = pods.stop()
    assert all(code == 0 for code in codes.values()), f"exit codes after SIGTERM: {codes}"
