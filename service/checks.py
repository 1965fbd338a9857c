"""The request checks that more than one route or runner makes, each written once.

Each raises a :mod:`service.errors` error whose message says what was wrong and how to fix it.
Routes that answer in another dialect (``/v2``) pass their own error class.
"""

from __future__ import annotations

import numpy as np

from service.errors import FramecastError, FrameDecodeError, InvalidInput, WrongTask

# the route that serves each task, for "use POST ..." hints
TASK_ROUTE = {"next_frame": "predict", "classify": "classify"}

# how far outside [0, 1] a float value may stray (rounding) before it is refused
UNIT_TOLERANCE = 1e-6


def require_task(name: str, actual: str, wanted: str) -> None:
    """422 unless model ``name`` (whose task is ``actual``) does ``wanted``."""
    if actual != wanted:
        route = TASK_ROUTE.get(actual, "predict")
        raise WrongTask(f"model {name!r} is a {actual} model; use POST /v1/models/{name}/{route}")


def require_horizon(
    k: object,
    max_horizon: int,
    *,
    label: str = "horizon",
    error: type[FramecastError] = InvalidInput,
) -> int:
    """``k`` when it is an integer from 1 to ``max_horizon`` (FRAMECAST_MAX_HORIZON); else
    ``error`` (422 by default)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_horizon:
        raise error(
            f"{label}={k!r} must be an integer from 1 to {max_horizon} (FRAMECAST_MAX_HORIZON)"
        )
    return k


def require_finite(x: np.ndarray, message: str, error: type[Exception] = FrameDecodeError) -> None:
    """``error(message)`` unless every value of ``x`` is finite (no NaN, no infinity)."""
    if not np.all(np.isfinite(x)):
        raise error(message)


def require_unit_range(
    x: np.ndarray,
    label: str,
    *,
    kind: str,
    hint: str,
    error: type[FramecastError] = FrameDecodeError,
) -> None:
    """``error`` (422 by default) unless every value of the float array ``x`` is finite and lies
    in [0, 1] (give or take :data:`UNIT_TOLERANCE`). ``label`` names the array, ``kind`` its
    values ("float", "FP32"), ``hint`` what to send instead."""
    require_finite(x, f"{label}: {kind} data holds NaN or infinite values", error)
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        if lo < -UNIT_TOLERANCE or hi > 1 + UNIT_TOLERANCE:
            raise error(
                f"{label}: {kind} values must lie in [0, 1], found {lo:.4g}..{hi:.4g} ({hint})"
            )
