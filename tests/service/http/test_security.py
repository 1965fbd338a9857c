"""The key layer (service/http/security.py): the scope of every route, errors in the protocol of
the path whichever layer answers, per-key quotas (429), /metrics for the admin, audit lines, and
nothing installed when keys are off."""

from __future__ import annotations

import hashlib
import json
import logging
import re

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.http.security import AuthMiddleware, scope_for
from tests.service.conftest import CARRY

KEYS = {
    "alice": ("fc_alice-sekrit-1", '["infer", "stream"]', "max_concurrent = 1\n"),
    "reader": ("fc_reader-sekrit-2", '["evaluate"]', "rate_per_s = 1\nburst = 2\n"),
    "root": ("fc_root-sekrit-3", '["admin"]', ""),
}


def keys_file(tmp_path):
    text = ""
    for kid, (secret, scopes, extra) in KEYS.items():
        digest = hashlib.sha256(secret.encode()).hexdigest()
        text += f'[[keys]]\nid = "{kid}"\nsha256 = "{digest}"\nscopes = {scopes}\n{extra}\n'
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return path


def auth(kid):
    return {"authorization": f"Bearer {KEYS[kid][0]}"}


@pytest.fixture(scope="module")
def kc(stream_models, tmp_path_factory):
    path = keys_file(tmp_path_factory.mktemp("keys"))
    s = Settings(
        models_dir=stream_models,
        load_mode="blocking",
        api_keys_file=path,
        protect_metrics=True,
        max_upload_bytes=4096,
    )
    with TestClient(create_app(s)) as c:
        yield c


# every /v1 and /v2 route and the scope it needs (None: any valid key); a new route is added
# here on purpose, with its scope
EXPECTED = {
    "/v1/models": None,
    "/v1/models/{name}": None,
    "/v1/models/{name}/predict": "infer",
    "/v1/models/{name}/classify": "infer",
    "/v1/compare/next-frame": "infer",
    "/v1/compare/classify": "infer",
    "/v1/models/{name}/streams": "stream",
    "/v1/compare/streams": "stream",
    "/v1/streams": "stream",
    "/v1/streams/{stream_id}": "stream",
    "/v1/streams/{stream_id}/frames": "stream",
    "/v1/streams/{stream_id}/snapshot": "stream",
    "/v1/streams/{stream_id}/ticket": "stream",
    "/v1/streams/{stream_id}/ws": "stream",
    "/v2": None,
    "/v2/health/live": None,
    "/v2/health/ready": None,
    "/v2/models/stats": None,
    "/v2/models/{name}": None,
    "/v2/models/{name}/ready": None,
    "/v2/models/{name}/config": None,
    "/v2/models/{name}/stats": None,
    "/v2/models/{name}/infer": "infer",
    "/v2/models/{name}/versions/{version}": None,
    "/v2/models/{name}/versions/{version}/ready": None,
    "/v2/models/{name}/versions/{version}/config": None,
    "/v2/models/{name}/versions/{version}/stats": None,
    "/v2/models/{name}/versions/{version}/infer": "infer",
    "/v2/repository/index": "admin",
    "/v2/repository/models/{name}/load": "admin",
    "/v2/repository/models/{name}/unload": "admin",
    "/v2/repository/models/{name}/labels": "admin",
    "/v2/repository/models/{name}/labels/{label}": "admin",
    "/v1/evaluations": "evaluate",  # evaluation jobs, when they exist
    "/v1/evaluations/{job_id}": "evaluate",
    "/v1/evaluations/{job_id}/events": "evaluate",
    "/v1/evaluations/{job_id}/report": "evaluate",
    "/v1/evaluations/{job_id}/report.json": "evaluate",
    "/v1/evaluations/{job_id}/clips.csv": "evaluate",
    "/v1/evaluations/{job_id}/plot.png": "evaluate",
    "/metrics": "admin",
}


def _paths(routes, out):
    for r in routes:
        if hasattr(r, "original_router"):
            _paths(r.original_router.routes, out)
        elif hasattr(r, "path"):
            out.add(r.path)
    return out


def test_every_protected_route_has_the_scope_the_table_says(kc):
    served = {p for p in _paths(kc.app.routes, set()) if re.match(r"/v[12](/|$)", p)}
    assert served <= set(EXPECTED), f"routes with no scope decided: {served - set(EXPECTED)}"
    for path, need in EXPECTED.items():
        concrete = re.sub(r"\{[^}]+\}", "x-1", path)
        got = scope_for(concrete)
        assert (got.value if got else None) == need, path


def test_a_key_lacking_the_scope_is_403_saying_which(kc):
    r = kc.post(f"/v1/models/{CARRY}/predict", headers=auth("reader"))
    assert r.status_code == 403 and "infer scope" in r.json()["message"]
    assert kc.get("/v1/models", headers=auth("reader")).status_code == 200  # any valid key
    r = kc.post(f"/v1/models/{CARRY}/streams", headers=auth("root"))  # admin: every scope
    assert r.status_code == 201
    kc.delete(f"/v1/streams/{r.json()['id']}", headers=auth("root"))


def test_metrics_when_protected_is_the_admins(kc):
    assert kc.get("/metrics").status_code == 401
    assert kc.get("/metrics", headers=auth("alice")).status_code == 403
    assert kc.get("/metrics", headers=auth("root")).status_code == 200
    for path in ("/healthz", "/readyz", "/", "/docs"):
        assert kc.get(path).status_code == 200, path


