"""API keys, CORS, request ids and access logs, the request deadline, safe checkpoint loading."""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings, load_settings
from service.http.logs import JsonFormatter
from service.runtime.server import LoadError
from tests.service.helpers import clip, npy

NF = "convlstm2d_next_frame"
PREDICT = f"/v1/models/{NF}/predict"
KEYS = "sekrit-key-one-7f3a, sekrit-key-two-9c1d"
NPY = {"content": npy(clip()), "headers": {"content-type": "application/x-npy"}}


@pytest.fixture(scope="module")
def one_model_dir(models_dir, tmp_path_factory):
    """Only the ConvLSTM2D next-frame fixture model: apps start in a second or two."""
    root = tmp_path_factory.mktemp("one_model")
    shutil.copytree(models_dir / NF, root / NF)
    return root


def app_client(models_dir, **kw):
    return TestClient(create_app(Settings(models_dir=models_dir, load_mode="blocking", **kw)))


# --------------------------------------------------------------------------- API keys


@pytest.fixture(scope="module")
def keyed(one_model_dir):
    with app_client(one_model_dir, api_keys=KEYS) as c:
        yield c


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "path", ["/v1/models", f"/v1/models/{NF}", "/v2", "/v2/health/live", f"/v2/models/{NF}"]
)
def test_v1_and_v2_need_a_key(keyed, path):
    r = keyed.get(path)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    if path.startswith("/v2"):  # the Open Inference Protocol's body under /v2, whatever answers
        assert set(r.json()) == {"error"} and "Bearer" in r.json()["error"]
    else:
        assert r.json()["error"] == "unauthorized" and "Bearer" in r.json()["message"]
    r = keyed.get(path, headers=bearer("wrong-key"))
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden" or "not valid" in r.json()["error"]
    assert keyed.get(path, headers=bearer("sekrit-key-two-9c1d")).status_code == 200
    assert keyed.get(path, headers={"Authorization": "Basic c2Vrcml0"}).status_code == 401


