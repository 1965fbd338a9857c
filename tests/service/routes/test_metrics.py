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


def test_metrics_count_the_garbage_collectors_passes_and_time(client):
    import gc

    before = client.get("/metrics").text
    passes = sample(before, "framecast_gc_passes_total", generation="2")
    seconds = sample(before, "framecast_gc_seconds_total", generation="2")
    gc.collect()  # a full pass, in this process: the app's
    after = client.get("/metrics").text
    assert sample(after, "framecast_gc_passes_total", generation="2") >= passes + 1
    assert sample(after, "framecast_gc_seconds_total", generation="2") > seconds
    assert "# TYPE framecast_gc_seconds_total counter" in after


def test_the_gc_threshold_is_set_once_the_models_are_loaded(settings):
    import gc

    from fastapi.testclient import TestClient

    from service.app import create_app

    was = gc.get_threshold()
    try:
        gc.set_threshold(700, *was[1:])
        with TestClient(create_app(settings.model_copy(update={"gc_threshold": 4321}))) as c:
            assert c.get("/readyz").status_code == 200
            assert gc.get_threshold()[0] == 4321
        gc.set_threshold(700, *was[1:])
        with TestClient(create_app(settings.model_copy(update={"gc_threshold": 0}))) as c:
            assert c.get("/readyz").status_code == 200
            assert gc.get_threshold()[0] == 700  # 0: Python's own left alone
    finally:
        gc.set_threshold(*was)


def test_the_gil_switch_interval_is_set_once_the_models_are_loaded(settings):
    import sys

    from fastapi.testclient import TestClient

    from service.app import create_app

    was = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        update = {"gil_switch_interval_ms": 0.25}
        with TestClient(create_app(settings.model_copy(update=update))) as c:
            assert c.get("/readyz").status_code == 200
            assert abs(sys.getswitchinterval() - 0.00025) < 1e-9
        sys.setswitchinterval(0.005)
        update = {"gil_switch_interval_ms": 0}
        with TestClient(create_app(settings.model_copy(update=update))) as c:
            assert c.get("/readyz").status_code == 200
            assert sys.getswitchinterval() == 0.005  # 0: Python's own left alone
    finally:
        sys.setswitchinterval(was)
