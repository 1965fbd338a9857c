"""The committed checkpoints under models/<name>/ (skipped until they exist)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.repository import BUNDLED_DIR, discover, read_manifest
from service.app import create_app
from service.config import Settings
from tests.service.helpers import encode

FOLDERS = discover(BUNDLED_DIR)
pytestmark = pytest.mark.skipif(not FOLDERS, reason="no checkpoints committed under models/ yet")


@pytest.fixture(scope="module")
def real_client():
    with TestClient(create_app(Settings(models_dir=BUNDLED_DIR, load_mode="blocking"))) as c:
        yield c


def _clip(m, extra=0):
    rng = np.random.default_rng(0)
    t = m.frames + extra
    frames = np.zeros((t, m.height, m.width), np.uint8)
    for i in range(t):
        y, x = 10 + i, 5 + 2 * i
        frames[i, y % (m.height - 8):y % (m.height - 8) + 8, x % (m.width - 8):x % (m.width - 8) + 8] = 255
    return frames + (rng.random(frames.shape) * 10).astype(np.uint8)


def test_every_committed_model_is_ready_and_listed(real_client):
    assert real_client.get("/readyz").status_code == 200
    names = {m["name"] for m in real_client.get("/v1/models").json()["models"]}
    assert names == {read_manifest(f).name for f in FOLDERS}


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_each_committed_model_answers_a_gif(real_client, folder):
    m = read_manifest(folder)
    gif = encode(_clip(m, extra=2), "GIF", loop=0)
    route = "predict" if m.task == "next_frame" else "classify"
    r = real_client.post(f"/v1/models/{m.name}/{route}", params={"horizon": 2} if
                         route == "predict" else {}, content=gif,
                         headers={"content-type": "image/gif"})
    assert r.status_code == 200, r.text
    body = r.json()
    if route == "predict":
        assert body["shape"] == [2, m.height, m.width, m.channels]
    else:
        assert [s["class_name"] for s in body["scores"]] != [] and body["label"] in m.class_names


@pytest.mark.parametrize("task", ["next_frame", "classify"])
def test_compare_on_the_committed_pair(real_client, task):
    models = [read_manifest(f) for f in FOLDERS]
    pair = [m for m in models if m.task == task]
    if {m.architecture for m in pair} != {"conv2d_lstm", "convlstm2d"}:
        pytest.skip(f"no committed {task} pair")
    m = max(pair, key=lambda x: x.frames)
    gif = encode(_clip(m, extra=2), "GIF", loop=0)
    route = "next-frame" if task == "next_frame" else "classify"
    params = {"holdout": 2} if task == "next_frame" else {"label": "E"}
    r = real_client.post(f"/v1/compare/{route}", params=params, content=gif,
                         headers={"content-type": "image/gif"})
    assert r.status_code == 200, r.text
    assert r.json()["winner"] in ("conv2d_lstm", "convlstm2d", "tie")
