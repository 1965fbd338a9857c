"""POST /v1/models/{name}/predict and /classify over the tiny fixture models."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.service.helpers import FRAMES, H, W, clip, decode_png, encode, files, npy, png

NF = "convlstm2d_next_frame"
NF2 = "conv2d_lstm_next_frame"
CL = "convlstm2d_classify"


def rollout(direct, name, context: np.ndarray, k: int) -> np.ndarray:
    """The expected k-step rollout, computed here from the model's own outputs."""
    window = context[None].astype(np.float32)
    out = []
    for _ in range(k):
        y = direct(name, window)
        out.append(y[0, -1])
        window = np.concatenate([window[:, 1:], y[:, -1:]], axis=1)
    return np.stack(out)


def as_context(frames_u8: np.ndarray) -> np.ndarray:
    return (frames_u8.astype(np.float32) / 255.0)[..., None]


def predict_npy(client, name, horizon=1, **kw) -> np.ndarray:
    r = client.post(
        f"/v1/models/{name}/predict", params={"horizon": horizon, "output": "npy"}, **kw
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(r.content), allow_pickle=False)


# --------------------------------------------------------------------------- input formats

LOSSLESS = {
    "png_files": lambda c: {"files": files(c)},
    "bmp_files": lambda c: {
        "files": [
            ("files", (f"{i}.bmp", encode(f[None], "BMP"), "image/bmp")) for i, f in enumerate(c)
        ]
    },
    "gif": lambda c: {
        "files": [("files", ("clip.gif", encode(c, "GIF", duration=100, loop=0), "image/gif"))]
    },
    "apng": lambda c: {"files": [("files", ("clip.png", encode(c, "PNG"), "image/png"))]},
    "webp_animated": lambda c: {
        "files": [("files", ("clip.webp", encode(c, "WEBP", lossless=True), "image/webp"))]
    },
    "tiff_multipage": lambda c: {
        "files": [("files", ("clip.tif", encode(c, "TIFF"), "image/tiff"))]
    },
    "npy_uint8_THW": lambda c: {
        "files": [("files", ("clip.npy", npy(c), "application/octet-stream"))]
    },
    "npy_float_THWC": lambda c: {
        "files": [("files", ("clip.npy", npy(as_context(c)), "application/octet-stream"))]
    },
    "json_base64_png": lambda c: {
        "json": {"frames": [base64.b64encode(png(f)).decode() for f in c]}
    },
    "json_base64_gif": lambda c: {
        "json": {
            "frames": [
                "data:image/gif;base64," + base64.b64encode(encode(c, "GIF", loop=0)).decode()
            ]
        }
    },
    "raw_gif_body": lambda c: {
        "content": encode(c, "GIF", loop=0),
        "headers": {"content-type": "image/gif"},
    },
    "raw_npy_body": lambda c: {"content": npy(c), "headers": {"content-type": "application/x-npy"}},
}


@pytest.mark.parametrize("fmt", sorted(LOSSLESS))
def test_every_lossless_input_format_gives_the_models_own_prediction(client, direct, fmt):
    c = clip(seed=1)
    got = predict_npy(client, NF, **LOSSLESS[fmt](c))
    assert got.shape == (1, H, W, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, rollout(direct, NF, as_context(c), 1), atol=1e-5)


def test_jpeg_frames_are_accepted(client):
    c = clip(seed=2)
    jpgs = [
        ("files", (f"{i}.jpg", encode(f[None], "JPEG", quality=95), "image/jpeg"))
        for i, f in enumerate(c)
    ]
    r = client.post(f"/v1/models/{NF}/predict", files=jpgs)
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == [1, H, W, 1]


def test_webp_still_frames_are_accepted(client, direct):
    c = clip(seed=3)
    parts = [
        ("files", (f"{i}.webp", encode(f[None], "WEBP", lossless=True), "image/webp"))
        for i, f in enumerate(c)
    ]
    got = predict_npy(client, NF, files=parts)
    np.testing.assert_allclose(got, rollout(direct, NF, as_context(c), 1), atol=1e-5)


