"""GET /v1/models and /v1/models/{name}."""

from __future__ import annotations

from models.repository import read_manifest
from tests.service.conftest import CARD
from tests.service.helpers import FRAMES, H, W


def test_list_models(client, models_dir):
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = r.json()["models"]
    assert [m["name"] for m in models] == sorted(
        [
            "conv2d_lstm_next_frame",
            "convlstm2d_next_frame",
            "conv2d_lstm_classify",
            "convlstm2d_classify",
        ]
    )
    for m in models:
        manifest = read_manifest(models_dir / m["name"])
        assert m["architecture"] == manifest.architecture and m["task"] == manifest.task
        assert m["input"] == {
            "frames": FRAMES,
            "height": H,
            "width": W,
            "channels": 1,
            "context": None,
        }
        assert (m["state"], m["source"], m["error"]) == ("ready", "manifest", None)
        assert m["sha256"] == manifest.sha256 and len(m["sha256"]) == 64
        assert m["params"] == manifest.params > 0
        assert m["device"].startswith("cpu") or m["device"].startswith("gpu")
        assert m["ready"] is True
        if m["task"] == "classify":
            assert m["class_names"] == ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]
        else:
            assert m["class_names"] is None


def test_one_model_with_its_card_metrics(client):
    r = client.get("/v1/models/convlstm2d_next_frame")
    assert r.status_code == 200
    assert r.json()["metrics"] == CARD
    assert client.get("/v1/models/conv2d_lstm_next_frame").json()["metrics"] is None


def test_unknown_model_is_404_listing_the_known_ones(client):
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    body = r.json()
    assert body["error"] == "model_not_found" and body["status"] == 404
    assert "'nope'" in body["message"] and "convlstm2d_next_frame" in body["message"]
