"""The training losses and metrics of next-frame runs, registered so that a run's checkpoints
(compiled with them) load again when it resumes."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# A backend tensor (TensorFlow or JAX) inside a loss.
Tensor = Any


@keras.saving.register_keras_serializable(package="framecast")
def rollout_mse(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Training metric of the Forecaster (``models/carried.py``): the mean squared error per
    pixel of the frames predicted after the 10 context frames (outputs 9.. of the 19), the served
    rollout's error."""
    d = ops.cast(y_true[:, 9:], "float32") - ops.cast(y_pred[:, 9:], "float32")
    return ops.mean(ops.square(d))


@keras.saving.register_keras_serializable(package="framecast")
def l1l2(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Training loss ``--loss l1l2``: mean absolute plus mean squared error per pixel (L1 keeps
    the edges that L2 alone blurs under uncertainty)."""
    d = ops.cast(y_true, y_pred.dtype) - y_pred
    return ops.mean(ops.abs(d), axis=-1) + ops.mean(ops.square(d), axis=-1)