def test_colour_frames_become_luminance_for_a_grey_model(client, direct):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(FRAMES, H, W, 3), dtype=np.uint8)
    parts = [("files", (f"{i}.png", png(f), "image/png")) for i, f in enumerate(rgb)]
    got = predict_npy(client, NF, files=parts)
    luma = (rgb.astype(np.float32) / 255.0) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(got, rollout(direct, NF, luma[..., None], 1), atol=1e-4)
    # RGBA and palette images are accepted too
    parts = [
        ("files", (f"{i}.png", png(f, "RGBA" if i % 2 else "P"), "image/png"))
        for i, f in enumerate(rgb)
    ]
    assert client.post(f"/v1/models/{NF}/predict", files=parts).status_code == 200


def test_grey_frames_are_repeated_for_a_colour_model(rgb_models_dir):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.config import Settings

    with TestClient(create_app(Settings(models_dir=rgb_models_dir, load_mode="blocking"))) as c:
        runner = c.app.state.runtime.runners["rgb_next_frame"]
        frames = clip(seed=5)
        got = predict_npy(c, "rgb_next_frame", files=files(frames))
        ctx = np.repeat(as_context(frames), 3, axis=-1)
        want = np.asarray(runner.model.predict_on_batch(ctx[None]))[0, -1]
        assert got.shape == (1, H, W, 3)
        np.testing.assert_allclose(got[0], want, atol=1e-5)
        info = c.get("/v1/models/rgb_next_frame").json()
        assert info["input"]["channels"] == 3


def test_more_frames_than_context_use_the_last_ones(client, direct):
    c = clip(t=FRAMES + 3, seed=6)
    body = client.post(f"/v1/models/{NF}/predict", files=files(c)).json()
    assert body["frames_received"] == FRAMES + 3 and body["context_frames"] == FRAMES
    got = predict_npy(client, NF, files=files(c))
    np.testing.assert_allclose(got, rollout(direct, NF, as_context(c[-FRAMES:]), 1), atol=1e-5)


def test_resize_true_resizes_and_says_so(client, direct):
    big = np.kron(clip(seed=7), np.ones((2, 2), np.uint8))  # 32x32, exact 2x upscale
    r = client.post(f"/v1/models/{NF}/predict", files=files(big))
    assert r.status_code == 200, r.text
    assert r.json()["resized"] is True
    got = predict_npy(client, NF, files=files(big))
    assert got.shape == (1, H, W, 1)
    small = client.post(f"/v1/models/{NF}/predict", files=files(clip(seed=7))).json()
    assert small["resized"] is False


def test_resize_false_rejects_a_wrong_size(client):
    big = np.kron(clip(seed=7), np.ones((2, 2), np.uint8))
    r = client.post(f"/v1/models/{NF}/predict", params={"resize": "false"}, files=files(big))
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "frame_size_error"
    assert "32x32" in body["message"] and "16x16" in body["message"]
    assert "resize=true" in body["message"]


def test_resize_false_rejects_frames_of_different_sizes_naming_the_frame(client):
    c = clip(seed=8)
    parts = files(c)
    odd = np.zeros((12, 20), np.uint8)
    parts[2] = ("files", ("odd.png", png(odd), "image/png"))
    r = client.post(f"/v1/models/{NF}/predict", params={"resize": "false"}, files=parts)
    assert r.status_code == 422
    msg = r.json()["message"]
    assert "frame 2" in msg and "odd.png" in msg and "20x12" in msg and "share one size" in msg
    # with resize=true (the default) mixed sizes are fitted to the model
    assert client.post(f"/v1/models/{NF}/predict", files=parts).status_code == 200


# --------------------------------------------------------------------------- horizon and outputs


