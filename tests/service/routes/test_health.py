"""/healthz, /readyz around loading and warm-up, and load failures."""

from __future__ import annotations

import json
import logging
import shutil
import threading

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.runtime.server import LoadError, Runtime
from tests.service.helpers import clip, files


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_is_503_until_warm_then_200(models_dir):
    settings = Settings(models_dir=models_dir, load_mode="background")
    gate = threading.Event()  # the loader waits here after loading, before warm-up
    runtime = Runtime(settings, gate=gate)
    with TestClient(create_app(settings, runtime=runtime)) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["ready"] is False and r.json()["state"] == "loading"
        assert r.headers["retry-after"]
        # a request for a model before it is warm is refused the same way
        p = c.post("/v1/models/convlstm2d_next_frame/predict", files=files(clip()))
        assert p.status_code == 503 and p.json()["error"] == "not_ready"
        assert "loading" in p.json()["message"]
        assert c.get("/v1/models").status_code == 503
        assert not runtime.ready_event.is_set()
        gate.set()
        assert runtime.wait_ready(timeout=60)
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ready"] is True and body["state"] == "ready"
        assert set(body["models"].values()) == {"ready"} and len(body["models"]) == 4
        info = c.get("/v1/models").json()["models"]
        assert all(m["warmup_ms"] > 0 for m in info)
        assert (
            c.post("/v1/models/convlstm2d_next_frame/predict", files=files(clip())).status_code
            == 200
        )


def test_load_logs_one_line_per_model(models_dir, caplog):
    settings = Settings(models_dir=models_dir, load_mode="blocking")
    with caplog.at_level(logging.INFO, logger="framecast"):
        with TestClient(create_app(settings)):
            pass
    lines = [r.getMessage() for r in caplog.records if "ready: architecture=" in r.getMessage()]
    assert len(lines) == 4
    line = next(x for x in lines if x.startswith("model convlstm2d_classify"))
    for part in ("architecture=convlstm2d", "task=classify", "device=cpu:0", "warm-up="):
        assert part in line


@pytest.fixture()
def corrupt_dir(models_dir, tmp_path):
    """A copy of one model whose checkpoint no longer matches its manifest's sha256."""
    dst = tmp_path / "models"
    shutil.copytree(models_dir / "convlstm2d_next_frame", dst / "convlstm2d_next_frame")
    with open(dst / "convlstm2d_next_frame" / "model.keras", "ab") as f:
        f.write(b"tampered")
    return dst


def test_a_checkpoint_that_fails_its_sha256_is_not_served(corrupt_dir):
    settings = Settings(models_dir=corrupt_dir, load_mode="background")
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as c:
        runtime._thread.join(timeout=60)
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["state"] == "failed" and "sha256" in body["detail"]
        assert "convlstm2d_next_frame" in body["models"]
        p = c.get("/v1/models/convlstm2d_next_frame")
        assert p.status_code == 503 and "failed to load" in p.json()["message"]
        assert c.get("/healthz").status_code == 200


def test_blocking_load_fails_start_up_on_a_bad_checkpoint(corrupt_dir):
    app = create_app(Settings(models_dir=corrupt_dir, load_mode="blocking"))
    with pytest.raises(LoadError, match="sha256"):
        with TestClient(app):
            pass


def test_a_manifest_that_disagrees_with_the_checkpoint_is_refused(models_dir, tmp_path):
    dst = tmp_path / "models" / "m"
    shutil.copytree(models_dir / "convlstm2d_next_frame", dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["height"] = 32
    (dst / "manifest.json").write_text(json.dumps(manifest))
    app = create_app(Settings(models_dir=dst.parent, load_mode="blocking"))
    with pytest.raises(LoadError, match="height is 16 but its manifest .* says 32"):
        with TestClient(app):
            pass


def test_an_empty_models_dir_is_never_ready(tmp_path):
    settings = Settings(models_dir=tmp_path, load_mode="background")
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as c:
        runtime._thread.join(timeout=60)
        r = c.get("/readyz")
        assert r.status_code == 503 and "no model folders" in r.json()["detail"]
        assert "FRAMECAST_MODELS_DIR" in r.json()["detail"]
