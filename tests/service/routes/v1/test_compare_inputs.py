"""POST /v1/compare/...?inputs=true: the context (and truth) frames the models saw, as base64 PNGs
(what the web page shows beside the predictions); without it the answer is unchanged."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from models.data import DIRECTIONS
from tests.service.helpers import FRAMES, H, W, clip, files


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_compare_next_frame_returns_the_inputs_when_asked(client):
    c = clip(t=FRAMES + 3, seed=40)
    plain = client.post("/v1/compare/next-frame", params={"holdout": 2}, files=files(c)).json()
    assert plain["context_png"] is None and plain["truth_png"] is None  # unchanged by default
    r = client.post("/v1/compare/next-frame", params={"holdout": 2, "inputs": True}, files=files(c))
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["context_png"]) == FRAMES and len(body["truth_png"]) == 2
    assert np.array_equal(_png(body["context_png"][0]), c[1])  # the last FRAMES of the context
    assert np.array_equal(_png(body["truth_png"][-1]), c[-1])
    assert _png(body["truth_png"][0]).shape == (H, W)
    for arch in ("conv2d_lstm", "convlstm2d"):  # the rest of the answer is the same
        assert body["results"][arch]["metrics"] == plain["results"][arch]["metrics"]
    no_truth = client.post(
        "/v1/compare/next-frame", params={"horizon": 1, "inputs": True}, files=files(c)
    ).json()
    assert len(no_truth["context_png"]) == FRAMES and no_truth["truth_png"] is None


def test_compare_classify_returns_the_context_when_asked(client):
    c = clip(t=FRAMES, seed=41)
    body = client.post(
        "/v1/compare/classify", params={"inputs": True, "top_k": 8}, files=files(c)
    ).json()
    assert len(body["context_png"]) == FRAMES and body["truth_png"] is None
    assert np.array_equal(_png(body["context_png"][-1]), c[-1])
    assert len(body["results"]["convlstm2d"]["scores"]) == len(DIRECTIONS)