@pytest.mark.parametrize("name", [NF, NF2])
def test_horizon_rolls_out_with_a_sliding_window(client, direct, name):
    c = clip(seed=9)
    got = predict_npy(client, name, horizon=3, files=files(c))
    assert got.shape == (3, H, W, 1)
    want = rollout(direct, name, as_context(c), 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # each step depends on the previous prediction: not three copies of step one
    assert not np.allclose(got[0], got[2], atol=1e-7)


def test_json_output_has_png_frames_and_raw_values_on_request(client):
    c = clip(seed=10)
    r = client.post(f"/v1/models/{NF}/predict", params={"horizon": 2}, files=files(c))
    body = r.json()
    assert r.status_code == 200 and body["horizon"] == 2 and body["shape"] == [2, H, W, 1]
    assert [f["index"] for f in body["frames"]] == [0, 1]
    assert all(f["values"] is None for f in body["frames"])
    assert body["latency_ms"] >= body["inference_ms"] > 0
    raw = client.post(
        f"/v1/models/{NF}/predict", params={"horizon": 2, "raw": "true"}, files=files(c)
    ).json()
    ref = predict_npy(client, NF, horizon=2, files=files(c))
    for i, f in enumerate(raw["frames"]):
        values = np.array(f["values"], np.float32)
        assert values.shape == (H, W, 1)
        np.testing.assert_allclose(values, ref[i], atol=1e-5)
        img = decode_png(base64.b64decode(f["png"]))
        assert img.shape == (H, W)
        np.testing.assert_array_equal(img, np.round(ref[i, ..., 0] * 255).astype(np.uint8))


def test_png_output_is_a_strip_of_the_predicted_frames(client):
    c = clip(seed=11)
    r = client.post(
        f"/v1/models/{NF}/predict", params={"horizon": 3, "output": "png"}, files=files(c)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    strip = decode_png(r.content)
    assert strip.shape == (H, 3 * W + 2 * 2)
    ref = predict_npy(client, NF, horizon=3, files=files(c))
    np.testing.assert_array_equal(
        strip[:, W + 2 : 2 * W + 2], np.round(ref[1, ..., 0] * 255).astype(np.uint8)
    )


def test_gif_output_animates_context_then_prediction(client):
    c = clip(seed=12)
    r = client.post(
        f"/v1/models/{NF}/predict", params={"horizon": 2, "output": "gif"}, files=files(c)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (W, H)
    assert img.n_frames == FRAMES + 2  # the clip's frames all differ, so none are merged
    img.seek(0)
    np.testing.assert_array_equal(np.asarray(img.convert("L")), c[0])


def test_classify_lists_the_top_k_best_classes_in_scores(client, direct):
    """top_k limits `scores` (and `top`, the same list): top_k=2 gives the two best classes, a
    top_k above the number of classes every class, each score the model's own."""
    c = clip(seed=13)
    want = direct(CL, as_context(c)[None])[0]
    names = ["E", "NE", "N", "NW", "W", "SW", "S", "SE"]
    best = [names[i] for i in np.argsort(-want, kind="stable")]
    r = client.post(f"/v1/models/{CL}/classify", params={"top_k": 2}, files=files(c))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["class_name"] for s in body["scores"]] == best[:2]
    assert body["top_k"] == 2 and body["top"] == body["scores"]
    assert body["label"] == best[0]
    every = client.post(f"/v1/models/{CL}/classify", params={"top_k": 50}, files=files(c)).json()
    assert every["top_k"] == 8  # capped at the number of classes
    scores = {s["class_name"]: s["score"] for s in every["scores"]}
    assert list(scores) == best
    for i, n in enumerate(names):
        assert scores[n] == pytest.approx(float(want[i]), abs=1e-6)
    default = client.post(f"/v1/models/{CL}/classify", files=files(c)).json()
    assert len(default["scores"]) == 3  # top_k's default


def test_classify_takes_json_and_npy_too(client):
    c = clip(seed=14)
    a = client.post(
        f"/v1/models/{CL}/classify", json={"frames": [base64.b64encode(png(f)).decode() for f in c]}
    ).json()
    b = client.post(
        f"/v1/models/{CL}/classify",
        files=[("files", ("c.npy", npy(c), "application/octet-stream"))],
    ).json()
    assert a["scores"] == b["scores"]
    assert json.dumps(a)  # plain JSON


@pytest.mark.parametrize("output", ["png", "gif", "npy", "json"])
def test_every_answer_carries_the_conversion_report_in_a_header(client, output):
    """X-Conversion: the JSON answer's conversion fields, in image and array answers too."""
    c = clip(t=FRAMES + 2, h=2 * H, w=W, seed=15)  # taller than the model's frames: resized
    r = client.post(
        f"/v1/models/{NF}/predict", params={"output": output, "fit": "pad"}, files=files(c)
    )
    assert r.status_code == 200, r.text
    report = json.loads(r.headers["x-conversion"])
    assert report == {
        "resized": True,
        "resized_from": [2 * H, W],
        "fit": "pad",
        "channels_from": None,
        "frames_dropped": 2,
    }
    if output == "json":
        body = r.json()
        assert {k: body[k] for k in report} == report  # the same report as the body's
    same = client.post(f"/v1/models/{CL}/classify", files=files(clip(seed=16)))
    assert json.loads(same.headers["x-conversion"])["resized"] is False
