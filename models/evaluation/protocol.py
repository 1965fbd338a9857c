"""The test protocol of `framecast evaluate`: what a model scores on the fixed test clips.

Next-frame models: the first 10 frames of each 20-frame test clip are the context; the model
predicts frame 11 (t+1 error) and then rolls out 10 frames autoregressively (its own predictions
fed back), compared with frames 11-20 (10->10 error): as its manifest says, with the recurrent
state carried (`rollout: carried_state`) or with a sliding window of fixed length, by the
rollout the server runs (models/rollout.py). The metrics and the frames compared are the same
either way; two baselines (copy the last frame, all black) are scored alike. Classifiers:
accuracy, top-2 accuracy and the confusion matrix on the direction test clips. Both: the latency
of one clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from models import data as D
from models import metrics as M
from models.repository import Manifest
from models.rollout import OnBatch, carried_rollout, rollout

if TYPE_CHECKING:  # only for annotations: importing this module does not load Keras
    import keras

    from models.runs.progress import Progress


def batched_call(
    model: keras.Model, x: np.ndarray, batch_size: int, on_batch: OnBatch = None
) -> np.ndarray:
    """``model.predict_on_batch`` over ``x`` in batches of exactly ``batch_size`` (the last one
    padded), so the compiled input shape never changes. ``on_batch(n)`` after each call."""
    outs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        n = len(chunk)
        if n < batch_size:
            pad = np.zeros((batch_size - n,) + chunk.shape[1:], dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        outs.append(np.asarray(model.predict_on_batch(chunk))[:n])
        if on_batch is not None:
            on_batch(n)
    return np.concatenate(outs)


def rollout_for(model: keras.Model, manifest: Manifest) -> Callable[..., np.ndarray]:
    """``fn(context, horizon, batch_size, on_batch=None)`` rolling out as the manifest says the
    model does, by the rollout the server runs (``models/rollout.py``)."""
    if getattr(manifest, "rollout", "sliding_window") == "carried_state":
        from models.carried import stepper

        s = stepper(model)
        return lambda context, horizon, batch_size=32, on_batch=None: carried_rollout(
            s, context, horizon, batch_size, on_batch
        )
    return lambda context, horizon, batch_size=32, on_batch=None: rollout(
        model, context, horizon, batch_size, on_batch, output=manifest.output
    )


def _latency_ms(fn: Callable[[], object], repeats: int = 30) -> float:
    fn()  # warm-up (compiles)
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


class NotEvaluable(ValueError):
    """The model is not one the test protocol measures; the message says why, in one line."""


PROTOCOL = (
    f"framecast evaluate measures models on Moving MNIST ({D.CANVAS}x{D.CANVAS} grey clips; next "
    f"frame: {D.CONTEXT_FRAMES} frames of context rolled out; classify: {D.DIRECTION_LENGTH} "
    f"frames, the {len(D.DIRECTIONS)} directions {', '.join(D.DIRECTIONS)} in that order)"
)


def check_evaluable(m: Manifest) -> None:
    """Raise :class:`NotEvaluable` unless the test clips fit the model as they are: 64x64 grey
    frames, no more frames than the clips give, a fixed time axis, and for a classifier the
    directions as its classes (an imported model of another input or other classes)."""
    why = []
    if (m.height, m.width, m.channels) != (D.CANVAS, D.CANVAS, 1):
        colour = {1: "grey", 3: "RGB"}.get(m.channels, f"{m.channels}-channel")
        why.append(f"takes {m.width}x{m.height} {colour} frames")
    given = D.CONTEXT_FRAMES if m.task == "next_frame" else D.DIRECTION_LENGTH
    if m.frames is None:
        why.append("has a free time axis (frames: null)")
    elif m.frames > given:
        why.append(f"reads {m.frames} frames")
    if m.task == "classify" and list(m.class_names or []) != list(D.DIRECTIONS):
        why.append(f"classifies {', '.join(m.class_names or []) or 'unnamed classes'}")
    if why:
        raise NotEvaluable(
            f"model {m.name!r} {' and '.join(why)}: {PROTOCOL}, so it cannot be evaluated here"
        )


def fixed_frames(manifest: Manifest) -> int:
    """The model's fixed time axis: the frames of context the evaluation protocol (and the
    rollout figure) gives it. A free time axis is refused."""
    if manifest.frames is None:
        raise ValueError(
            f"model {manifest.name!r} has a free time axis (frames: null); evaluation runs "
            "models whose manifest fixes the frames they read"
        )
    return manifest.frames


def evaluate_next_frame(
    model: keras.Model,
    manifest: Manifest,
    clips: np.ndarray,
    batch_size: int,
    horizon: int,
    progress: Progress | None = None,
) -> dict:
    """Rollout metrics, baselines and latency; ``progress`` (models/runs/progress.py) is told each
    predicted frame (``len(clips) * horizon`` in all) and each later stage."""
    from models.runs.progress import Progress

    progress = progress if progress is not None else Progress()
    frames = fixed_frames(manifest)
    n_context = D.CONTEXT_FRAMES
    if frames > n_context:
        raise ValueError(f"model takes {frames} frames of context; test clips give {n_context}")
    context = clips[:, n_context - frames : n_context]  # (clips, frames, H, W, C)
    truth = clips[:, n_context : n_context + horizon]  # (clips, horizon, H, W, C)
    roll_fn = rollout_for(model, manifest)
    pred = roll_fn(context, horizon, batch_size, on_batch=progress.update)
    progress.stage("scoring")
    one = M.frame_report(pred[:, :1], truth[:, :1])
    roll = M.frame_report(pred, truth)
    baselines = {}
    for name, base in (
        ("copy_last_frame", M.copy_last_baseline(context, horizon)),
        ("all_black", M.black_baseline(truth)),
    ):
        baselines[name] = {
            "t_plus_1": _scalars(M.frame_report(base[:, :1], truth[:, :1])),
            "rollout": M.frame_report(base, truth),
        }
    x1 = context[:1]
    progress.stage("timing one clip")
    latency = _latency_ms(lambda: model.predict_on_batch(x1))
    latency_roll = _latency_ms(lambda: roll_fn(x1, horizon, 1), repeats=5)
    return {
        "t_plus_1": _scalars(one),
        "rollout": roll,
        "baselines": baselines,
        "latency_ms": {
            "one_clip_next_frame": round(latency, 2),
            f"one_clip_rollout_{horizon}": round(latency_roll, 2),
        },
    }


def _scalars(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "per_step"}


def evaluate_classify(
    model: keras.Model,
    manifest: Manifest,
    clips: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    progress: Progress | None = None,
) -> dict:
    """Accuracy, confusion matrix and latency; ``progress`` is told each classified clip."""
    from models.runs.progress import Progress

    progress = progress if progress is not None else Progress()
    frames = fixed_frames(manifest)
    x = clips[:, -frames:]
    scores = batched_call(model, x, batch_size, on_batch=progress.update)
    progress.stage("scoring")
    names = manifest.class_names
    assert names, "a classify manifest has class_names (Manifest.validate)"
    cm = M.confusion_matrix(labels, scores.argmax(-1), len(names))
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    x1 = x[:1]
    progress.stage("timing one clip")
    return {
        "accuracy": M.accuracy(scores, labels),
        "top_2_accuracy": M.top_k_accuracy(scores, labels, 2),
        "per_class_accuracy": dict(zip(names, [round(v, 4) for v in per_class])),
        "confusion_matrix": {"rows_true_cols_predicted": names, "counts": cm.tolist()},
        "chance": 1.0 / len(names),
        "latency_ms": {
            "one_clip_classify": round(_latency_ms(lambda: model.predict_on_batch(x1)), 2)
        },
    }
