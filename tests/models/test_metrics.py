import math

import numpy as np
import pytest

from models import metrics as M


def test_mse_mae_per_frame_sum_over_pixels():
    true = np.zeros((1, 2, 8, 8, 1))
    pred = np.zeros((1, 2, 8, 8, 1))
    pred[0, 0, 0, 0, 0] = 0.5  # frame 0: one pixel off by 0.5
    pred[0, 1] = 0.25  # frame 1: all 64 pixels off by 0.25
    mse = M.mse_per_frame(pred, true)
    mae = M.mae_per_frame(pred, true)
    np.testing.assert_allclose(mse, [[0.25, 64 * 0.0625]])
    np.testing.assert_allclose(mae, [[0.5, 64 * 0.25]])
    report = M.frame_report(pred, true)
    assert report["mse_per_frame"] == pytest.approx((0.25 + 4.0) / 2)
    assert report["per_step"]["mae_per_frame"] == pytest.approx([0.5, 16.0])


def test_psnr_hand_values_and_clipping():
    true = np.zeros((1, 8, 8, 1))
    pred = np.full((1, 8, 8, 1), 0.1)
    assert M.psnr(pred, true)[0] == pytest.approx(20.0)  # mse 0.01 -> 20 dB
    over = np.full((1, 8, 8, 1), 1.7)  # clipped to 1 -> mse 1 -> 0 dB
    assert M.psnr(over, true)[0] == pytest.approx(0.0)
    assert M.psnr(true, true)[0] == M.PSNR_CAP_DB


def test_ssim_identity_and_hand_value():
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 1))
    np.testing.assert_allclose(M.ssim(x, x), [1.0, 1.0])
    # constant frames a and b: every window has zero variance, so
    # SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly
    a, b = 0.2, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = M.ssim(np.full((1, 10, 10, 1), b), np.full((1, 10, 10, 1), a))
    assert got[0] == pytest.approx(expected)


def test_ssim_matches_direct_window_formula():
    rng = np.random.default_rng(1)
    p, t = rng.random((9, 9)), rng.random((9, 9))
    # a 9x9 image has 3x3 = 9 full 7x7 windows; compute each window by hand
    vals = []
    for i in range(3):
        for j in range(3):
            wp, wt = p[i : i + 7, j : j + 7].ravel(), t[i : i + 7, j : j + 7].ravel()
            mx, my = wp.mean(), wt.mean()
            vx, vy = wp.var(ddof=1), wt.var(ddof=1)
            cxy = np.cov(wp, wt, ddof=1)[0, 1]
            c1, c2 = 0.01**2, 0.03**2
            vals.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    got = M.ssim(p[None, :, :, None], t[None, :, :, None])[0]
    assert got == pytest.approx(np.mean(vals), rel=1e-9)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        M.mse_per_frame(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 5, 1)))


def test_baselines():
    ctx = np.zeros((2, 3, 4, 4, 1))
    ctx[:, -1] = 0.5
    base = M.copy_last_baseline(ctx, 5)
    assert base.shape == (2, 5, 4, 4, 1) and np.all(base == 0.5)
    truth = np.ones((2, 5, 8, 8, 1))
    black = M.black_baseline(truth)
    assert np.all(black == 0)
    assert M.frame_report(black, truth)["mse_per_frame"] == pytest.approx(64.0)


def test_classification_metrics():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 1])
    assert M.accuracy(scores, labels) == pytest.approx(0.5)
    assert M.top_k_accuracy(scores, labels, 2) == pytest.approx(1.0)
    cm = M.confusion_matrix(labels, scores.argmax(1), 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    assert not math.isnan(M.accuracy(scores, labels))
