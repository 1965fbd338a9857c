"""Which model wins which metric, pinned on a case where the metrics disagree; the compare answer
leads with the summary and leaves the frames out unless asked."""

from __future__ import annotations

import numpy as np

from service.runtime.items import Timing
from tests.service.helpers import FRAMES, H, W, npy

A, B = "conv2d_lstm_next_frame", "convlstm2d_next_frame"


def fake_predict(frames: np.ndarray):
    async def predict(context, horizon, *, ticket=None, background=False):
        if ticket is not None:
            ticket.release()
        return frames[:horizon].copy(), Timing()

    return predict


def test_mse_winner_is_not_the_psnr_winner(client, runtime, monkeypatch):
    # truth: two black frames. A is off by 0.1 everywhere in both frames (MSE 2.56 per frame,
    # PSNR 20 dB each); B is nearly exact on the first frame and off by 0.3 on the second
    # (MSE 0.0003 and 23.0: mean 11.5, worse; PSNR 60 and 10.5 dB: mean 35.2, better).
    a = np.full((2, H, W, 1), 0.1, np.float32)
    b = np.stack([np.full((H, W, 1), 0.001, np.float32), np.full((H, W, 1), 0.3, np.float32)])
    monkeypatch.setattr(runtime.runners[A], "predict", fake_predict(a))
    monkeypatch.setattr(runtime.runners[B], "predict", fake_predict(b))
    clip = np.concatenate([np.full((FRAMES, H, W), 0.5, np.float32), np.zeros((2, H, W))])
    r = client.post(
        "/v1/compare/next-frame?holdout=2",
        content=npy(clip.astype(np.float32)),
        headers={"content-type": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    ra, rb = body["results"]["conv2d_lstm"]["metrics"], body["results"]["convlstm2d"]["metrics"]
    assert ra["mse_per_frame"] < rb["mse_per_frame"] and ra["psnr"] < rb["psnr"]
    assert body["winner"] == "conv2d_lstm"  # the main metric is MSE per frame
    assert body["winners"]["mse_per_frame"] == "conv2d_lstm"
    assert body["winners"]["mae_per_frame"] == "conv2d_lstm"
    assert body["winners"]["psnr"] == "convlstm2d"


def test_compare_json_leads_with_the_summary_and_frames_only_when_asked(client):
    clip = (np.random.default_rng(0).random((FRAMES + 1, H, W)) * 255).astype(np.uint8)
    send = {"content": npy(clip), "headers": {"content-type": "application/x-npy"}}
    r = client.post("/v1/compare/next-frame?holdout=1", **send)
    assert r.status_code == 200
    keys = list(r.json())
    assert keys.index("winner") < keys.index("results")
    result = r.json()["results"]["convlstm2d"]
    assert list(result)[:3] == ["model", "architecture", "metrics"]
    assert result["frames"] is None and len(r.content) < 4000
    r = client.post("/v1/compare/next-frame?holdout=1&frames=true", **send)
    assert r.json()["results"]["convlstm2d"]["frames"][0]["png"]


def test_too_few_frames_counts_the_held_back_ones(client):
    clip = np.zeros((FRAMES + 1, H, W), np.uint8)
    r = client.post(
        "/v1/compare/next-frame?holdout=3",
        content=npy(clip),
        headers={"content-type": "application/x-npy"},
    )
    assert r.status_code == 422
    assert f"{FRAMES + 1} uploaded, the last 3 held back as truth" in r.json()["message"]
