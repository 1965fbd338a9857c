"""Numbered versions on a running server (models/versions.py, service/runtime/live.py): a folder
``<name>/<n>/`` served under its version policy, reached by number or label over V2 HTTP, gRPC
and ``/v1 …?version=``; labels moved through the repository API; a new version appearing in a
polled folder swapped in under load with no failed request, the old one unloaded after."""

from __future__ import annotations

import json
import os
import socket
import time

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.config import Settings
from tests.service import own_models as om
from tests.service.live import live_server
from tests.service.routes.v2.test_repository import Hammer, X, _near, classify, positive, wait_for

triton = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def versioned(tmp_path):
    """``a/1`` and ``a/2`` (two different classifiers), their positive scores, and a third
    checkpoint kept aside (``aside/3``) for a version that appears later."""
    root = tmp_path / "models"
    first, second = om.conv2d_lstm_binary(1), om.convlstm2d_binary(1)
    om.write_folder(root / "a", "1", first)
    om.write_folder(root / "a", "2", second)
    third = om.conv2d_lstm_binary(1)
    third.set_weights([w * 0.5 for w in third.get_weights()])
    om.write_folder(tmp_path / "aside", "3", third)
    return root, tmp_path / "aside" / "3", [positive(first), positive(second), positive(third)]


def _score(r: httpx.Response) -> float:
    assert r.status_code == 200, r.text
    return {s["class_name"]: s["score"] for s in r.json()["scores"]}["positive"]


def _v2_score(http: httpx.Client, path: str) -> tuple[str, float]:
    body = {
        "inputs": [
            {
                "name": "frames",
                "shape": [1, *X.shape],
                "datatype": "FP32",
                "data": X.ravel().tolist(),
            }
        ]
    }
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    (scores,) = [o for o in out["outputs"] if o["name"] == "scores"]
    return out["model_version"], float(np.asarray(scores["data"]).reshape(-1)[-1])


def test_the_latest_version_is_served_by_default_and_others_are_a_clear_404(versioned):
    root, _, (p1, p2, _) = versioned
    with live_server(create_app(Settings(models_dir=root, load_mode="blocking"))) as url:
        http = httpx.Client(base_url=url, timeout=60.0)
        assert _score(classify(http, "a")) in _near(p2)
        meta = http.get("/v2/models/a").json()
        assert meta["versions"] == ["2"]
        r = http.get("/v2/models/a/versions/1")
        assert r.status_code == 404 and "does not serve version 1; it serves 2" in r.json()["error"]
        r = http.post("/v1/models/a/classify?version=1", content=b"x")
        assert r.status_code == 404 and "version 1" in r.json()["message"]
        config = http.get("/v2/models/a/config").json()
        assert config["version_policy"] == {"latest": {"num_versions": 1}}
        index = http.post("/v2/repository/index").json()
        assert [(m["name"], m["version"], m["state"]) for m in index] == [("a", "2", "READY")]
        http.close()


def test_a_policy_of_all_serves_each_version_over_http_grpc_and_v1(versioned):
    root, _, (p1, p2, _) = versioned
    (root / "a" / "manifest.json").write_text(json.dumps({"version_policy": {"all": {}}}))
    port = _free_port()
    settings = Settings(models_dir=root, load_mode="blocking", grpc_port=port)
    with live_server(create_app(settings)) as url:
        http = httpx.Client(base_url=url, timeout=60.0)
        tc = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60.0)
        gc = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert tc.get_model_metadata("a")["versions"] == ["1", "2"]
        assert tc.get_model_metadata("a", model_version="1")["versions"] == ["1", "2"]
        assert tc.is_model_ready("a", "1") and tc.is_model_ready("a", "2")
        assert gc.is_model_ready("a", "1") and not _ready_or_404(gc, "a", "7")
        assert tc.get_model_config("a")["version_policy"] == {"all": {}}

        version, s1 = _v2_score(http, "/v2/models/a/versions/1/infer")
        assert version == "1" and s1 in _near(p1)
        version, s2 = _v2_score(http, "/v2/models/a/infer")  # no version: the highest
        assert version == "2" and s2 in _near(p2)
        inp = grpcclient.InferInput("frames", [1, *X.shape], "FP32")
        inp.set_data_from_numpy(X[None])
        res = gc.infer("a", [inp], model_version="1")
        assert res.get_response().model_version == "1"
        assert float(res.as_numpy("scores").reshape(-1)[-1]) in _near(p1)
        assert _score(classify(http, "a")) in _near(p2)
        r = http.post(
            "/v1/models/a/classify?version=1",
            content=_npy(),
            headers={"content-type": "application/x-npy"},
        )
        assert _score(r) in _near(p1)

        # statistics are per version and count what each was sent (1 + 1 gRPC + 1 v1 on v1)
        stats = {s["version"]: s for s in tc.get_inference_statistics("a")["model_stats"]}
        assert set(stats) == {"1", "2"}
        assert stats["1"]["inference_count"] == 3, stats["1"]
        assert stats["2"]["inference_count"] == 2, stats["2"]
        one = tc.get_inference_statistics("a", "1")["model_stats"]
        assert [s["version"] for s in one] == ["1"] and one[0]["inference_count"] == 3

        listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
        assert listed["a"]["versions"] == [1, 2] and listed["a"]["version"] == 2
        index = tc.get_model_repository_index()
        assert [(m["name"], m["version"]) for m in index] == [("a", "1"), ("a", "2")]

        # labels: moved through the repository API, written to labels.json, used as versions
        r = http.put("/v2/repository/models/a/labels/canary", json={"version": 1})
        assert r.status_code == 200 and r.json()["labels"] == {"canary": 1}
        assert r.json()["persisted"] is True
        assert json.loads((root / "a" / "labels.json").read_text()) == {"canary": 1}
        assert _v2_score(http, "/v2/models/a/versions/canary/infer")[0] == "1"
        r = http.post(
            "/v1/models/a/classify?version=canary",
            content=_npy(),
            headers={"content-type": "application/x-npy"},
        )
        assert _score(r) in _near(p1)
        http.put("/v2/repository/models/a/labels/canary", json={"version": 2})
        assert _v2_score(http, "/v2/models/a/versions/canary/infer")[0] == "2"
        assert http.get("/v1/models/a").json()["labels"] == {"canary": 2}
        assert http.get("/v2/repository/models/a/labels").json()["labels"] == {"canary": 2}
        r = http.put("/v2/repository/models/a/labels/canary", json={"version": 9})
        assert r.status_code == 400 and "does not serve version(s) 9" in r.json()["error"]
        r = http.put("/v2/repository/models/a/labels/3", json={"version": 1})
        assert r.status_code == 400 and "not a number" in r.json()["error"]
        r = http.put("/v2/repository/models/a/labels/stable", json={"version": "one"})
        assert r.status_code == 400 and '{"version": N}' in r.json()["error"]
        r = http.get("/v2/models/a/versions/nightly")
        assert r.status_code == 404 and "no version or label 'nightly'" in r.json()["error"]
        gc.close()
        tc.close()
        http.close()


