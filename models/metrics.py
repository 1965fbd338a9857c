"""Metrics with the conventions of OpenSTL / PredRNN, so figures compare with published tables.

Frames are float arrays in [0, 1] shaped ``(..., height, width[, channels])``.

- MSE / MAE *per frame*: the SUM over a frame's pixels of the squared / absolute error, averaged
  over frames and clips (per-pixel MSE = per-frame MSE / (H*W*C)). Computed on unclipped outputs.
- PSNR: per (clip, frame) from the per-pixel MSE of predictions clipped to [0, 1], then averaged.
- SSIM: scikit-image's default (7x7 uniform window, K1=0.01, K2=0.03, sample covariance) with
  ``data_range=1`` on predictions clipped to [0, 1], averaged over channels, frames and clips.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import uniform_filter

PSNR_CAP_DB = 100.0  # identical frames would give +inf; cap so averages stay finite


def _frames(a: ArrayLike) -> np.ndarray:
    """View as (n_frames, H, W, C) float64."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim < 3:
        raise ValueError(f"frames need at least (H, W, C) dims, got shape {a.shape}")
    return a.reshape((-1,) + a.shape[-3:])


def _check(pred: ArrayLike, true: ArrayLike) -> None:
    if np.shape(pred) != np.shape(true):
        raise ValueError(f"prediction shape {np.shape(pred)} != truth shape {np.shape(true)}")


def mse_per_frame(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    """Per-frame sum of squared errors, shape = leading dims (everything but H, W, C)."""
    _check(pred, true)
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return np.sum(d * d, axis=(-3, -2, -1))


def mae_per_frame(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    """Per-frame sum of absolute errors, shape = leading dims."""
    _check(pred, true)
    return np.sum(
        np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64)), axis=(-3, -2, -1)
    )


def psnr(pred: ArrayLike, true: ArrayLike) -> np.ndarray:
    """PSNR in dB per frame (shape = leading dims), predictions clipped to [0, 1], data range 1."""
    _check(pred, true)
    p = np.clip(np.asarray(pred, np.float64), 0, 1)
    d = p - np.asarray(true, np.float64)
    mse = np.mean(d * d, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        out = -10.0 * np.log10(mse)
    return np.minimum(out, PSNR_CAP_DB)


def _box(a: np.ndarray, w: int) -> np.ndarray:
    """Mean over every w x w window fully inside (n, H, W) -> (n, H-w+1, W-w+1): scipy's
    running-sum filter (C, separable), its centred windows cut to those inside the frame."""
    lo = w // 2  # scipy centres a window of w on w // 2: it starts there before its pixel
    hi = w - 1 - lo
    m = uniform_filter(a, size=(1, w, w), mode="constant")
    return m[:, lo : a.shape[1] - hi, lo : a.shape[2] - hi]


def ssim(
    pred: ArrayLike, true: ArrayLike, *, win_size: int = 7, data_range: float = 1.0
) -> np.ndarray:
    """SSIM per frame (shape = leading dims), like ``skimage.metrics.structural_similarity``.

    Uses the windows that lie fully inside the frame, which is what scikit-image averages after
    cropping its padded border.
    """
    _check(pred, true)
    lead = np.shape(pred)[:-3]
    p = np.clip(_frames(pred), 0, 1)
    t = _frames(true)
    n, h, w, c = p.shape
    if h < win_size or w < win_size:
        raise ValueError(f"frames of {h}x{w} are smaller than the SSIM window {win_size}")
    # (n, H, W, C) -> (n*C, H, W)
    p = p.transpose(0, 3, 1, 2).reshape(n * c, h, w)
    t = t.transpose(0, 3, 1, 2).reshape(n * c, h, w)
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1)
    ux, uy = _box(p, win_size), _box(t, win_size)
    vx = cov_norm * (_box(p * p, win_size) - ux * ux)
    vy = cov_norm * (_box(t * t, win_size) - uy * uy)
    vxy = cov_norm * (_box(p * t, win_size) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    per = s.mean(axis=(1, 2)).reshape(n, c).mean(axis=1)
    return per.reshape(lead)


def frame_report(pred: ArrayLike, true: ArrayLike) -> dict:
    """All frame metrics of ``pred`` vs ``true`` shaped (clips, steps, H, W, C).

    Returns scalar means plus per-step curves (index = rollout step).
    """
    _check(pred, true)
    mse = mse_per_frame(pred, true)  # (clips, steps)
    mae = mae_per_frame(pred, true)
    ps = psnr(pred, true)
    ss = ssim(pred, true)
    return {
        "mse_per_frame": float(mse.mean()),
        "mae_per_frame": float(mae.mean()),
        "psnr": float(ps.mean()),
        "ssim": float(ss.mean()),
        "per_step": {
            "mse_per_frame": mse.mean(axis=0).tolist(),
            "mae_per_frame": mae.mean(axis=0).tolist(),
            "psnr": ps.mean(axis=0).tolist(),
            "ssim": ss.mean(axis=0).tolist(),
        },
    }


def copy_last_baseline(context: np.ndarray, steps: int) -> np.ndarray:
    """Predict every future frame as the last context frame.

    (clips, T, ...) -> (clips, steps, ...)
    """
    last = np.asarray(context)[:, -1:]
    return np.repeat(last, steps, axis=1)


def black_baseline(truth: np.ndarray) -> np.ndarray:
    """Predict an all-black (zero) frame for every future frame."""
    return np.zeros_like(np.asarray(truth, dtype=np.float32))


def accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    scores, labels = np.asarray(scores), np.asarray(labels)
    return float(np.mean(np.argmax(scores, axis=-1) == labels))


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    scores, labels = np.asarray(scores), np.asarray(labels)
    top = np.argsort(-scores, axis=-1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels: ArrayLike, predicted: ArrayLike, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class, counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(predicted)), 1)
    return m
