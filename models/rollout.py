"""One rollout: how a next-frame model's predictions are fed back, for serving and evaluation.

Each clip rolling out is a :class:`Rollout`: its window (the context, then what it reads next),
the frames predicted so far and, for the carried state, every recurrent state after its last
frame. A *step* makes one model call for many clips (zero rows pad the batch up to ``bucket``)
and moves each of them on by one frame:

- :func:`window_step`: a sliding window (``sliding_window``: read the last ``frames`` frames,
  append the prediction, drop the oldest) or a growing one (``growing``: keep every frame);
- :func:`context_step`, then :func:`state_step`: the carried state (``carried_state``): read the
  context once (``models.carried.ContextPass``), then one frame a step with every recurrent state
  carried (``models.carried.Step``). A stream's frames (:class:`Feed`) go through the same
  single-frame steps, each read once as it arrives, beside the clips rolling out.

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

    def step_input(self) -> np.ndarray:
        """What a carried-state step reads next: the last prediction."""
        return self.outputs[-1]

    def took(self, frame: np.ndarray, states: list, row: int) -> np.ndarray | None:
        """The output of one step (``states``: the batch's, row ``row``)."""
        result = self.add(frame)
        if result is None:  # steps to go: keep its states (megabytes: only then)
            self.states = [owned(s[row]) for s in states]
        return result


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


def state_step(rollouts: list[Any], bucket: int, call: Call) -> list[Any]:
    """The carried state's next steps: one single-frame step (``call``: ``[frames
    (bucket, 1, H, W, C), *states]`` → the same) for clips past their context pass
    (:class:`Rollout`: its last prediction goes in) and streams (:class:`Feed`: its next frame
    received, then its own predictions), in one call."""
    states = [r.states for r in rollouts if r.states is not None]
    if len(states) != len(rollouts):
        raise ValueError("a state step needs clips past their context pass")
    inputs = [stacked([r.step_input()[None] for r in rollouts], bucket)]
    inputs += [stacked([s[k] for s in states], bucket) for k in range(len(states[0]))]
    return _take(call(inputs), rollouts)


def _take(out: list, rollouts: list[Any]) -> list[Any]:
    frames, states = out[0], out[1:]  # (bucket, 1, H, W, C), each (bucket, ...)
    return [r.took(owned(frames[j, 0]), states, j) for j, r in enumerate(rollouts)]


@dataclass
class Feed:
    """A stream's new frames, read one at a time with its carried state (one single-frame step
    each, never a re-read of what came before), then ``steps`` frames predicted by feeding each
    prediction back. Done, it holds the prediction made after each frame it read (``after``:
    what the next frame was expected to be), the states after the last frame it read
    (``kept``: the stream's state from then on) and the rollout (``outputs``)."""

    frames: list[np.ndarray]  # (H, W, C) float32 each: received, not read yet
    steps: int  # frames to predict after the last one (0: read only)
    states: list[np.ndarray]  # the states before the next frame (zeros: a new stream)
    after: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    kept: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not self.frames or self.steps < 0:
            raise ValueError("a feed reads at least one frame and predicts 0 or more")

    def step_input(self) -> np.ndarray:
        return self.frames[0] if self.frames else self.outputs[-1]

    def took(self, frame: np.ndarray, states: list, row: int) -> Feed | None:
        """The output of one step (``states``: the batch's, row ``row``): this feed once done."""
        mine = [owned(s[row]) for s in states]
        if self.frames:  # that step read a received frame
            self.frames.pop(0)
            self.after.append(frame)
            if not self.frames:
                self.kept = mine
                if self.steps:
                    self.outputs.append(frame)
        else:
            self.outputs.append(frame)
        self.states = mine
        return self if not self.frames and len(self.outputs) == self.steps else None


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
