"""GET /metrics: Prometheus text with requests, latency, inference, batch sizes, queues, errors."""

from __future__ import annotations

import re

from tests.service.helpers import clip, files

NF = "convlstm2d_next_frame"


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample line, matched on name and a subset of labels (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        body = line[len(name) + 1 : line.rindex("}")]
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_inference_and_errors(client):
    before = client.get("/metrics").text
    route = "/v1/models/{name}/predict"
    ok = sample(before, "framecast_requests_total", route=route, model=NF, status="200")
    calls = sample(before, "framecast_inference_duration_seconds_count", model=NF)
    batches = sample(before, "framecast_batch_size_bucket", model=NF, le="1")
    errors = sample(before, "framecast_errors_total", route=route, status="422")

    assert (
        client.post(
            f"/v1/models/{NF}/predict", params={"horizon": 3}, files=files(clip())
        ).status_code
        == 200
    )
    assert client.post(f"/v1/models/{NF}/predict", files=files(clip()[:1])).status_code == 422
    assert client.get("/v1/models/ghost").status_code == 404

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, "framecast_requests_total", route=route, model=NF, status="200") == ok + 1
    assert sample(text, "framecast_inference_duration_seconds_count", model=NF) == calls + 3
    assert sample(text, "framecast_batch_size_bucket", model=NF, le="1") == batches + 3
    assert sample(text, "framecast_errors_total", route=route, status="422") == errors + 1
    # unknown model names are folded into one label value (bounded cardinality)
    assert (
        sample(
            text,
            "framecast_requests_total",
            route="/v1/models/{name}",
            model="unknown",
            status="404",
        )
        >= 1
    )
    assert "ghost" not in text
    assert sample(text, "framecast_queue_depth", model=NF) == 0
    assert sample(text, "framecast_model_ready", model=NF) == 1
    hist = sample(text, "framecast_request_duration_seconds_count", route=route, model=NF)
    assert hist >= ok + 2
    for family in (
        "framecast_requests_total counter",
        "framecast_request_duration_seconds histogram",
        "framecast_inference_duration_seconds histogram",
        "framecast_batch_size histogram",
        "framecast_queue_depth gauge",
        "framecast_errors_total counter",
    ):
        assert f"# TYPE {family}" in text
