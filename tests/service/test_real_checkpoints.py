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
        frames[
            i,
            y % (m.height - 8) : y % (m.height - 8) + 8,
            x % (m.width - 8) : x % (m.width - 8) + 8,
        ] = 255
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
    r = real_client.post(
        f"/v1/models/{m.name}/{route}",
        params={"horizon": 2} if route == "predict" else {},
        content=gif,
        headers={"content-type": "image/gif"},
    )
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
    r = real_client.post(
        f"/v1/compare/{route}", params=params, content=gif, headers={"content-type": "image/gif"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["winner"] in ("conv2d_lstm", "convlstm2d", "tie")


def _samples(task):
    import json

    from service.routes.ui import STATIC_DIR

    index = json.loads((STATIC_DIR / "samples" / "index.json").read_text())
    return [(STATIC_DIR / "samples" / s["file"], s) for s in index["samples"] if s["task"] == task]


def test_committed_classifiers_get_the_held_out_samples_right(real_client):
    """The shipped samples are held-out test clips with known directions: both trained
    classifiers must name them (they score >= 95% on 2,000 such clips)."""
    pair = {read_manifest(f).architecture for f in FOLDERS if read_manifest(f).task == "classify"}
    if pair != {"conv2d_lstm", "convlstm2d"}:
        pytest.skip("no committed classify pair")
    for path, sample in _samples("classify"):
        r = real_client.post(
            "/v1/compare/classify",
            params={"label": sample["label"]},
            content=path.read_bytes(),
            headers={"content-type": "image/gif"},
        )
        assert r.status_code == 200, r.text
        for arch, res in r.json()["results"].items():
            assert res["label"] == sample["label"], (path.name, arch, res["scores"][:3])


def test_committed_next_frame_models_beat_an_empty_frame(real_client):
    """On the held-out samples, 10 -> 10 rollouts are closer to the truth than all-black frames
    (summed over the shipped sample clips; the model cards give the 2,000-clip figures)."""
    from PIL import Image, ImageSequence

    pair = {read_manifest(f).architecture for f in FOLDERS if read_manifest(f).task == "next_frame"}
    if pair != {"conv2d_lstm", "convlstm2d"}:
        pytest.skip("no committed next-frame pair")
    model_mse, black_mse = {"conv2d_lstm": 0.0, "convlstm2d": 0.0}, 0.0
    for path, _ in _samples("next_frame"):
        frames = np.stack(
            [
                np.asarray(f.convert("L"), np.float64) / 255
                for f in ImageSequence.Iterator(Image.open(path))
            ]
        )
        black_mse += float((frames[10:] ** 2).sum(axis=(1, 2)).mean())
        r = real_client.post(
            "/v1/compare/next-frame",
            params={"holdout": 10},
            content=path.read_bytes(),
            headers={"content-type": "image/gif"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["horizon"] == 10
        for arch, res in body["results"].items():
            model_mse[arch] += res["metrics"]["mse_per_frame"]
    for arch, mse in model_mse.items():
        assert 0 < mse < black_mse, (arch, mse, black_mse)


@pytest.mark.parametrize("name", ["convlstm2d_next_frame", "conv2d_lstm_next_frame"])
def test_a_jumping_digit_is_where_the_stream_is_surprised(real_client, real_mnist_dir, name):
    """What surprise is for: a held-out Moving MNIST clip streamed frame by frame, in which the
    digits jump 20 pixels at one frame; that frame's surprise is the stream's highest."""
    from models.data import load_mnist, next_frame_clips

    if name not in real_client.app.state.runtime.runners:
        pytest.skip(f"{name} is not committed")
    digits = load_mnist(real_mnist_dir).digits("test")
    clip = next_frame_clips(digits, 1, seed=2026)[0]  # (20, 64, 64, 1) float32
    jump = 14
    clip[jump:] = np.roll(clip[jump:], (20, 20), axis=(1, 2))
    r = real_client.post(f"/v1/models/{name}/streams")
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    surprise = {}
    for t, frame in enumerate((clip * 255).round().astype(np.uint8)):
        r = real_client.post(
            f"/v1/streams/{sid}/frames",
            params={"step": t},
            content=encode(frame[None, ..., 0], "PNG"),
            headers={"content-type": "image/png"},
        )
        assert r.status_code == 200, r.text
        for s in r.json()["surprise"] or []:
            surprise[s["step"]] = s["mse_per_frame"]
    assert sorted(surprise) == list(range(11, 21))  # frames 11-20 had been predicted
    assert max(surprise, key=surprise.get) == jump + 1, surprise
    real_client.delete(f"/v1/streams/{sid}")