def test_a_keyed_predict_works_and_an_unkeyed_one_is_refused_before_its_body(keyed):
    assert keyed.post(PREDICT, **NPY).status_code == 401
    r = keyed.post(
        PREDICT, content=NPY["content"], headers={**NPY["headers"], **bearer("sekrit-key-one-7f3a")}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/", "/static/js/app.js", "/docs", "/openapi.json"]
)
def test_health_metrics_page_and_docs_stay_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_the_openapi_document_declares_the_bearer_scheme(keyed):
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/models"]["get"]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_metrics_can_be_protected(one_model_dir):
    with app_client(one_model_dir, api_keys=KEYS, protect_metrics=True) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=bearer("sekrit-key-one-7f3a")).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_keys_never_reach_logs_or_reprs(keyed, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    keyed.get("/v1/models", headers=bearer("sekrit-key-one-7f3a"))
    keyed.get("/v1/models", headers=bearer("sekrit-wrong-guess"))
    keyed.post(
        PREDICT,
        content=b"garbage",
        headers={"content-type": "image/png", **bearer("sekrit-key-two-9c1d")},
    )
    settings = keyed.app.state.settings
    assert caplog.records  # the access log did write
    for text in (
        caplog.text,
        repr(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
    ):
        assert "sekrit" not in text
    monkeypatch.setenv("FRAMECAST_API_KEYS", '["sekrit-unclosed"')
    with pytest.raises(ValueError) as e:
        load_settings()
    assert "sekrit" not in str(e.value) and "FRAMECAST_API_KEYS" in str(e.value)


def test_keys_parse_as_comma_list_or_json(monkeypatch):
    monkeypatch.setenv("FRAMECAST_API_KEYS", '["a b", "c"]')
    assert load_settings().api_key_list() == ["a b", "c"]
    monkeypatch.setenv("FRAMECAST_API_KEYS", " a, ,b ")
    assert load_settings().api_key_list() == ["a", "b"]
    monkeypatch.setenv("FRAMECAST_API_KEYS", "")
    assert load_settings().api_key_list() == []


# --------------------------------------------------------------------------- CORS


def test_cors_is_off_by_default(client):
    r = client.get("/v1/models", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = client.options(
        "/v1/models",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured_answers_preflight_before_keys(one_model_dir, monkeypatch):
    monkeypatch.setenv("FRAMECAST_CORS_ORIGINS", "http://ui.example, http://other.example")
    settings = load_settings(models_dir=str(one_model_dir), load_mode="blocking", api_keys=KEYS)
    with TestClient(create_app(settings)) as c:
        r = c.options(
            "/v1/models",
            headers={
                "Origin": "http://ui.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://ui.example"
        r = c.get(
            "/v1/models", headers={"Origin": "http://ui.example", **bearer("sekrit-key-one-7f3a")}
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://ui.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        r = c.get(
            "/v1/models", headers={"Origin": "http://evil.example", **bearer("sekrit-key-one-7f3a")}
        )
        assert "access-control-allow-origin" not in r.headers


# --------------------------------------------------------------------------- request ids, logs


def test_a_sane_request_id_is_echoed_and_others_are_replaced(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123.x"}).headers["x-request-id"]
        == "abc-123.x"
    )
    for given in (None, "<script>", "x" * 200):
        headers = {"X-Request-ID": given} if given else {}
        rid = client.get("/healthz", headers=headers).headers["x-request-id"]
        assert rid != given and len(rid) == 32
    err = client.post(PREDICT, content=b"nope", headers={"content-type": "text/plain"})
    assert err.status_code == 415 and err.headers["x-request-id"]


def test_one_access_line_per_request_with_its_fields_and_json_form(client, caplog):
    caplog.set_level(logging.INFO, logger="framecast.access")
    r = client.post(
        PREDICT,
        content=NPY["content"],
        params={"horizon": 2},
        headers={**NPY["headers"], "X-Request-ID": "req-42"},
    )
    assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "framecast.access"]
    assert len(lines) == 1
    text = lines[0].getMessage()
    for part in (
        "POST",
        "/v1/models/{name}/predict",
        f"model={NF}",
        "status=200",
        "duration_ms=",
        "request_id=req-42",
    ):
        assert part in text, text
    doc = json.loads(JsonFormatter().format(lines[0]))
    assert doc["method"] == "POST" and doc["route"] == "/v1/models/{name}/predict"
    assert doc["model"] == NF and doc["status"] == 200 and doc["request_id"] == "req-42"
    assert doc["duration_ms"] > 0 and doc["level"] == "info" and doc["logger"] == "framecast.access"


# --------------------------------------------------------------------------- deadline


def test_a_request_past_its_deadline_gets_504_and_is_never_computed(one_model_dir):
    with app_client(one_model_dir, request_timeout_s=0.5) as c:
        runner = c.app.state.runtime.runners[NF]
        calls = []
        real_call = runner._call
        runner._call = lambda batch: (calls.append(batch.shape[0]), real_call(batch))[1]
        release, started = threading.Event(), threading.Event()
        held = runner.submit(lambda: (started.set(), release.wait(30)))  # the worker is busy
        assert started.wait(10)
        t0 = time.monotonic()
        r = c.post(PREDICT, **NPY)
        assert r.status_code == 504, r.text
        assert r.json()["error"] == "deadline_exceeded"
        assert "FRAMECAST_REQUEST_TIMEOUT_S" in r.json()["message"]
        assert 0.4 < time.monotonic() - t0 < 5
        assert runner.queue_depth == 1  # only the held job: the request left the queue
        release.set()
        held.result(timeout=10)
        time.sleep(0.2)
        assert calls == [] and runner.queue_depth == 0
        r = c.post(PREDICT, **NPY)  # the next request is served
        assert r.status_code == 200 and calls == [1]


def test_an_expired_request_in_a_rollout_stops_being_computed(one_model_dir):
    """A rollout whose deadline passes mid-way leaves the batch before its next step."""
    with app_client(one_model_dir, request_timeout_s=1.0, max_horizon=30) as c:
        runner = c.app.state.runtime.runners[NF]
        calls = []
        real_call = runner._call

        def slow_call(batch):
            calls.append(batch.shape[0])
            time.sleep(0.1)
            return real_call(batch)

        runner._call = slow_call
        r = c.post(PREDICT, **NPY, params={"horizon": 30})  # 30 steps x 0.1 s > 1 s
        assert r.status_code == 504, r.text
        time.sleep(0.3)
        n = len(calls)
        assert 1 <= n < 30 and runner.queue_depth == 0
        time.sleep(0.3)
        assert len(calls) == n  # nothing more is computed for it


# --------------------------------------------------------------------------- checkpoints


def test_an_unknown_architecture_stops_a_blocking_start_naming_the_file(one_model_dir, tmp_path):
    dst = tmp_path / "m" / NF
    shutil.copytree(one_model_dir / NF, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["architecture"] = "transformer9000"
    (dst / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LoadError) as e:
        with app_client(dst.parent):
            pass
    assert "transformer9000" in str(e.value) and str(dst / "manifest.json") in str(e.value)


def test_a_checksum_mismatch_names_the_checkpoint(one_model_dir, tmp_path):
    dst = tmp_path / "m" / NF
    shutil.copytree(one_model_dir / NF, dst)
    with open(dst / "model.keras", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(LoadError) as e:
        with app_client(dst.parent):
            pass
    assert str(dst / "model.keras") in str(e.value) and "sha256" in str(e.value)


def test_checkpoints_load_with_safe_mode_so_a_lambda_layer_is_refused(tmp_path):
    import keras

    from models.repository import Manifest, save_model_folder
    from tests.service.helpers import FRAMES, H, W

    inputs = keras.Input((FRAMES, H, W, 1))
    outputs = keras.layers.Lambda(lambda x: x * 1.0, name="arbitrary_code")(inputs)
    model = keras.Model(inputs, outputs)
    manifest = Manifest(
        name="lambda_model",
        architecture="convlstm2d",
        task="next_frame",
        frames=FRAMES,
        height=H,
        width=W,
        channels=1,
    )
    save_model_folder(tmp_path / "lambda_model", model, manifest)
    with pytest.raises(LoadError) as e:
        with app_client(tmp_path):
            pass
    assert "safe mode" in str(e.value) and "Lambda" in str(e.value)
    assert str(tmp_path / "lambda_model") in str(e.value)


def test_an_uploaded_pickle_is_never_unpickled(client, tmp_path):
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    np.save(buf, np.array([Boom(), Boom()], dtype=object), allow_pickle=True)
    r = client.post(PREDICT, content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 422 and "never unpickled" in r.json()["message"]
    assert not marker.exists()


def test_pillow_guard_is_at_least_our_frame_limit(client, settings):
    from PIL import Image

    assert Image.MAX_IMAGE_PIXELS >= settings.max_frame_pixels


def test_probes_log_at_debug_unless_asked(one_model_dir, caplog):
    """/healthz, /readyz and /metrics (a poller's every few seconds) leave no INFO access line by
    default, and do with FRAMECAST_LOG_PROBES; other requests always do."""
    for log_probes, level in ((False, logging.DEBUG), (True, logging.INFO)):
        caplog.clear()
        caplog.set_level(logging.DEBUG, logger="framecast.access")
        with app_client(one_model_dir, log_probes=log_probes) as c:
            for path in ("/healthz", "/readyz", "/metrics", "/v1/models"):
                assert c.get(path).status_code == 200
        lines = {
            r.getMessage().split()[1]: r.levelno
            for r in caplog.records
            if r.name == "framecast.access"
        }
        assert lines == {
            "/healthz": level,
            "/readyz": level,
            "/metrics": level,
            "/v1/models": logging.INFO,
        }, lines