def v2_error(r, status, words):
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and words in r.json()["error"], r.text


def framecast_error(r, status, kind):
    assert r.status_code == status, r.text
    assert r.json()["error"] == kind and r.json()["status"] == status


def test_errors_take_the_protocol_of_the_path_whichever_layer_answers(kc):
    infer = f"/v2/models/{CARRY}/infer"
    v2_error(kc.get("/v2/health/live"), 401, "Bearer")  # the key layer
    v2_error(kc.get("/v2/health/live", headers={"authorization": "Bearer nope"}), 403, "not valid")
    v2_error(kc.post(infer, headers=auth("reader")), 403, "infer scope")
    v2_error(kc.get("/v2/no/such/route", headers=auth("alice")), 404, "no route")  # the router
    big = b"{" + b" " * 8000 + b"}"  # the body limit (FRAMECAST_MAX_UPLOAD_BYTES=4096)
    v2_error(kc.post(infer, content=big, headers=auth("alice")), 413, "FRAMECAST_MAX_UPLOAD_BYTES")
    enc = {**auth("alice"), "content-encoding": "br"}  # the compression layer
    v2_error(kc.post(infer, content=b"x", headers=enc), 415, "Content-Encoding")
    # the same layers on /v1 answer in framecast's form
    framecast_error(kc.get("/v1/models"), 401, "unauthorized")
    framecast_error(kc.post(f"/v1/models/{CARRY}/predict", content=big, headers=auth("alice")),
                    413, "payload_too_large")  # fmt: skip
    drain = kc.app.state.drain
    drain.since = 0.0  # draining (SIGTERM): the drain layer answers 503
    try:
        v2_error(kc.get("/v2/health/ready", headers=auth("alice")), 503, "shutting down")
        framecast_error(kc.get("/v1/models", headers=auth("alice")), 503, "shutting_down")
    finally:
        drain.since = None


def test_a_keys_rate_is_429_with_retry_after_in_the_protocol_of_the_path(kc):
    seen = [kc.get("/v2", headers=auth("reader")) for _ in range(4)]  # burst 2, then 1/s
    refused = [r for r in seen if r.status_code == 429]
    assert refused and seen[0].status_code == 200
    r = refused[0]
    assert int(r.headers["retry-after"]) >= 1 and "rate_per_s=1" in r.json()["error"]


def test_a_keys_requests_in_flight_are_capped(kc):
    quotas = kc.app.state.quotas
    alice = kc.app.state.keys.by_id("alice")
    release = quotas.admit(alice)  # one request of alice's in flight (max_concurrent = 1)
    try:
        r = kc.get("/v1/models", headers=auth("alice"))
        framecast_error(r, 429, "too_many_requests")
        assert "max_concurrent=1" in r.json()["message"] and r.headers["retry-after"] == "1"
    finally:
        release()
    assert kc.get("/v1/models", headers=auth("alice")).status_code == 200


def test_an_open_websocket_counts_against_its_keys_max_concurrent(kc):
    from starlette.websockets import WebSocketDisconnect

    sid = kc.post(f"/v1/models/{CARRY}/streams", headers=auth("alice")).json()["id"]
    with kc.websocket_connect(f"/v1/streams/{sid}/ws", headers=auth("alice")):
        r = kc.get("/v1/models", headers=auth("alice"))  # the socket is alice's one in flight
        framecast_error(r, 429, "too_many_requests")
        with pytest.raises(WebSocketDisconnect):
            with kc.websocket_connect(f"/v1/streams/{sid}/ws", headers=auth("alice")) as ws:
                ws.receive_text()
    assert kc.get("/v1/models", headers=auth("alice")).status_code == 200  # closed: room again
    assert kc.delete(f"/v1/streams/{sid}", headers=auth("alice")).status_code == 200


def test_refusals_are_audit_lines_naming_the_key_never_its_secret(kc, caplog):
    caplog.set_level(logging.INFO, logger="framecast")
    kc.post(f"/v1/models/{CARRY}/predict", headers=auth("reader"))
    kc.get("/v1/models", headers={"authorization": "Bearer fc_guessed-sekrit"})
    kc.get("/v1/models", headers=auth("alice"))
    lines = [r.getMessage() for r in caplog.records if r.name == "framecast.audit"]
    assert any("key 'reader'" in x and "infer scope" in x for x in lines), lines
    assert any("key unknown" in x for x in lines), lines
    access = [r.getMessage() for r in caplog.records if r.name == "framecast.access"]
    assert any(x.endswith("key=alice") for x in access), access
    for secret in ["fc_guessed-sekrit", *(s for s, _, _ in KEYS.values())]:
        assert secret not in caplog.text


def test_keys_off_installs_no_key_layer(stream_models):
    app = create_app(Settings(models_dir=stream_models, load_mode="background"))
    layers = [m.cls for m in app.user_middleware]
    assert AuthMiddleware not in layers
    assert app.state.keys.enabled is False


def test_the_openapi_document_names_each_operations_scope(kc):
    spec = kc.get("/openapi.json").json()
    op = spec["paths"]["/v2/repository/models/{name}/unload"]["post"]
    assert op["x-framecast-scope"] == "admin" and op["security"] == [{"apiKey": []}]
    assert spec["paths"]["/v1/models/{name}/predict"]["post"]["x-framecast-scope"] == "infer"
    assert "x-framecast-scope" not in spec["paths"]["/v1/models"]["get"]
    assert json.dumps(spec).count("429") >= 1
