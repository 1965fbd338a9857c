"""POST /v1/compare/next-frame and /v1/compare/classify."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from models.metrics import mae_per_frame, mse_per_frame, psnr, ssim
from service.app import create_app
from service.config import Settings
from tests.service.helpers import FRAMES, clip, files, npy

ARCHS = ("conv2d_lstm", "convlstm2d")
NEXT = "/v1/compare/next-frame"


def predicted(client, name, frames_u8, k):
    r = client.post(
        f"/v1/models/{name}/predict", params={"horizon": k, "output": "npy"}, files=files(frames_u8)
    )
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


def test_holdout_scores_both_models_against_the_held_back_frames(client):
    c = clip(t=FRAMES + 2, seed=20)
    r = client.post(NEXT, params={"holdout": 2, "frames": "true"}, files=files(c))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "next_frame" and body["truth"] == "holdout" and body["horizon"] == 2
    assert body["context_frames"] == FRAMES
    truth = (c[-2:].astype(np.float32) / 255.0)[..., None]
    mses = {}
    for arch in ARCHS:
        res = body["results"][arch]
        assert res["architecture"] == arch and res["model"] == f"{arch}_next_frame"
        assert res["params"] > 0 and res["latency_ms"] >= res["inference_ms"] > 0
        assert len(res["frames"]) == 2
        pred = predicted(client, res["model"], c[:FRAMES], 2)  # the same context, alone
        m = res["metrics"]
        assert m["mse_per_frame"] == pytest.approx(mse_per_frame(pred, truth).mean(), rel=1e-5)
        assert m["mae_per_frame"] == pytest.approx(mae_per_frame(pred, truth).mean(), rel=1e-5)
        assert m["psnr"] == pytest.approx(psnr(pred, truth).mean(), rel=1e-5)
        assert m["ssim"] == pytest.approx(ssim(pred, truth).mean(), rel=1e-4, abs=1e-6)
        assert len(m["per_step"]["mse_per_frame"]) == 2
        mses[arch] = m["mse_per_frame"]
    assert body["winner"] == min(mses, key=mses.get)
    assert body["winners"]["mse_per_frame"] == body["winner"]
    psnrs = {a: body["results"][a]["metrics"]["psnr"] for a in ARCHS}
    assert body["winners"]["psnr"] == max(psnrs, key=psnrs.get)


def test_uploaded_truth_gives_the_same_answer_as_holdout(client):
    c = clip(t=FRAMES + 2, seed=21)
    held = client.post(NEXT, params={"holdout": 2}, files=files(c)).json()
    sent = client.post(NEXT, files=files(c[:FRAMES]) + files(c[FRAMES:], name="truth"))
    assert sent.status_code == 200, sent.text
    sent = sent.json()
    assert sent["truth"] == "upload" and sent["horizon"] == 2
    for arch in ARCHS:
        assert sent["results"][arch]["metrics"] == held["results"][arch]["metrics"]
    assert sent["winner"] == held["winner"]


def test_truth_also_travels_as_json_base64(client):
    import base64

    from tests.service.helpers import png

    c = clip(t=FRAMES + 1, seed=22)
    b64 = [base64.b64encode(png(f)).decode() for f in c]
    r = client.post(NEXT, json={"frames": b64[:FRAMES], "truth": b64[FRAMES:]})
    assert r.status_code == 200, r.text
    assert r.json()["truth"] == "upload" and r.json()["horizon"] == 1


def test_without_truth_there_are_predictions_but_no_metrics(client):
    r = client.post(NEXT, params={"horizon": 3, "frames": "true"}, files=files(clip(seed=23)))
    body = r.json()
    assert r.status_code == 200 and body["truth"] is None and body["winner"] is None
    for arch in ARCHS:
        assert body["results"][arch]["metrics"] is None
        assert len(body["results"][arch]["frames"]) == 3


def test_png_montage_has_context_truth_and_both_models(client):
    c = clip(t=FRAMES + 2, seed=24)
    r = client.post(NEXT, params={"holdout": 2, "output": "png"}, files=files(c))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-winner"] in ARCHS + ("tie",)
    img = np.asarray(Image.open(io.BytesIO(r.content)).convert("L"))
    cell, gap, label = 64, 2, 96  # 16 px frames are shown 4x
    assert img.shape == (4 * (cell + gap), label + FRAMES * (cell + gap))
    # row 0 column 1 is context frame 1, upscaled; row 1 column 0 is the first truth frame
    np.testing.assert_array_equal(
        img[0:cell:4, label + cell + gap : label + 2 * cell + gap : 4], c[1]
    )
    np.testing.assert_array_equal(
        img[cell + gap : 2 * cell + gap : 4, label : label + cell : 4], c[FRAMES]
    )


def test_gif_montage_plays_context_then_futures(client):
    c = clip(t=FRAMES + 2, seed=25)
    r = client.post(NEXT, params={"holdout": 2, "output": "gif"}, files=files(c))
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (96 + 64, 4 * 66)
    assert img.n_frames == FRAMES + 2


@pytest.mark.parametrize(
    "params,extra_truth,parts",
    [
        ({"holdout": FRAMES + 1}, 0, ["holdout=5", "no context"]),
        ({"holdout": 1}, 1, ["either holdout=k or truth"]),
        ({"horizon": 3}, 2, ["horizon=3", "2 truth frame(s)"]),
        ({"horizon": 6}, 0, ["FRAMECAST_MAX_HORIZON"]),
        ({"holdout": 2}, 0, ["needs 4"]),  # 4 uploaded - 2 held back = too little context
    ],
)
def test_compare_parameter_errors(client, params, extra_truth, parts):
    c = clip(t=FRAMES + 1, seed=26)
    upload = files(c[:FRAMES]) + (files(c[:extra_truth], name="truth") if extra_truth else [])
    r = client.post(NEXT, params=params, files=upload)
    assert r.status_code == 422, r.text
    for p in parts:
        assert p in r.json()["message"]


def test_a_bad_truth_file_is_named_as_truth(client):
    upload = files(clip()) + [("truth", ("t.png", b"\x89PNG\r\n\x1a\nxx", "image/png"))]
    r = client.post(NEXT, files=upload)
    assert r.status_code == 422
    assert r.json()["message"].startswith("truth:") and "t.png" in r.json()["message"]


# --------------------------------------------------------------------------- choosing the pair


@pytest.fixture(scope="module")
def crowded_dir(models_dir, tmp_path_factory):
    """Two convlstm2d next-frame models, one conv2d_lstm; no classify models."""
    root = tmp_path_factory.mktemp("crowded")
    for name in ("conv2d_lstm_next_frame", "convlstm2d_next_frame"):
        shutil.copytree(models_dir / name, root / name)
    shutil.copytree(models_dir / "convlstm2d_next_frame", root / "convlstm2d_twin")
    m = json.loads((root / "convlstm2d_twin" / "manifest.json").read_text())
    m["name"] = "convlstm2d_twin"
    (root / "convlstm2d_twin" / "manifest.json").write_text(json.dumps(m))
    return root


def test_several_models_of_one_architecture_need_a_choice(crowded_dir):
    with TestClient(create_app(Settings(models_dir=crowded_dir, load_mode="blocking"))) as c:
        r = c.post(NEXT, files=files(clip()))
        assert r.status_code == 422
        msg = r.json()["message"]
        assert "convlstm2d_next_frame, convlstm2d_twin" in msg and "convlstm2d=NAME" in msg
        assert "FRAMECAST_COMPARE_CONVLSTM2D_NEXT_FRAME" in msg
        r = c.post(NEXT, params={"convlstm2d": "convlstm2d_twin"}, files=files(clip()))
        assert (
            r.status_code == 200 and r.json()["results"]["convlstm2d"]["model"] == "convlstm2d_twin"
        )
        r = c.post(NEXT, params={"convlstm2d": "conv2d_lstm_next_frame"}, files=files(clip()))
        assert r.status_code == 422 and "needs a convlstm2d next_frame model" in r.json()["message"]
        r = c.post(NEXT, params={"convlstm2d": "ghost"}, files=files(clip()))
        assert r.status_code == 404
        # a missing architecture for the task
        r = c.post("/v1/compare/classify", files=files(clip()))
        assert r.status_code == 404
        assert "no conv2d_lstm model for the classify task" in r.json()["message"]
    s = Settings(
        models_dir=crowded_dir,
        load_mode="blocking",
        compare_convlstm2d_next_frame="convlstm2d_twin",
    )
    with TestClient(create_app(s)) as c:
        r = c.post(NEXT, files=files(clip()))
        assert (
            r.status_code == 200 and r.json()["results"]["convlstm2d"]["model"] == "convlstm2d_twin"
        )


# --------------------------------------------------------------------------- classify


def test_compare_classify_with_the_true_label(client, direct):
    c = clip(seed=27)
    r = client.post(
        "/v1/compare/classify",
        params={"label": "NE", "top_k": 2},
        files=[("files", ("c.npy", npy(c), "application/octet-stream"))],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "classify" and body["truth"] == "label" and body["true_label"] == "NE"
    x = (c.astype(np.float32) / 255.0)[None, ..., None]
    true_scores = {}
    for arch in ARCHS:
        res = body["results"][arch]
        want = direct(f"{arch}_classify", x)[0]
        assert res["true_class_score"] == pytest.approx(float(want[1]), abs=1e-6)
        assert len(res["scores"]) == 2
        assert res["label"] == ["E", "NE", "N", "NW", "W", "SW", "S", "SE"][int(np.argmax(want))]
        assert res["correct"] == (res["label"] == "NE")
        true_scores[arch] = res["true_class_score"]
    assert body["winner"] == max(true_scores, key=true_scores.get)


def test_compare_classify_without_a_label_and_with_a_bad_one(client):
    r = client.post("/v1/compare/classify", files=files(clip()))
    assert r.status_code == 200 and r.json()["winner"] is None
    assert all(res["correct"] is None for res in r.json()["results"].values())
    r = client.post("/v1/compare/classify", params={"label": "UP"}, files=files(clip()))
    assert r.status_code == 422 and "'UP'" in r.json()["message"] and "NE" in r.json()["message"]


@pytest.mark.parametrize("output", ["json", "png", "gif"])
def test_compare_reports_where_its_time_went(client, output):
    r = client.post(NEXT, params={"holdout": 2, "output": output}, files=files(clip(FRAMES + 2)))
    assert r.status_code == 200, r.text
    phases = dict(p.split(";dur=") for p in r.headers["server-timing"].split(", "))
    assert set(phases) == {"decode", "models", "metrics_encode", "total"}
    ms = {k: float(v) for k, v in phases.items()}
    assert all(v >= 0 for v in ms.values())
    assert ms["total"] >= ms["decode"] + ms["models"] - 0.05  # the parts fit inside the whole


def test_compare_classify_has_server_timing(client):
    r = client.post("/v1/compare/classify", files=files(clip(FRAMES)))
    assert r.status_code == 200, r.text
    assert "models;dur=" in r.headers["server-timing"]


@pytest.mark.parametrize("output", ["png", "gif", "json"])
def test_compare_answers_carry_each_models_conversion_report(client, output):
    c = clip(t=FRAMES + 3, h=32, w=32, seed=27)  # another size than the models': resized
    r = client.post(NEXT, params={"holdout": 2, "output": output}, files=files(c))
    assert r.status_code == 200, r.text
    reports = json.loads(r.headers["x-conversion"])
    assert set(reports) == set(ARCHS)
    for report in reports.values():
        assert report["resized"] is True and report["resized_from"] == [32, 32]
        assert report["frames_dropped"] == 1 and report["channels_from"] is None
    if output == "json":
        assert {k: v["conversion"] for k, v in r.json()["results"].items()} == reports
