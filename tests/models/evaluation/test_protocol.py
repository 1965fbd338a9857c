"""The published figures' scoring, pinned by hand-computed cases: which predicted frame is
scored against which true frame, and the two baselines."""

import numpy as np
import pytest

from models import data as D
from models.evaluation.protocol import evaluate_next_frame
from models.repository import Manifest

PIXELS = 64 * 64


class CopyLast:
    """A 'model' whose output at step t is its input at step t: it predicts the last frame."""

    def predict_on_batch(self, x):
        return np.asarray(x)


def ramp_clips(n=3):
    """Clips whose frame t is uniformly t/20: every error below is a closed form."""
    t = np.arange(D.NEXT_FRAME_LENGTH, dtype=np.float32) / 20.0
    return np.broadcast_to(t[None, :, None, None, None], (n, 20, 64, 64, 1)).copy()


def manifest():
    return Manifest(
        name="copy",
        architecture="convlstm2d",
        task="next_frame",
        frames=10,
        height=64,
        width=64,
        channels=1,
    )


def test_frames_are_scored_against_the_frames_they_predict(monkeypatch):
    monkeypatch.setattr("models.evaluation.protocol._latency_ms", lambda fn, repeats=30: 0.0)
    res = evaluate_next_frame(CopyLast(), manifest(), ramp_clips(), batch_size=2, horizon=10)
    # step k (1..10) predicts frame 9 + k with frame 9: error k/20 at each of 4096 pixels
    per_step = [PIXELS * (k / 20) ** 2 for k in range(1, 11)]
    assert res["t_plus_1"]["mse_per_frame"] == pytest.approx(per_step[0])
    assert res["rollout"]["mse_per_frame"] == pytest.approx(np.mean(per_step))  # 394.24
    assert res["rollout"]["mae_per_frame"] == pytest.approx(
        np.mean([PIXELS * k / 20 for k in range(1, 11)])
    )
    # a one-frame shift of the truth (frames 9..18 or 11..20) would give other values
    shifted = np.mean([PIXELS * (k / 20) ** 2 for k in range(0, 10)])
    assert abs(res["rollout"]["mse_per_frame"] - shifted) > 50


def test_copy_last_and_all_black_baselines(monkeypatch):
    monkeypatch.setattr("models.evaluation.protocol._latency_ms", lambda fn, repeats=30: 0.0)
    res = evaluate_next_frame(CopyLast(), manifest(), ramp_clips(), batch_size=4, horizon=10)
    base = res["baselines"]
    assert base["copy_last_frame"]["rollout"]["mse_per_frame"] == pytest.approx(394.24)
    assert base["copy_last_frame"]["rollout"]["mse_per_frame"] == pytest.approx(
        res["rollout"]["mse_per_frame"]
    )  # the copy-last 'model' is the copy-last baseline
    # all black against frames 10..19 (values t/20): mean of 4096 (t/20)^2
    black = np.mean([PIXELS * (t / 20) ** 2 for t in range(10, 20)])
    assert base["all_black"]["rollout"]["mse_per_frame"] == pytest.approx(black)  # 2237.44
    assert base["all_black"]["t_plus_1"]["mse_per_frame"] == pytest.approx(PIXELS * 0.25)