def _ready_or_404(gc, name: str, version: str) -> bool:
    from tritonclient.utils import InferenceServerException

    try:
        return gc.is_model_ready(name, version)
    except InferenceServerException as e:
        assert "does not serve version 7" in e.message()
        return False


def _npy() -> bytes:
    from tests.service.helpers import npy

    return npy(X)


def test_a_new_version_is_swapped_in_under_load_and_the_old_one_unloaded(versioned):
    root, third, (p1, p2, p3) = versioned
    settings = Settings(models_dir=root, load_mode="blocking", model_poll_s=0.2)
    app = create_app(settings)
    with live_server(app) as url:
        http = httpx.Client(base_url=url, timeout=60.0)
        runtime = app.state.runtime
        old = runtime.models.versions("a")[2]
        hammer = Hammer(http, "a")
        time.sleep(0.3)
        staging = root.parent / "staging"
        staging.mkdir()
        os.replace(third, staging / "3")
        os.replace(staging / "3", root / "a" / "3")  # appears whole
        wait_for(lambda: _score(classify(http, "a")) in _near(p3))
        time.sleep(0.3)
        answers = hammer.finish()
        codes = {c for c, _ in answers}
        assert codes == {200}, f"failed requests during the swap: {codes}"
        scores = [s for _, s in answers]
        assert any(s in _near(p2) for s in scores) and scores[-1] in _near(p3)
        assert all(s in _near(p2) or s in _near(p3) for s in scores)
        assert list(runtime.models.versions("a")) == [3]  # latest:1: version 2 is unloaded
        wait_for(lambda: old.batcher._closed, timeout=30)  # once its requests finished
        assert http.get("/v2/models/a/versions/2").status_code == 404
        assert http.get("/v2/models/a").json()["versions"] == ["3"]

        # a labels file edited by hand is read on the next scan
        (root / "a" / "labels.json").write_text(json.dumps({"stable": 3}))
        wait_for(lambda: runtime.models.labels("a") == {"stable": 3})
        http.close()


def test_a_broken_new_version_leaves_the_old_one_serving(versioned):
    root, _, (p1, p2, _) = versioned
    settings = Settings(models_dir=root, load_mode="blocking")
    with live_server(create_app(settings)) as url:
        http = httpx.Client(base_url=url, timeout=60.0)
        (root / "a" / "3").mkdir()
        (root / "a" / "3" / "model.keras").write_bytes(b"broken")
        r = http.post("/v2/repository/models/a/load")
        assert r.status_code == 400 and "previous copy keeps serving" in r.json()["error"]
        assert _score(classify(http, "a")) in _near(p2)
        assert http.get("/v2/models/a").json()["versions"] == ["2"]
        http.close()


def test_a_flat_folder_beside_versions_is_version_1(tmp_path):
    root = tmp_path / "models"
    om.write_folder(root, "flat", om.conv2d_lstm_binary(1))
    om.write_folder(root / "both", "1", om.conv2d_lstm_binary(1))
    (root / "both" / "model.keras").write_bytes(b"x")  # a checkpoint beside versions: refused
    with live_server(create_app(Settings(models_dir=root, load_mode="blocking"))) as url:
        http = httpx.Client(base_url=url, timeout=60.0)
        assert http.get("/v2/models/flat").json()["versions"] == ["1"]
        assert http.get("/v2/models/flat/versions/1/ready").status_code == 200
        listed = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
        assert listed["flat"]["versions"] == [1]
        assert listed["both"]["state"] == "failed"
        assert "numbered version folders" in listed["both"]["error"]
        http.close()
