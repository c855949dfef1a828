"""The harness's Loki is real: a pushed line comes back from query_range."""

import json
import time
import urllib.parse
import urllib.request


def test_a_line_pushed_to_loki_is_read_back_with_query_range(loki):
    now_ns = time.time_ns()
    push = {"streams": [{"stream": {"app": "smoke"}, "values": [[str(now_ns), "hello loki"]]}]}
    request = urllib.request.Request(
        f"{loki.url}/loki/api/v1/push",
        data=json.dumps(push).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204

    query = urllib.parse.urlencode(
        {"query": '{app="smoke"}', "start": now_ns - 10**9, "end": now_ns + 10**9,
         "direction": "forward"}
    )
    with urllib.request.urlopen(f"{loki.url}/loki/api/v1/query_range?{query}", timeout=10) as r:
        result = json.load(r)["data"]["result"]
    assert [v for stream in result for v in stream["values"]] == [[str(now_ns), "hello loki"]]
