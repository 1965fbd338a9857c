"""One rollout: how a next-frame model's predictions are fed back, for serving and evaluation.

Each clip rolling out is a :class:`Rollout`: its window (the context, then what it reads next),
the frames predicted so far and, for the carried state, every recurrent state after its last
frame. A *step* makes one model call for many clips (zero rows pad the batch up to ``bucket``)
and moves each of them on by one frame:

- :func:`window_step`: a sliding window (``sliding_window``: read the last ``frames`` frames,
  append the prediction, drop the oldest) or a growing one (``growing``: keep every frame);
- :func:`context_step`, then :func:`state_step`: the carried state (``carried_state``): read the
  context once (``models.carried.ContextPass``), then one frame a step with every recurrent state
  carried (``models.carried.Step``).

The server's policies (``service/runtime/policies.py``) call these steps for the requests of one
batcher step; evaluation calls the same steps through :func:`rollout` and
:func:`carried_rollout` (fixed batches of test clips), so the figures on a model card are made by
the code that serves. Only numpy is used here: the server imports this before any model loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

Call = Callable[[Any], Any]  # one model call on a padded batch → its output
# ``on_batch(n)``: told after each batch of clips that ``n`` more frames are predicted.
OnBatch = Callable[[int], object] | None


def stacked(
    rows: list[np.ndarray], bucket: int | None = None, dtype: Any = np.float32
) -> np.ndarray:
    """``rows`` stacked on a new first axis as ``dtype``, zero rows up to ``bucket`` (read-only).

    Every copy the model's worker thread makes goes through here or :func:`owned`: one
    ``bytes.join``, which copies holding the GIL. numpy releases the GIL for every large copy
    (``np.stack`` of 16 clips: 16 times), and while the event loop is busy the worker then waits
    up to a switch interval (5 ms) to get it back each time: 9 ms of a 24 ms classify batch step
    at 32 connections went there before."""
    arrays = [np.ascontiguousarray(r, dtype) for r in rows]
    parts: list = [a.data for a in arrays]
    n = len(arrays) if bucket is None else bucket
    if n > len(arrays):
        parts.append(bytes((n - len(arrays)) * arrays[0].nbytes))
    return np.frombuffer(b"".join(parts), dtype).reshape((n,) + arrays[0].shape)


def owned(a: np.ndarray) -> np.ndarray:
    """A float32 copy of ``a`` that keeps no batch output alive, made holding the GIL."""
    a = np.ascontiguousarray(a, np.float32)
    return np.frombuffer(a.tobytes(), np.float32).reshape(a.shape)


@dataclass
class Rollout:
    """One clip rolling out ``steps`` frames."""

    window: np.ndarray  # (frames, H, W, C) float32: the context, then what it reads next
    steps: int
    outputs: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] | None = None  # carried state (after the context pass), per clip

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"a rollout needs at least 1 step, got horizon={self.steps}")

    def add(self, frame: np.ndarray) -> np.ndarray | None:
        """Record a predicted frame; the stacked rollout once ``steps`` frames are out."""
        self.outputs.append(frame)
        return stacked(self.outputs) if len(self.outputs) == self.steps else None


def next_frame(out: np.ndarray, row: int, output: str = "sequence") -> np.ndarray:
    """The predicted next frame of ``row`` in a batch output: the last of a sequence output, or
    the one frame of a many-to-one output (``output="frame"``)."""
    return owned(out[row, -1] if output == "sequence" else out[row])


def window_step(
    rollouts: list[Rollout],
    bucket: int,
    call: Call,
    *,
    output: str = "sequence",
    grows: bool = False,
) -> list[np.ndarray | None]:
    """One call on the windows of ``rollouts`` (all of one length): each clip appends its
    prediction and drops its oldest frame (``grows``: keeps it). Each clip's result is its
    stacked rollout once done, else None."""
    out = np.asarray(call(stacked([r.window for r in rollouts], bucket)))
    results = []
    for j, r in enumerate(rollouts):
        nxt = next_frame(out, j, output)
        kept = r.window if grows else r.window[1:]
        r.window = stacked([*kept, nxt])
        results.append(r.add(nxt))
    return results


def context_step(rollouts: list[Rollout], bucket: int, call: Call) -> list[np.ndarray | None]:
    """The carried state's first step: one context pass (``call``: a batch of windows, all of
    one length → ``[next frames (bucket, 1, H, W, C), *states]``) for clips that have not read
    their context."""
    return _take(call(stacked([r.window for r in rollouts], bucket)), rollouts)


def state_step(rollouts: list[Rollout], bucket: int, call: Call) -> list[np.ndarray | None]:
    """The carried state's next steps: one single-frame step (``call``: ``[last frames
    (bucket, 1, H, W, C), *states]`` → the same) for clips past their context pass."""
    states = [r.states for r in rollouts if r.states is not None]
    if len(states) != len(rollouts):
        raise ValueError("a state step needs clips past their context pass")
    inputs = [stacked([r.outputs[-1][None] for r in rollouts], bucket)]
    inputs += [stacked([s[k] for s in states], bucket) for k in range(len(states[0]))]
    return _take(call(inputs), rollouts)


def _take(out: list, rollouts: list[Rollout]) -> list[np.ndarray | None]:
    frames, states = out[0], out[1:]  # (bucket, 1, H, W, C), each (bucket, ...)
    results = []
    for j, r in enumerate(rollouts):
        results.append(r.add(owned(frames[j, 0])))
        if results[-1] is None:  # steps to go: keep its states (megabytes: only then)
            r.states = [owned(s[j]) for s in states]
    return results


def _chunks(context: np.ndarray, batch_size: int, horizon: int) -> list[list[Rollout]]:
    clips = np.asarray(context, np.float32)
    return [
        [Rollout(c, horizon) for c in clips[start : start + batch_size]]
        for start in range(0, len(clips), batch_size)
    ]


def rollout(
    model: Any,
    context: np.ndarray,
    horizon: int,
    batch_size: int = 32,
    on_batch: OnBatch = None,
    output: str = "sequence",
) -> np.ndarray:
    """The sliding window over many clips: ``(clips, frames, H, W, C)`` →
    ``(clips, horizon, H, W, C)``, by :func:`window_step` on batches of exactly ``batch_size``
    (the last one padded), so the compiled input shape never changes. ``model`` has
    ``predict_on_batch``; ``on_batch(n)`` after each call, ``n`` the frames it predicted (one per
    clip)."""
    outs = []
    for rollouts in _chunks(context, batch_size, horizon):
        for _ in range(horizon):
            done = window_step(rollouts, batch_size, model.predict_on_batch, output=output)
            if on_batch is not None:
                on_batch(len(rollouts))
        outs.append(np.stack(cast(list[np.ndarray], done)))  # after `horizon` steps: all done
    return np.concatenate(outs)


def carried_rollout(
    stepper: Any,
    context: np.ndarray,
    horizon: int,
    batch_size: int = 32,
    on_batch: OnBatch = None,
) -> np.ndarray:
    """The carried state over many clips (``stepper``: a ``models.carried.Stepper``): each
    batch of exactly ``batch_size`` clips (the last one padded) reads its context once
    (:func:`context_step`), then takes ``horizon - 1`` single-frame steps (:func:`state_step`).
    Same layout as :func:`rollout`; ``on_batch(n)`` after each batch, ``n`` the frames it
    predicted (``horizon`` per clip)."""
    outs = []
    for rollouts in _chunks(context, batch_size, horizon):
        done = context_step(rollouts, batch_size, stepper.context.predict_on_batch)
        for _ in range(horizon - 1):
            done = state_step(rollouts, batch_size, stepper.step.predict_on_batch)
        outs.append(np.stack(cast(list[np.ndarray], done)))  # after `horizon` steps: all done
        if on_batch is not None:
            on_batch(len(rollouts) * horizon)
    return np.concatenate(outs)
