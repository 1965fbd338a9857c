"""Every error: its status code and a message that says what was wrong (never a 500)."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.service.helpers import FRAMES, clip, encode, files, npy, png

NF = "convlstm2d_next_frame"
PREDICT = f"/v1/models/{NF}/predict"


def err(r, status, kind=None, *parts):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and body["message"]
    if kind:
        assert body["error"] == kind, body
    for p in parts:
        assert p in body["message"], (p, body["message"])
    return body


def one(name, data, ctype="application/octet-stream"):
    return {"files": [("files", (name, data, ctype))]}


def with_bad(index, name, data):
    parts = files(clip())
    parts[index] = ("files", (name, data, "image/png"))
    return {"files": parts}


# --------------------------------------------------------------------------- 422: malformed frames


def test_garbage_after_a_png_signature_names_the_frame(client):
    r = client.post(PREDICT, **with_bad(1, "bad.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10))
    err(r, 422, "frame_decode_error", "frame 1", "bad.png", "PNG")


def test_a_truncated_png_names_the_frame(client):
    data = png(clip()[0])
    r = client.post(PREDICT, **with_bad(3, "cut.png", data[: len(data) // 2]))
    err(r, 422, "frame_decode_error", "frame 3", "cut.png")


def test_a_corrupt_gif(client):
    data = encode(clip(), "GIF", loop=0)
    r = client.post(PREDICT, **one("clip.gif", data[:40], "image/gif"))
    err(r, 422, "frame_decode_error", "clip.gif", "GIF")


def test_an_empty_file(client):
    err(
        client.post(PREDICT, **with_bad(0, "empty.png", b"")),
        422,
        "frame_decode_error",
        "frame 0",
        "empty.png",
        "empty",
    )


@pytest.mark.parametrize(
    "array,parts",
    [
        (np.zeros((4, 16), np.uint8), ["shape (4, 16)", "(T,H,W)"]),
        (np.zeros((4, 16, 16, 5), np.uint8), ["5 channels"]),
        (np.zeros((4, 16, 16), np.int64), ["dtype int64", "uint8"]),
        (np.full((4, 16, 16), 1.5, np.float32), ["frame 0", "[0, 1]", "1.5"]),
        (np.concatenate([np.zeros((2, 16, 16)), np.full((1, 16, 16), np.nan)]), ["frame 2", "NaN"]),
    ],
)
def test_bad_npy_arrays(client, array, parts):
    r = client.post(PREDICT, **one("clip.npy", npy(array)))
    err(r, 422, "frame_decode_error", "clip.npy", *parts)


def test_a_pickled_npy_is_refused_not_unpickled(client):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = client.post(PREDICT, **one("evil.npy", buf.getvalue()))
    err(r, 422, "frame_decode_error", "evil.npy", "not a readable .npy")


def test_json_with_bad_base64_names_the_item(client):
    frames = [base64.b64encode(png(f)).decode() for f in clip()]
    frames[2] = "not base64!!"
    err(
        client.post(PREDICT, json={"frames": frames}),
        422,
        "frame_decode_error",
        "frames[2]",
        "base64",
    )


@pytest.mark.parametrize("body", [b"{not json", b'{"images": []}', b'{"frames": "abc"}'])
def test_json_of_the_wrong_shape(client, body):
    r = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    err(r, 422, "invalid_input", "frames")


# --------------------------------------------------------------------------- 415


def test_an_unknown_file_format_is_415(client):
    r = client.post(PREDICT, **with_bad(2, "notes.txt", b"hello, these are not pixels"))
    err(r, 415, "unsupported_media_type", "notes.txt", "frame 2", "PNG")


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", None])
def test_an_unsupported_content_type_is_415(client, ctype):
    headers = {"content-type": ctype} if ctype else {}
    r = client.post(PREDICT, content=b"abc", headers=headers)
    err(r, 415, "unsupported_media_type", "Content-Type", "multipart/form-data")


def test_a_raw_body_of_unknown_bytes_is_415(client):
    r = client.post(
        PREDICT,
        content=b"\x00\x01\x02\x03" * 10,
        headers={"content-type": "application/octet-stream"},
    )
    err(r, 415, "unsupported_media_type")


# --------------------------------------------------------------------------- 422: frames and tasks


def test_too_few_frames(client):
    r = client.post(PREDICT, files=files(clip()[:2]))
    err(r, 422, "too_few_frames", "2 frame(s)", f"needs {FRAMES}")


def test_no_files_at_all(client):
    r = client.post(PREDICT, data={"note": "x"}, files={"ignored": ("", b"", "")})
    assert r.status_code == 422, r.text
    r = client.post(PREDICT, json={"frames": []})
    err(r, 422, "too_few_frames", "no frames")


def test_predict_on_a_classifier_is_wrong_task(client):
    r = client.post("/v1/models/convlstm2d_classify/predict", files=files(clip()))
    err(r, 422, "wrong_task", "classify model", "/v1/models/convlstm2d_classify/classify")


def test_classify_on_a_next_frame_model_is_wrong_task(client):
    r = client.post(f"/v1/models/{NF}/classify", files=files(clip()))
    err(r, 422, "wrong_task", "next_frame model", f"/v1/models/{NF}/predict")


def test_truth_is_refused_by_predict(client):
    parts = files(clip()) + files(clip()[:1], name="truth")
    err(client.post(PREDICT, files=parts), 422, "invalid_input", "truth", "/v1/compare/next-frame")


def test_unknown_model_on_predict_is_404(client):
    err(
        client.post("/v1/models/ghost/predict", files=files(clip())),
        404,
        "model_not_found",
        "'ghost'",
    )


# --------------------------------------------------------------------------- parameters and limits


def test_horizon_above_the_maximum(client, settings):
    r = client.post(PREDICT, params={"horizon": settings.max_horizon + 1}, files=files(clip()))
    err(r, 422, "invalid_input", "FRAMECAST_MAX_HORIZON", str(settings.max_horizon))


@pytest.mark.parametrize(
    "params,name",
    [
        ({"horizon": 0}, "horizon"),
        ({"horizon": "x"}, "horizon"),
        ({"output": "bmp"}, "output"),
        ({"resize": "maybe"}, "resize"),
    ],
)
def test_bad_query_parameters_are_named(client, params, name):
    err(client.post(PREDICT, params=params, files=files(clip())), 422, "invalid_parameter", name)


def test_a_body_over_the_upload_limit_is_413(client, settings):
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * settings.max_upload_bytes
    err(
        client.post(PREDICT, **one("big.png", big)),
        413,
        "payload_too_large",
        "FRAMECAST_MAX_UPLOAD_BYTES",
    )


def test_too_many_frames(client, settings):
    many = np.zeros((settings.max_frames + 1, 16, 16), np.uint8)
    err(
        client.post(PREDICT, **one("many.npy", npy(many))),
        422,
        "invalid_input",
        "FRAMECAST_MAX_FRAMES",
    )


def test_a_frame_with_too_many_pixels(models_dir):
    s = Settings(models_dir=models_dir, load_mode="blocking", max_frame_pixels=100)
    with TestClient(create_app(s)) as c:
        err(
            c.post(PREDICT, files=files(clip())),
            422,
            "invalid_input",
            "frame 0",
            "FRAMECAST_MAX_FRAME_PIXELS",
        )


def test_unknown_route_is_404_json(client):
    err(client.get("/v1/nothing"), 404, "not_found", "/v1/nothing")
    r = client.get("/v2/nothing")  # under /v2: the Open Inference Protocol's body
    assert (
        r.status_code == 404 and set(r.json()) == {"error"} and "/v2/nothing" in r.json()["error"]
    )


# --------------------------------------------------------------------------- 503 under load


def test_a_full_queue_and_a_slow_model_answer_503(models_dir):
    s = Settings(models_dir=models_dir, load_mode="blocking", max_queue=2, inference_timeout_s=0.2)
    with TestClient(create_app(s)) as c:
        runner = c.app.state.runtime.runners[NF]
        release = threading.Event()
        blockers = [runner.submit(release.wait) for _ in range(2)]  # the worker is busy
        try:
            assert runner.queue_depth == 2
            err(c.post(PREDICT, files=files(clip())), 503, "overloaded", "FRAMECAST_MAX_QUEUE")
            runner.max_queue = 3
            r = c.post(PREDICT, files=files(clip()))
            err(r, 503, "overloaded", "FRAMECAST_INFERENCE_TIMEOUT_S")
            assert r.headers["retry-after"]
        finally:
            release.set()
        for b in blockers:
            b.result(timeout=30)
        runner.timeout_s = 60.0  # 0.2 s is for the blocked case; a starved CI CPU may need more
        assert c.post(PREDICT, files=files(clip())).status_code == 200


# --------------------------------------------------------------------------- nothing gives 500

PREFIXES = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"GIF87a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"\x93NUMPY",
    b"RIFF\x10\x00\x00\x00WEBP",
    b"",
    b"{",
    b"\x00",
]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_random_bytes_never_give_500(client, prefix):
    rng = np.random.default_rng(len(prefix))
    for n in (0, 5, 100, 3000):
        data = prefix + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        for kw in (
            one("x", data),
            {"content": data, "headers": {"content-type": "application/octet-stream"}},
            {"json": {"frames": [base64.b64encode(data).decode()] * FRAMES}},
        ):
            r = client.post(PREDICT, **kw)
            assert r.status_code in (415, 422), (prefix, n, r.status_code, r.text)
            assert r.json()["message"]


def test_odd_but_valid_images_never_give_500(client):
    odd = [
        np.zeros((1, 1), np.uint8),
        np.zeros((1, 300), np.uint8),
        (np.arange(256 * 4, dtype=np.uint16).reshape(32, 32) * 64),
    ]
    for a in odd:
        r = client.post(
            PREDICT, files=[("files", (f"{i}.png", png(a), "image/png")) for i in range(FRAMES)]
        )
        assert r.status_code == 200, r.text
    # a one-pixel-wide frame with resize=false is a clear 422, not a crash
    r = client.post(
        PREDICT,
        params={"resize": "false"},
        files=[("files", ("t.png", png(odd[0]), "image/png"))] * FRAMES,
    )
    err(r, 422, "frame_size_error", "1x1")


def test_too_many_pixels_in_all(models_dir):
    s = Settings(models_dir=models_dir, load_mode="blocking", max_total_pixels=16 * 16 * 3)
    with TestClient(create_app(s)) as c:
        err(
            c.post(PREDICT, files=files(clip())),
            422,
            "invalid_input",
            "f3.png",
            "FRAMECAST_MAX_TOTAL_PIXELS",
        )
        err(
            c.post(PREDICT, **one("c.npy", npy(clip()))),
            422,
            "invalid_input",
            "FRAMECAST_MAX_TOTAL_PIXELS",
        )
