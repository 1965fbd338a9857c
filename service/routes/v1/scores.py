"""How compare scores predictions against the truth, and which model wins a metric."""

from __future__ import annotations

import numpy as np

from models.metrics import mae_per_frame, mse_per_frame, psnr, ssim
from service.schemas import FrameMetrics

LOWER_IS_BETTER = {"mse_per_frame": True, "mae_per_frame": True, "psnr": False, "ssim": False}


def frame_metrics(pred: np.ndarray, truth: np.ndarray) -> FrameMetrics:
    """pred, truth (k, H, W, C) → the OpenSTL-convention metrics (models.metrics)."""
    mse, mae, ps = mse_per_frame(pred, truth), mae_per_frame(pred, truth), psnr(pred, truth)
    ss = ssim(pred, truth) if min(pred.shape[1:3]) >= 7 else None
    per_step = {
        "mse_per_frame": mse.tolist(),
        "mae_per_frame": mae.tolist(),
        "psnr": ps.tolist(),
        "ssim": ss.tolist() if ss is not None else [None] * len(mse),
    }
    return FrameMetrics(
        mse_per_frame=float(mse.mean()),
        mae_per_frame=float(mae.mean()),
        psnr=float(ps.mean()),
        ssim=float(ss.mean()) if ss is not None else None,
        per_step=per_step,
    )


def pick(values: dict[str, float | None], lower_is_better: bool) -> str | None:
    """The key with the best value; "tie" when the best is shared; None when any is unknown."""
    known = {k: v for k, v in values.items() if v is not None}
    if not known or len(known) < len(values):
        return None
    sign = 1.0 if lower_is_better else -1.0
    best = min(sign * v for v in known.values())
    top = [k for k, v in known.items() if abs(sign * v - best) <= 1e-12 * max(1.0, abs(best))]
    return top[0] if len(top) == 1 else "tie"
